//! [`RedisStore`]: the [`Store`] whose state lives in Redis.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::future::{join, join_all};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{RedisError, RedisResult, RetryMethod, Script, ScriptInvocation};
use tollgate_core::{Charge, Decision, LimitId, Store, StoreError, Timestamp};

use crate::keys::{RedisKey, escape, slot};
use crate::script::{self, Mode, PER_CHARGE, Rendered};

/// How long a written key outlives the instant its state stops mattering.
///
/// Not needed for exactness when the time is Redis's own (`TIME` and key expiry
/// read one clock), but it keeps a decision exact across a failover to a replica
/// whose clock is slightly behind, and with an injected time that runs slower
/// than the server's. Costs memory for idle keys for one more second.
pub const TTL_GRACE: Duration = Duration::from_secs(1);

/// Limit state in Redis, shared by every process that uses the same server (or
/// cluster) and prefix.
///
/// Each decision is one `EVALSHA` of one Lua script, which reads every charge's
/// state, decides with exactly the algorithms of `MemoryStore`, and writes the
/// new state only when every charge admits: atomic across instances and one
/// round trip whatever the number of charges. Time is Redis's `TIME`, so
/// instances with skewed clocks still agree. Every key expires shortly after its
/// state stops mattering, so Redis holds only the active keys.
///
/// Connections: one multiplexed connection that reconnects by itself (a
/// [`ConnectionManager`]), or one per cluster node (a [`ClusterConnection`]);
/// cloning the store shares them.
///
/// # Redis Cluster: reserve, then undo
///
/// On a cluster ([`connect_cluster`](Self::connect_cluster)) a script may only
/// touch keys of one hash slot. All of one API key's limits share a slot (the
/// key is the hash tag), so a request that matches only per-key limits is still
/// one script. A request that also matches a limit on another key (a
/// per-endpoint limit shared by all API keys) has charges in several slots; they
/// are decided one slot at a time, in the order of their first charge:
///
/// 1. each slot's script *reserves*: it charges its limits if they all admit,
///    and answers a receipt per charge;
/// 2. when a later slot rejects, or fails, the earlier reservations are taken
///    back by a second script that removes exactly what each receipt names (the
///    rolling slot taken, one count of the fixed or sliding window, one
///    interval of GCRA's arrival time);
/// 3. after a rejection the slots not reached are only looked at, so that every
///    verdict is what `MemoryStore` would say.
///
/// The trade-off: this never over-admits (a limit is charged before the
/// request is admitted, and an undo never takes back more than the
/// reservation), but while a reservation waits for its undo (a round trip or
/// two) it counts against its limit, so a concurrent request may be rejected
/// that a single atomic decision would have admitted. An undo that cannot be
/// made (the node is down) leaves the reservation until the key's state
/// expires: under-admission again, never over-admission; GCRA's undo takes
/// nothing back once its arrival time has passed, where it can no longer tell
/// its charge from a later one. Put the limits most likely to reject first
/// (per-key before shared): a request the per-key limit rejects then never
/// touches the shared one, and costs two round trips (the reservation, then a
/// look at the shared limit); an admitted one costs one per slot. A split
/// decision runs to its end in a task of its own, so a caller that gives up
/// (a timeout) cannot leave a reservation behind.
#[derive(Clone)]
pub struct RedisStore {
    conn: Conn,
    scripts: Arc<Scripts>,
    /// Already escaped, so no prefix can break the hash tag.
    prefix: String,
    counters: Arc<Counters>,
}

/// The two kinds of connection: both multiplexed, so concurrent decisions are
/// pipelined rather than each waiting for a pooled connection.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    async fn eval<T: redis::FromRedisValue>(
        &mut self,
        call: &ScriptInvocation<'_>,
    ) -> RedisResult<T> {
        match self {
            Self::Single(conn) => call.invoke_async(conn).await,
            Self::Cluster(conn) => call.invoke_async(conn).await,
        }
    }
}

struct Scripts {
    decide: Script,
    undo: Script,
}

#[derive(Default)]
struct Counters {
    split: AtomicU64,
    undone: AtomicU64,
    undo_errors: AtomicU64,
}

