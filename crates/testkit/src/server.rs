//! The connection loop: hyper over tokio, one task per connection, so that a
//! request can have its connection closed without an answer.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::task::{JoinHandle, JoinSet};
use tower::ServiceExt;

use crate::api::ApiHandle;

/// Closes the connection a request came on (put in each request's extensions).
#[derive(Clone)]
pub(crate) struct ConnectionKill(Arc<Notify>);

impl ConnectionKill {
    pub(crate) fn close(&self) {
        self.0.notify_one();
    }
}

/// The example API, serving on `addr` until [`shutdown`](Self::shutdown).
#[derive(Debug)]
pub struct RunningApi {
    /// Where it listens (`127.0.0.1:<port>`).
    pub addr: SocketAddr,
    /// Faults, the outage switch, logs, counters and the expected records.
    pub handle: ApiHandle,
    shutdown: Arc<Notify>,
    task: JoinHandle<()>,
}

impl RunningApi {
    pub(crate) fn start(
        listener: TcpListener,
        router: Router,
        handle: ApiHandle,
    ) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let shutdown = Arc::new(Notify::new());
        let task = tokio::spawn(accept(listener, router, Arc::clone(&shutdown)));
        Ok(Self {
            addr,
            handle,
            shutdown,
            task,
        })
    }

    /// `http://127.0.0.1:<port>` followed by `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Stops accepting and closes every connection, answered or not.
    pub async fn shutdown(self) {
        self.shutdown.notify_one();
        let _ = self.task.await;
    }
}

async fn accept(listener: TcpListener, router: Router, shutdown: Arc<Notify>) {
    // Dropped at the end of this function, which aborts every connection.
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            () = shutdown.notified() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve(stream, router.clone()));
                }
                // Out of descriptors, most likely: give the others time to close.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}

async fn serve(stream: TcpStream, router: Router) {
    let _ = stream.set_nodelay(true);
    let kill = Arc::new(Notify::new());
    let handle = ConnectionKill(Arc::clone(&kill));
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(handle.clone());
        router.clone().oneshot(request)
    });
    let connection =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = connection => {}
        () = kill.notified() => {}
    }
}
