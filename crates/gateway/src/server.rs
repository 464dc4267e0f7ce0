//! Serving: the proxy on one listener, the admin API on another, HTTP/1 and 2
//! with header-size and header-time limits, and a graceful shutdown that lets
//! in-flight requests finish.

use std::error::Error as StdError;
use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::ServiceExt;

use crate::workers::{Balance, Counted};

/// The largest request head (request line and headers) accepted: larger ones
/// are refused with `431` by the HTTP layer.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// How long in-flight requests may take to finish after a shutdown signal.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The HTTP/2 connection preface a prior-knowledge (h2c) client opens with.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Serves `router` on `listener` until `shutdown` flips to true, then drains.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    header_timeout: Duration,
    shutdown: watch::Receiver<bool>,
) {
    let service = TowerToHyperService::new(
        router.map_request(|request: Request<Incoming>| request.map(Body::new)),
    );
    serve_service(
        listener,
        move || service.clone(),
        header_timeout,
        shutdown,
        None,
    )
    .await;
}

/// Serves the services `make` makes, one per connection, on `listener` until
/// `shutdown` flips to true, then drains.
///
/// HTTP/1 connections get hyper's HTTP/1 server directly; a connection that
/// opens with the HTTP/2 preface (h2c with prior knowledge) gets the
/// version-detecting server, so both versions are still served.
pub(crate) async fn serve_service<M, S, B>(
    listener: TcpListener,
    make: M,
    header_timeout: Duration,
    shutdown: watch::Receiver<bool>,
    mut balance: Option<Balance>,
) where
    M: Fn() -> S,
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let mut http1 = hyper::server::conn::http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_HEADER_BYTES)
        // The buffer can outgrow `max_buf_size` when a whole head arrives in
        // one read; this checks the parsed head itself.
        .max_header_size(MAX_HEADER_BYTES);
    let mut both = auto::Builder::new(TokioExecutor::new());
    both.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_buf_size(MAX_HEADER_BYTES);
    let graceful = GracefulShutdown::new();
    let serve = |stream: TcpStream, counted: Option<Counted>| {
        let _ = stream.set_nodelay(true);
        let watcher = graceful.watcher();
        let service = make();
        let http1 = http1.clone();
        let both = both.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            // Counts the connection as open on this worker until it ends.
            let _counted = counted;
            let h2 = tokio::select! {
                h2 = opens_with_h2_preface(&stream) => h2,
                () = stopped(&mut stop) => return,
            };
            let result = match h2 {
                None => return,
                Some(false) => {
                    let connection = http1.serve_connection(TokioIo::new(stream), service);
                    watcher.watch(connection).await.map_err(Into::into)
                }
                Some(true) => {
                    let connection = both
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .into_owned();
                    watcher.watch(connection).await
                }
            };
            if let Err(err) = result {
                tracing::debug!(%err, "connection ended with an error");
            }
        });
    };
    let mut stop = shutdown.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(err) => {
                        // Out of file descriptors and the like: back off, keep serving.
                        tracing::warn!(%err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                match balance.as_ref() {
                    None => serve(stream, None),
                    Some(balance) => {
                        if let Some((stream, counted)) = balance.place(stream) {
                            serve(stream, Some(counted));
                        }
                    }
                }
            }
            Some((stream, counted)) = handed_over(balance.as_mut()) => serve(stream, Some(counted)),
            () = stopped(&mut stop) => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("some connections did not finish within {DRAIN_TIMEOUT:?}");
    }
}

/// A connection another worker handed over (never, without a balance).
async fn handed_over(balance: Option<&mut Balance>) -> Option<(TcpStream, Counted)> {
    match balance {
        Some(balance) => balance.handed_over().await,
        None => std::future::pending().await,
    }
}

/// Whether what the client sent first may be the HTTP/2 preface (`None`: the
/// connection closed or failed before sending anything). Peeks, so the bytes
/// stay for the server to read.
async fn opens_with_h2_preface(stream: &TcpStream) -> Option<bool> {
    let mut first = [0u8; H2_PREFACE.len()];
    match stream.peek(&mut first).await {
        Ok(0) | Err(_) => None,
        Ok(n) => Some(first[..n] == H2_PREFACE[..n]),
    }
}

/// Completes once the switch flips (or its sender is gone).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// A shutdown switch: flips on `signal`, and every server watching it drains.
pub fn shutdown_on(signal: impl Future<Output = ()> + Send + 'static) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        signal.await;
        let _ = tx.send(true);
    });
    rx
}
