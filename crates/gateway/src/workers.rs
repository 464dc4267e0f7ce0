//! Thread-per-core serving, as nginx's workers do it: each worker thread has its
//! own single-threaded runtime and its own listener on the shared address
//! (`SO_REUSEPORT`, so the kernel spreads new connections over them). A client
//! connection, the upstream connection it keeps and the tasks that drive both
//! stay on one thread: no work stealing, no wake-ups across threads. What the
//! workers share (limits, keys, metrics, the configuration) is shared as before.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{oneshot, watch};

use crate::StartError;
use crate::front::Front;

/// The same backlog as `tokio::net::TcpListener::bind`.
const BACKLOG: u32 = 1024;

/// One listener per worker, all on one address.
#[derive(Debug)]
pub struct WorkerListeners {
    listeners: Vec<std::net::TcpListener>,
}

impl WorkerListeners {
    /// Binds `workers` listeners on `address` (with port 0, they all get the
    /// port the first one got). Needs a runtime to register them in; they are
    /// handed over to the workers' runtimes later.
    pub fn bind(address: SocketAddr, workers: NonZeroUsize) -> Result<Self, StartError> {
        let mut address = address;
        let mut listeners = Vec::with_capacity(workers.get());
        for _ in 0..workers.get() {
            let listener = reuse_port_listener(address, workers.get() > 1)
                .map_err(|source| StartError::Listen { address, source })?;
            address = listener
                .local_addr()
                .map_err(|source| StartError::Listen { address, source })?;
            listeners.push(listener);
        }
        Ok(Self { listeners })
    }

    /// The address they listen on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listeners[0].local_addr()
    }

    /// How many workers they are for.
    pub fn workers(&self) -> usize {
        self.listeners.len()
    }
}

/// A listener on `address`, shared with the other workers' when `shared`.
fn reuse_port_listener(
    address: SocketAddr,
    shared: bool,
) -> std::io::Result<std::net::TcpListener> {
    let socket = match address {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    #[cfg(all(
        unix,
        not(target_os = "solaris"),
        not(target_os = "illumos"),
        not(target_os = "cygwin")
    ))]
    if shared {
        socket.set_reuseport(true)?;
    }
    #[cfg(not(all(
        unix,
        not(target_os = "solaris"),
        not(target_os = "illumos"),
        not(target_os = "cygwin")
    )))]
    let _ = shared;
    socket.bind(address)?;
    socket.listen(BACKLOG)?.into_std()
}

/// Starts one worker thread per listener, serving `front`; each drains and
/// ends once `stop` flips. The receivers complete when their worker has ended.
pub(crate) fn start(
    listeners: WorkerListeners,
    front: &Front,
    header_timeout: Duration,
    stop: &watch::Receiver<bool>,
) -> Vec<oneshot::Receiver<()>> {
    let mut ended = Vec::with_capacity(listeners.listeners.len());
    for (i, listener) in listeners.listeners.into_iter().enumerate() {
        // Each worker gets its own front (and proxy), so that nothing it
        // touches per request is counted by the other workers.
        let front = front.for_worker();
        let stop = stop.clone();
        let (done, end) = oneshot::channel();
        let spawned = std::thread::Builder::new()
            .name(format!("tollgate-worker-{i}"))
            .spawn(move || {
                run_worker(listener, front, header_timeout, stop);
                let _ = done.send(());
            });
        match spawned {
            Ok(_) => ended.push(end),
            Err(err) => tracing::error!(%err, "cannot start worker thread {i}"),
        }
    }
    ended
}

fn run_worker(
    listener: std::net::TcpListener,
    front: Front,
    header_timeout: Duration,
    stop: watch::Receiver<bool>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!(%err, "cannot start a worker's runtime");
            return;
        }
    };
    runtime.block_on(async move {
        let listener = match TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(err) => {
                tracing::error!(%err, "a worker cannot listen");
                return;
            }
        };
        crate::server::serve_service(listener, move || front.connection(), header_timeout, stop)
            .await;
    });
}
