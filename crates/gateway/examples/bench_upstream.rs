//! A minimal, fast upstream for `bench/gateway/run.sh`: answers every request
//! with `200` and a small JSON body, on a multi-threaded runtime, over HTTP/1.1
//! keep-alive.
//!
//! ```text
//! cargo run --release -p tollgate-gateway --example bench_upstream -- 127.0.0.1:9100 [threads]
//! ```
//!
//! `threads` defaults to the number of cores. It stops on SIGTERM or Ctrl-C.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

const BODY: &[u8] = br#"{"ok":true,"items":[{"id":1,"name":"alpha"},{"id":2,"name":"beta"}]}"#;

async fn answer(_: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let mut response = Response::new(Full::new(Bytes::from_static(BODY)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(response)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let address: SocketAddr = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:9100".to_owned())
        .parse()
        .expect("the first argument is an address like 127.0.0.1:9100");
    let threads = args
        .next()
        .map(|t| {
            t.parse::<usize>()
                .expect("the second argument is a thread count")
        })
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async move {
        let listener = TcpListener::bind(address).await.expect("bind the address");
        eprintln!("bench_upstream listening on {address} ({threads} threads)");
        let serve = async {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(async move {
                    let _ = http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service_fn(answer))
                        .await;
                });
            }
        };
        tokio::select! {
            () = serve => {}
            () = stop() => {}
        }
    });
}

async fn stop() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("a SIGTERM handler");
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
