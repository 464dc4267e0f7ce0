//! Thread-per-core serving, as nginx's workers do it: each worker thread has its
//! own single-threaded runtime and its own listener on the shared address
//! (`SO_REUSEPORT`, so the kernel spreads new connections over them). A client
//! connection, the upstream connection it keeps and the tasks that drive both
//! stay on one thread: no work stealing, no wake-ups across threads. What the
//! workers share (limits, keys, metrics, the configuration) is shared as before.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};

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
        // SO_REUSEPORT would also let these listeners share the port with any
        // other process of the same user that set it: a second gateway started
        // by mistake would quietly take part of the connections. A plain bind
        // first makes a port in use an error, as it is with one worker.
        if workers.get() > 1 && address.port() != 0 {
            drop(
                std::net::TcpListener::bind(address)
                    .map_err(|source| StartError::Listen { address, source })?,
            );
        }
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
    yield_after: Option<Duration>,
    yields: &prometheus_client::metrics::counter::Counter,
    stop: &watch::Receiver<bool>,
) -> Vec<oneshot::Receiver<()>> {
    let mut ended = Vec::with_capacity(listeners.listeners.len());
    let balances = Balance::for_workers(listeners.listeners.len());
    for ((i, listener), balance) in listeners.listeners.into_iter().enumerate().zip(balances) {
        // Each worker gets its own front (and proxy), so that nothing it
        // touches per request is counted by the other workers.
        let front = front.for_worker();
        let stop = stop.clone();
        let (done, end) = oneshot::channel();
        let yields = yields.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("tollgate-worker-{i}"))
            .spawn(move || {
                crate::turns::give_turns_on_this_thread(yield_after, yields);
                run_worker(listener, front, header_timeout, stop, balance);
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
    balance: Balance,
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
        tokio::spawn(anchor_timers());
        let listener = match TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(err) => {
                tracing::error!(%err, "a worker cannot listen");
                return;
            }
        };
        crate::server::serve_service(
            listener,
            move || front.connection(),
            header_timeout,
            stop,
            Some(balance),
        )
        .await;
    });
}

/// How often a worker's standing timer fires: per-request timers at least this
/// long never wake the worker's runtime when they are armed.
const TIMER_ANCHOR_PERIOD: Duration = Duration::from_millis(500);

/// Keeps a timer armed on the worker's runtime, due sooner than the timers its
/// requests arm, so that arming one costs no system call.
///
/// When tokio's time driver goes to sleep it notes the earliest deadline it
/// knows; a timer armed later with an earlier deadline, or any timer when none
/// was armed, wakes the driver through its eventfd (a `write`, then an
/// `epoll_wait` that returns at once). Each request arms two timers and drops
/// them again (hyper's header-read timeout while the connection waits for the
/// next head, the upstream timeout while the answer is awaited), so a busy
/// worker often slept with none left: about one request in five paid that
/// wake-up. With this one always due within `TIMER_ANCHOR_PERIOD`, the
/// requests' timers are never the earliest.
async fn anchor_timers() {
    let mut ticks = tokio::time::interval(TIMER_ANCHOR_PERIOD);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
    }
}

/// Open connections of one worker, on a cache line of its own.
#[derive(Default)]
#[repr(align(64))]
struct Open(AtomicUsize);

/// Keeps the workers' shares of the open connections even. `SO_REUSEPORT`
/// spreads connections by a hash of their addresses, which can leave one
/// worker with many more long-lived connections than another (say 37 of 64),
/// and that worker's clients wait longer. A worker that accepts a connection
/// while it has two more open than the least busy worker hands it over.
pub(crate) struct Balance {
    me: usize,
    open: Arc<[Open]>,
    peers: Arc<[mpsc::UnboundedSender<std::net::TcpStream>]>,
    inbox: mpsc::UnboundedReceiver<std::net::TcpStream>,
}

