//! `gateway.toml`: what the gateway listens on, where it forwards, and the limits
//! it enforces. Loaded and checked in full before anything starts; every mistake
//! is reported with its file, line and key, and what to write instead.

mod raw;
mod validate;

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::{HeaderName, Method, Uri};
use tollgate_core::PolicySet;
use tollgate_core::abuse::EscalationPolicy;

pub use tollgate_config::ConfigError;

/// How clients present their API key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKeySource {
    /// The header that carries it (`x-api-key`, or `authorization`).
    pub header: HeaderName,
    /// A scheme before the key in that header (`Bearer`), if any.
    pub scheme: Option<String>,
}

/// The admin API's listener and token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminConfig {
    /// Where the admin API listens (keep it on a private interface).
    pub listen: SocketAddr,
    /// The environment variable that holds the admin token (never the file).
    pub token_env: String,
}

/// An API the gateway forwards to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    /// The name routes refer to.
    pub name: String,
    /// Scheme, host and port (and an optional path prefix).
    pub url: Uri,
    /// How long the upstream may take to answer before the client gets `504`.
    pub timeout: Duration,
}

/// A method and path pattern, forwarded to one upstream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The name limits refer to, and that metrics use.
    pub name: String,
    /// The method it matches; any method when `None`.
    pub method: Option<Method>,
    /// The path pattern, e.g. `/dev/v1/channel/user/{appid}/{channel}`.
    pub path: String,
    /// Index into [`GatewayConfig::upstreams`].
    pub upstream: usize,
}

/// Limit state in Redis, shared by every gateway that names the same server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://host:port/db`.
    pub url: String,
    /// While Redis is unreachable: decide locally (`open`) or refuse with 503 (`closed`).
    pub fail_open: bool,
    /// How many gateways share the limits: a local decision allows each limit
    /// divided by this.
    pub instances: u32,
    /// Limits whose own `fail` says otherwise than [`fail_open`](Self::fail_open):
    /// `(limit, fail open)`.
    pub per_limit_fail: Vec<(tollgate_core::LimitId, bool)>,
    /// The prefix of every key tollgate writes.
    pub prefix: String,
    /// `url` is one node of a Redis Cluster (the others are discovered).
    pub cluster: bool,
}

/// A loaded, checked gateway configuration.
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// The file it was read from.
    pub source: PathBuf,
    /// Where clients connect.
    pub listen: SocketAddr,
    /// How many worker threads serve clients, each with its own listener on
    /// `listen`; one per core when `None`.
    pub workers: Option<NonZeroUsize>,
    /// How long a worker may hold its core before it gives the other threads
    /// waiting for it a turn (`sched_yield`); `None`: never. Read by
    /// [`Gateway::serve_workers`](crate::Gateway::serve_workers) when the
    /// workers start (a reload does not change it).
    pub yield_after: Option<Duration>,
    /// The SQLite file of API keys.
    pub database: PathBuf,
    /// How clients present their key.
    pub api_key: ApiKeySource,
    /// The admin API, if enabled.
    pub admin: Option<AdminConfig>,
    /// When hammering after a `429` becomes a `403`.
    pub escalation: EscalationPolicy,
    /// Requests per window each paid increment adds to a tiered limit.
    pub tier_step: u32,
    /// The largest request body accepted (bytes).
    pub max_body: u64,
    /// How long a client may take to send its request headers.
    pub header_timeout: Duration,
    /// The APIs behind the gateway.
    pub upstreams: Vec<Upstream>,
    /// The routes, in the order written; a route's index is its endpoint id.
    pub routes: Vec<Route>,
    /// The limits; a policy's endpoints are route indexes.
    pub policies: PolicySet,
    /// Limit state in Redis instead of this process.
    pub redis: Option<RedisConfig>,
}

/// `yield_after` when the file leaves it out: a quarter of a 250 Hz kernel's
/// tick, so that a thread waiting for a busy worker's core waits about that
/// long rather than one or two ticks (see docs/gateway.md, "Worker threads").
pub const DEFAULT_YIELD_AFTER: Duration = Duration::from_millis(1);

/// Reads a `yield_after` value: a duration like `1ms`, or `off`.
///
/// ```
/// use std::time::Duration;
/// use tollgate_gateway::config::parse_yield_after;
/// assert_eq!(parse_yield_after("2ms"), Ok(Some(Duration::from_millis(2))));
/// assert_eq!(parse_yield_after("off"), Ok(None));
/// assert!(parse_yield_after("0ms").unwrap_err().contains("`off`"));
/// ```
pub fn parse_yield_after(text: &str) -> Result<Option<Duration>, String> {
    if text.trim() == "off" {
        return Ok(None);
    }
    match tollgate_core::parse_duration(text) {
        Some(after) if !after.is_zero() => Ok(Some(after)),
        Some(_) => Err(format!(
            "`{text}` is zero: write a duration above zero like `1ms`, or `off` for workers that never give other threads a turn"
        )),
        None => Err(format!(
            "`{text}` is not a duration: write it like `1ms` or `2ms`, or `off` for workers that never give other threads a turn"
        )),
    }
}

impl GatewayConfig {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = tollgate_config::Locator::read(path, "examples/gateway.toml")?;
        Self::parse(&text, path)
    }

    /// Checks a configuration given as text; `path` is only used in messages and
    /// to resolve a relative database path.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        validate::validate(text, path)
    }
}

#[cfg(test)]
mod tests;
