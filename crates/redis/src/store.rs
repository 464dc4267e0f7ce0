//! [`RedisStore`]: the [`Store`] whose state lives in Redis.

use std::future::Future;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, RetryMethod, Script};
use tollgate_core::{Charge, Decision, LimitId, Store, StoreError, Timestamp};

use crate::keys::{RedisKey, escape};
use crate::script;

/// How long a written key outlives the instant its state stops mattering.
///
/// Not needed for exactness when the time is Redis's own (`TIME` and key expiry
/// read one clock), but it keeps a decision exact across a failover to a replica
/// whose clock is slightly behind, and with an injected time that runs slower
/// than the server's. Costs memory for idle keys for one more second.
pub const TTL_GRACE: Duration = Duration::from_secs(1);

/// Limit state in Redis, shared by every process that uses the same server and
/// prefix.
///
/// Each decision is one `EVALSHA` of one Lua script, which reads every charge's
/// state, decides with exactly the algorithms of `MemoryStore`, and writes the
/// new state only when every charge admits: atomic across instances and one
/// round trip whatever the number of charges. Time is Redis's `TIME`, so
/// instances with skewed clocks still agree. Every key expires shortly after its
/// state stops mattering, so Redis holds only the active keys.
///
/// Connections: a [`ConnectionManager`], one multiplexed connection that
/// reconnects by itself; cloning the store shares it.
#[derive(Clone)]
pub struct RedisStore {
    /// Multiplexed: concurrent decisions are pipelined on one connection rather
    /// than each waiting for a pooled one.
    conn: ConnectionManager,
    script: Script,
    /// Already escaped, so no prefix can break the hash tag.
    prefix: String,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// The key prefix unless [`with_prefix`](Self::with_prefix) says otherwise.
    pub const DEFAULT_PREFIX: &'static str = "tollgate";

    /// Connects to `url` (`redis://host:port/db`), with a 1 s timeout on
    /// connecting and on every decision; reconnects by itself afterwards.
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

    /// A store on a connection the caller configured.
    pub fn new(conn: ConnectionManager) -> Self {
        Self {
            conn,
            script: script::script(),
            prefix: Self::DEFAULT_PREFIX.to_owned(),
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

    /// Decides one request at `now` instead of Redis's `TIME`: for tests and
    /// simulations that drive a manual clock. Times are taken in whole
    /// microseconds (rounded up); keys still expire on the server's clock, after
    /// [`TTL_GRACE`].
    pub async fn decide_at<K: RedisKey>(
        &self,
        charges: &[Charge<K>],
        now: Timestamp,
    ) -> Result<Decision, StoreError> {
        self.run(charges, Some(now), true).await
    }

    /// What a decision would answer now, charging nothing: a key's current
    /// usage, for an admin (as `MemoryStore::peek_at`).
    pub async fn peek<K: RedisKey>(&self, charges: &[Charge<K>]) -> Result<Decision, StoreError> {
        self.run(charges, None, false).await
    }

    /// What a decision at `now` would answer, charging nothing.
    pub async fn peek_at<K: RedisKey>(
        &self,
        charges: &[Charge<K>],
        now: Timestamp,
    ) -> Result<Decision, StoreError> {
        self.run(charges, Some(now), false).await
    }

    fn run<K: RedisKey>(
        &self,
        charges: &[Charge<K>],
        now: Option<Timestamp>,
        commit: bool,
    ) -> impl Future<Output = Result<Decision, StoreError>> + Send {
        let run = script::Run {
            now,
            commit,
            ttl_grace: TTL_GRACE,
        };
        // Render everything now, so the future owns its arguments and borrows
        // neither the charges nor their keys.
        let call = (!charges.is_empty())
            .then(|| script::invocation(&self.script, &self.prefix, charges, run));
        let limits: Vec<(LimitId, u32)> = charges
            .iter()
            .map(|c| (c.limit, c.quota.rate.count()))
            .collect();
        let mut conn = self.conn.clone();
        async move {
            let Some(call) = call else {
                return Ok(Decision::default());
            };
            let reply: Vec<i64> = call
                .invoke_async(&mut conn)
                .await
                .map_err(|e| with_context("deciding", e))?;
            script::decision(&limits, &reply)
        }
    }
}

impl<K: RedisKey + Send + Sync> Store<K> for RedisStore {
    fn decide(
        &self,
        charges: &[Charge<K>],
    ) -> impl Future<Output = Result<Decision, StoreError>> + Send {
        self.run(charges, None, true)
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