/// Counts a connection as open on its worker until it is dropped.
pub(crate) struct Counted {
    open: Arc<[Open]>,
    at: usize,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.open[self.at].0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Balance {
    /// One balance for each of `workers` workers.
    fn for_workers(workers: usize) -> Vec<Self> {
        let open: Arc<[Open]> = (0..workers).map(|_| Open::default()).collect();
        let (peers, inboxes): (Vec<_>, Vec<_>) =
            (0..workers).map(|_| mpsc::unbounded_channel()).unzip();
        let peers: Arc<[_]> = peers.into();
        inboxes
            .into_iter()
            .enumerate()
            .map(|(me, inbox)| Self {
                me,
                open: Arc::clone(&open),
                peers: Arc::clone(&peers),
                inbox,
            })
            .collect()
    }

    fn counted(&self, at: usize) -> Counted {
        self.open[at].0.fetch_add(1, Ordering::Relaxed);
        Counted {
            open: Arc::clone(&self.open),
            at,
        }
    }

    /// Where a connection this worker accepted is served: here (returned,
    /// counted), or handed to the least busy worker (`None`).
    pub(crate) fn place(&self, stream: TcpStream) -> Option<(TcpStream, Counted)> {
        let open = |i: usize| self.open[i].0.load(Ordering::Relaxed);
        let (least, fewest) = (0..self.open.len())
            .map(|i| (i, open(i)))
            .min_by_key(|&(_, n)| n)?;
        if open(self.me) <= fewest + 1 {
            return Some((stream, self.counted(self.me)));
        }
        let counted = self.counted(least);
        let stream = match stream.into_std() {
            Ok(stream) => stream,
            Err(err) => {
                tracing::debug!(%err, "a connection could not be handed over");
                return None;
            }
        };
        match self.peers[least].send(stream) {
            Ok(()) => {
                // The receiving worker counts it from now on.
                std::mem::forget(counted);
                None
            }
            // That worker has stopped: serve it here.
            Err(mpsc::error::SendError(stream)) => {
                drop(counted);
                let stream = TcpStream::from_std(stream).ok()?;
                Some((stream, self.counted(self.me)))
            }
        }
    }

    /// The next connection another worker handed over (already counted here).
    pub(crate) async fn handed_over(&mut self) -> Option<(TcpStream, Counted)> {
        loop {
            let stream = self.inbox.recv().await?;
            match TcpStream::from_std(stream) {
                Ok(stream) => {
                    let counted = Counted {
                        open: Arc::clone(&self.open),
                        at: self.me,
                    };
                    return Some((stream, counted));
                }
                Err(err) => {
                    self.open[self.me].0.fetch_sub(1, Ordering::Relaxed);
                    tracing::debug!(%err, "a handed-over connection could not be served");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A connected stream on 127.0.0.1 (the peer end is dropped).
    async fn stream() -> TcpStream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (_client, accepted) = tokio::join!(client, listener.accept());
        accepted.unwrap().0
    }

    #[tokio::test]
    async fn a_port_another_gateway_listens_on_is_refused_not_shared() {
        let two = NonZeroUsize::new(2).unwrap();
        let first = WorkerListeners::bind("127.0.0.1:0".parse().unwrap(), two).unwrap();
        let taken = first.local_addr().unwrap();
        let second = WorkerListeners::bind(taken, two);
        assert!(
            matches!(second, Err(StartError::Listen { .. })),
            "a second gateway on {taken} must fail to start, not take half the connections"
        );
    }

    #[tokio::test]
    async fn a_worker_two_connections_ahead_hands_the_next_one_over() {
        let [zero, mut one]: [Balance; 2] = Balance::for_workers(2).try_into().ok().unwrap();
        let open = |i: usize| zero.open[i].0.load(Ordering::Relaxed);
        let (_a, first) = zero.place(stream().await).expect("served here");
        let (_b, second) = zero.place(stream().await).expect("one ahead: still here");
        assert_eq!((open(0), open(1)), (2, 0));
        assert!(
            zero.place(stream().await).is_none(),
            "two ahead: handed over"
        );
        assert_eq!((open(0), open(1)), (2, 1));
        let (_c, third) = one.handed_over().await.unwrap();
        drop((first, second, third));
        assert_eq!(
            (open(0), open(1)),
            (0, 0),
            "closed connections are not counted"
        );
    }
}