/// What the store has done on a cluster: see [`RedisStore::split_stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SplitStats {
    /// Decisions whose charges spanned several hash slots (reserve, then undo).
    pub split_decisions: u64,
    /// Reserved charges taken back because another slot rejected the request.
    pub undone_charges: u64,
    /// Undo scripts that failed: their reservations stay until they expire.
    pub undo_errors: u64,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .field("cluster", &self.is_cluster())
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// The key prefix unless [`with_prefix`](Self::with_prefix) says otherwise.
    pub const DEFAULT_PREFIX: &'static str = "tollgate";

    /// Connects to one server at `url` (`redis://host:port/db`), with a 1 s
    /// timeout on connecting and on every decision; reconnects by itself
    /// afterwards.
    ///
    /// Fails (transiently) when the server cannot be reached now, after two
    /// retries within about two seconds.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url)
            .map_err(|e| StoreError::permanent(format!("redis URL `{url}`: {e}")))?;
        // redis-rs 0.32 hands these to backon: the first wait is 1 s (plus
        // jitter), each later one `factor` times the last (a multiplier, not the
        // unit redis-rs's docs describe: its default of 100 makes the second wait
        // a minute); capped here at 250 ms so a down server is reported promptly.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Duration::from_secs(1))
            .set_response_timeout(Duration::from_secs(1))
            .set_number_of_retries(2)
            .set_factor(2)
            .set_max_delay(250);
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| with_context(&format!("connecting to {url}"), e))?;
        Ok(Self::new(conn))
    }

    /// Connects to a Redis Cluster through any of its `nodes` (`redis://host:port`
    /// each; the others are discovered), with a 1 s timeout on connecting and on
    /// every command. Decisions whose charges span several hash slots reserve,
    /// then undo (see the type's documentation).
    ///
    /// A separate constructor, not a guess from [`connect`](Self::connect)'s URL:
    /// the two modes differ in atomicity (one script, or reserve-then-undo), which
    /// a deployment should choose knowingly.
    pub async fn connect_cluster<T: AsRef<str>>(nodes: &[T]) -> Result<Self, StoreError> {
        let nodes: Vec<&str> = nodes.iter().map(AsRef::as_ref).collect();
        let client = ClusterClient::builder(nodes.iter().copied())
            .connection_timeout(Duration::from_secs(1))
            .response_timeout(Duration::from_secs(1))
            .retries(3)
            .build()
            .map_err(|e| StoreError::permanent(format!("redis cluster {nodes:?}: {e}")))?;
        let conn = client
            .get_async_connection()
            .await
            .map_err(|e| with_context(&format!("connecting to the cluster at {nodes:?}"), e))?;
        Ok(Self::new_cluster(conn))
    }

    /// A store on a connection the caller configured.
    pub fn new(conn: ConnectionManager) -> Self {
        Self::with_conn(Conn::Single(conn))
    }

    /// A store on a cluster connection the caller configured.
    pub fn new_cluster(conn: ClusterConnection) -> Self {
        Self::with_conn(Conn::Cluster(conn))
    }

    fn with_conn(conn: Conn) -> Self {
        Self {
            conn,
            scripts: Arc::new(Scripts {
                decide: script::script(),
                undo: script::undo_script(),
            }),
            prefix: Self::DEFAULT_PREFIX.to_owned(),
            counters: Arc::default(),
        }
    }

    /// Puts every key under `prefix` (`%`, `{`, `}` and `:` are escaped), e.g. one
    /// per deployment sharing a server.
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.prefix.clear();
        escape(prefix, &mut self.prefix);
        self
    }

    /// The prefix of every key, as written in Redis.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether the store talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.conn, Conn::Cluster(_))
    }

    /// What the store has done on a cluster, since it was made (shared by its
    /// clones).
    pub fn split_stats(&self) -> SplitStats {
        SplitStats {
            split_decisions: self.counters.split.load(Ordering::Relaxed),
            undone_charges: self.counters.undone.load(Ordering::Relaxed),
            undo_errors: self.counters.undo_errors.load(Ordering::Relaxed),
        }
    }

    /// Decides one request at `now` instead of Redis's `TIME`: for tests and
    /// simulations that drive a manual clock. Times are taken in whole
    /// microseconds (rounded up); keys still expire on the server's clock, after
    /// [`TTL_GRACE`].
    pub async fn decide_at<K: RedisKey>(
        &self,
        charges: &[Charge<K>],
        now: Timestamp,
    ) -> Result<Decision, StoreError> {
        self.run(charges, Some(now), Mode::Commit).await
    }

    /// What a decision would answer now, charging nothing: a key's current
    /// usage, for an admin (as `MemoryStore::peek_at`).
    pub async fn peek<K: RedisKey>(&self, charges: &[Charge<K>]) -> Result<Decision, StoreError> {
        self.run(charges, None, Mode::Peek).await
    }

    /// What a decision at `now` would answer, charging nothing.
    pub async fn peek_at<K: RedisKey>(
        &self,
        charges: &[Charge<K>],
        now: Timestamp,
    ) -> Result<Decision, StoreError> {
        self.run(charges, Some(now), Mode::Peek).await
    }

    /// Runs a command of another part of the crate on this store's connection,
    /// an error saying what it was `doing`.
    pub(crate) async fn query<T: redis::FromRedisValue>(
        &mut self,
        cmd: &mut redis::Cmd,
        doing: &str,
    ) -> Result<T, StoreError> {
        let result = match &mut self.conn {
            Conn::Single(conn) => cmd.query_async(conn).await,
            Conn::Cluster(conn) => cmd.query_async(conn).await,
        };
        result.map_err(|e| with_context(doing, e))
    }

    /// Runs a script of another part of the crate on this store's connection,
    /// an error saying what it was `doing`.
    pub(crate) async fn eval<T: redis::FromRedisValue>(
        &self,
        call: &ScriptInvocation<'_>,
        doing: &str,
    ) -> Result<T, StoreError> {
        self.conn
            .clone()
            .eval(call)
            .await
            .map_err(|e| with_context(doing, e))
    }

    /// Decides (or peeks at) `charges`. Renders everything now, so the future
    /// owns its arguments and borrows neither the charges nor their keys.
    fn run<K: RedisKey>(
        &self,
        charges: &[Charge<K>],
        now: Option<Timestamp>,
        mode: Mode,
    ) -> impl Future<Output = Result<Decision, StoreError>> + Send + 'static {
        let rendered = script::render(&self.prefix, charges);
        let groups = match self.conn {
            Conn::Cluster(_) => slot_groups(&rendered),
            Conn::Single(_) => None,
        };
        let split = Split {
            conn: self.conn.clone(),
            scripts: Arc::clone(&self.scripts),
            counters: Arc::clone(&self.counters),
            rendered,
            now,
        };
        async move {
            if split.rendered.is_empty() {
                return Ok(Decision::default());
            }
            match (groups, mode) {
                (None, mode) => split.whole(mode).await,
                (Some(groups), Mode::Peek) => split.peek(groups).await,
                (Some(groups), _) => {
                    split.counters.split.fetch_add(1, Ordering::Relaxed);
                    // To its end even if the caller stops waiting: a dropped
                    // future must not strand a reservation.
                    tokio::spawn(split.reserve(groups))
                        .await
                        .unwrap_or_else(|e| {
                            Err(StoreError::transient(format!(
                                "redis, deciding across slots: the task stopped: {e}"
                            )))
                        })
                }
            }
        }
    }
}

/// The indices of the charges in each hash slot, slots in the order of their
/// first charge; `None` when there is only one slot.
fn slot_groups(rendered: &[Rendered]) -> Option<Vec<Vec<usize>>> {
    let slots: Vec<u16> = rendered.iter().map(|r| slot(r.key.as_bytes())).collect();
    if slots.windows(2).all(|w| w[0] == w[1]) {
        return None;
    }
    let mut groups: Vec<(u16, Vec<usize>)> = Vec::new();
    for (i, &s) in slots.iter().enumerate() {
        match groups.iter_mut().find(|(g, _)| *g == s) {
            Some((_, members)) => members.push(i),
            None => groups.push((s, vec![i])),
        }
    }
    Some(groups.into_iter().map(|(_, members)| members).collect())
}

/// One decision's charges, rendered, with what it takes to send them.
struct Split {
    conn: Conn,
    scripts: Arc<Scripts>,
    counters: Arc<Counters>,
    rendered: Vec<Rendered>,
    now: Option<Timestamp>,
}

impl Split {
    fn limits(&self) -> impl Iterator<Item = (LimitId, u32)> + '_ {
        self.rendered.iter().map(|r| (r.limit, r.count))
    }

    /// Runs the decide script on the charges at `members`.
    async fn eval(&self, members: &[usize], mode: Mode) -> Result<script::Reply, StoreError> {
        let call = script::invocation(
            &self.scripts.decide,
            members.iter().map(|&i| &self.rendered[i]),
            self.now,
            mode,
            TTL_GRACE,
        );
        let reply: Vec<i64> = self
            .conn
            .clone()
            .eval(&call)
            .await
            .map_err(|e| with_context("deciding", e))?;
        script::parse(members.len(), mode, &reply)
    }

    /// Every charge in one script: one slot (or one server).
    async fn whole(self, mode: Mode) -> Result<Decision, StoreError> {
        let all: Vec<usize> = (0..self.rendered.len()).collect();
        let reply = self.eval(&all, mode).await?;
        Ok(script::assemble(
            self.limits(),
            &reply.verdicts,
            reply.charged,
        ))
    }

    /// A look at every slot, all at once.
    async fn peek(self, groups: Vec<Vec<usize>>) -> Result<Decision, StoreError> {
        let replies = join_all(groups.iter().map(|g| self.eval(g, Mode::Peek))).await;
        let mut verdicts = vec![[0; PER_CHARGE]; self.rendered.len()];
        for (members, reply) in groups.iter().zip(replies) {
            let reply = reply?;
            for (&i, v) in members.iter().zip(reply.verdicts) {
                verdicts[i] = v;
            }
        }
        Ok(script::assemble(self.limits(), &verdicts, false))
    }

    /// Reserves slot by slot; on a rejection or a failure, takes the
    /// reservations back (and looks at the slots not reached).
    async fn reserve(self, groups: Vec<Vec<usize>>) -> Result<Decision, StoreError> {
        let mut verdicts = vec![[0; PER_CHARGE]; self.rendered.len()];
        let mut reserved: Vec<(&[usize], Vec<u64>)> = Vec::new();
        let mut stopped = None;
        for (g, members) in groups.iter().enumerate() {
            match self.eval(members, Mode::Reserve).await {
                Ok(reply) => {
                    for (&i, v) in members.iter().zip(&reply.verdicts) {
                        verdicts[i] = *v;
                    }
                    if reply.charged {
                        reserved.push((members, reply.receipts));
                    } else {
                        stopped = Some(Ok(g));
                        break;
                    }
                }
                Err(e) => {
                    stopped = Some(Err(e));
                    break;
                }
            }
        }
        let Some(stopped) = stopped else {
            return Ok(script::assemble(self.limits(), &verdicts, true));
        };
        let undo = join_all(
            reserved
                .iter()
                .map(|(members, receipts)| self.undo(members, receipts)),
        );
        let rest = match &stopped {
            Ok(rejected_at) => &groups[rejected_at + 1..],
            Err(_) => &[],
        };
        let look = join_all(rest.iter().map(|g| self.eval(g, Mode::Peek)));
        let (_, looked) = join(undo, look).await;
        let _ = stopped?;
        for (members, reply) in rest.iter().zip(looked) {
            for (&i, v) in members.iter().zip(reply?.verdicts) {
                verdicts[i] = v;
            }
        }
        Ok(script::assemble(self.limits(), &verdicts, false))
    }

    /// Takes back the charges at `members`, reserved with `receipts`. Failures
    /// are counted, not returned: the reservation then only expires.
    async fn undo(&self, members: &[usize], receipts: &[u64]) {
        let call = script::undo_invocation(
            &self.scripts.undo,
            members
                .iter()
                .map(|&i| &self.rendered[i])
                .zip(receipts.iter().copied()),
            self.now,
        );
        match self.conn.clone().eval::<u64>(&call).await {
            Ok(n) => {
                self.counters.undone.fetch_add(n, Ordering::Relaxed);
            }
            Err(_) => {
                self.counters.undo_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

impl<K: RedisKey + Send + Sync> Store<K> for RedisStore {
    fn decide(
        &self,
        charges: &[Charge<K>],
    ) -> impl Future<Output = Result<Decision, StoreError>> + Send {
        self.run(charges, None, Mode::Commit)
    }
}

/// A Redis failure as a [`StoreError`]: transient when waiting or reconnecting
/// may cure it (I/O, timeouts, a loading or failing-over server, a busy script),
/// permanent otherwise (the script refused, a wrong password, a key of another
/// type).
fn with_context(doing: &str, e: RedisError) -> StoreError {
    let message = format!("redis, {doing}: {e}");
    let cured_by_waiting = !matches!(e.retry_method(), RetryMethod::NoRetry)
        && e.kind() != redis::ErrorKind::AuthenticationFailed;
    if cured_by_waiting || e.code() == Some("BUSY") {
        StoreError::transient(message)
    } else {
        StoreError::permanent(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tollgate_core::{Quota, Rate};

    fn charges(keys: &[&'static str]) -> Vec<Charge<&'static str>> {
        keys.iter()
            .enumerate()
            .map(|(i, key)| Charge {
                limit: LimitId(i as u32),
                key: *key,
                quota: Quota::fixed(Rate::per_second(1)),
            })
            .collect()
    }

    #[test]
    fn one_slot_is_one_group_and_slots_go_in_the_order_of_their_first_charge() {
        let one = script::render("tg", &charges(&["key-1", "key-1", "key-1"]));
        assert_eq!(slot_groups(&one), None);
        // "foo" and "bar" are in different slots (12182 and 5061).
        let split = script::render("tg", &charges(&["foo", "bar", "foo", "bar", "baz"]));
        let groups = slot_groups(&split).expect("several slots");
        assert_eq!(groups[..2], [vec![0, 2], vec![1, 3]]);
        assert_eq!(groups.concat().len(), 5);
    }
}
