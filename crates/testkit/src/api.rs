//! Building the example API, and the handle that tests steer and inspect it by.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use parking_lot::RwLock;
use serde_json::Value;
use tokio::net::TcpListener;
use tollgate_core::{Clock, MemoryStore, SystemClock};

use crate::data::{Dataset, Sizes};
use crate::endpoint::{Endpoint, Resource};
use crate::faults::{FaultState, Faults};
use crate::gate::{BlockEvent, Gate, KeyStats, LogEntry};
use crate::limits::{HeaderStyle, Limits};
use crate::routes::{ApiError, router};
use crate::server::RunningApi;
use crate::writes::{WriteEntry, Writes};

/// The state every request and the handle share.
pub(crate) struct Shared {
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) app_id: String,
    /// The keys accepted; `None`: any non-empty key.
    keys: Option<HashSet<String>>,
    pub(crate) headers: HeaderStyle,
    pub(crate) data: RwLock<Dataset>,
    pub(crate) gate: Gate,
    pub(crate) faults: FaultState,
    pub(crate) writes: Writes,
}

impl Shared {
    /// `401` unless `key` is accepted.
    pub(crate) fn authorise(&self, key: &str) -> Result<(), ApiError> {
        if key.is_empty() {
            let message = "missing API key: send it in X-Api-Key or as Authorization: Bearer <key>";
            return Err(ApiError::new(StatusCode::UNAUTHORIZED, message));
        }
        match &self.keys {
            Some(keys) if !keys.contains(key) => {
                Err(ApiError::new(StatusCode::UNAUTHORIZED, "unknown API key"))
            }
            _ => Ok(()),
        }
    }
}

/// An example provider API: a real-time communication platform and a
/// property-management platform behind strict limits, on a real HTTP port.
pub struct ExampleApi {
    shared: Arc<Shared>,
}

impl ExampleApi {
    /// A builder with the seeds' defaults (see [`ExampleApiBuilder`]).
    pub fn builder() -> ExampleApiBuilder {
        ExampleApiBuilder::default()
    }

    /// The handle to steer and inspect the API by.
    pub fn handle(&self) -> ApiHandle {
        ApiHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Serves on `127.0.0.1` at a free port.
    ///
    /// # Errors
    /// If no port can be bound.
    pub async fn spawn(self) -> std::io::Result<RunningApi> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        self.serve(listener)
    }

    /// Serves on `listener` (bound by the caller, e.g. to a fixed port).
    ///
    /// # Errors
    /// If the listener's address cannot be read.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn serve(self, listener: TcpListener) -> std::io::Result<RunningApi> {
        let handle = self.handle();
        RunningApi::start(listener, router(self.shared), handle)
    }
}

/// How to build an [`ExampleApi`]. Defaults: seed 42; 100 channels, 260
/// properties, 180 tenancies, 75 applicants; app id `demo-app`; [`Limits::default`] (50 per rolling 60 s per key, 20/s per key on
/// the user list), not strict (a strict block lasts 300 s), IETF headers,
/// `Retry-After` on every `429`, the system clock, any non-empty key, no faults.
pub struct ExampleApiBuilder {
    seed: u64,
    sizes: Sizes,
    app_id: String,
    limits: Limits,
    strict_block: Option<Duration>,
    block_for: Duration,
    headers: HeaderStyle,
    retry_after: bool,
    clock: Option<Arc<dyn Clock>>,
    keys: Vec<String>,
    faults: Faults,
    endpoint_faults: HashMap<Endpoint, Faults>,
}

impl Default for ExampleApiBuilder {
    fn default() -> Self {
        Self {
            seed: 42,
            sizes: Sizes::default(),
            app_id: "demo-app".into(),
            limits: Limits::default(),
            strict_block: None,
            block_for: Duration::from_secs(300),
            headers: HeaderStyle::default(),
            retry_after: true,
            clock: None,
            keys: Vec::new(),
            faults: Faults::none(),
            endpoint_faults: HashMap::new(),
        }
    }
}

impl ExampleApiBuilder {
    /// The seed of the data and of the faults.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// How many channels.
    pub fn channels(mut self, count: usize) -> Self {
        self.sizes.channels = count;
        self
    }

    /// How many properties.
    pub fn properties(mut self, count: usize) -> Self {
        self.sizes.properties = count;
        self
    }

    /// How many tenancies.
    pub fn tenancies(mut self, count: usize) -> Self {
        self.sizes.tenancies = count;
        self
    }

    /// How many applicants.
    pub fn applicants(mut self, count: usize) -> Self {
        self.sizes.applicants = count;
        self
    }

    /// The app id the channel routes answer for (`{appid}`); others get `404`.
    pub fn app_id(mut self, app_id: impl Into<String>) -> Self {
        self.app_id = app_id.into();
        self
    }

    /// The limits enforced.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Strict mode: a request that comes before the retry instant its key was
    /// last told (by `Retry-After`, rounded up; without it, the limit's window)
    /// blocks the key at once: `403 {"error":"abnormal usage"}`, for
    /// [`strict_block`](Self::strict_block), and is recorded as a [`BlockEvent`].
    pub fn strict(mut self, strict: bool) -> Self {
        self.strict_block = strict.then_some(self.block_for);
        self
    }

    /// How long a strict-mode block lasts (default 300 s).
    pub fn strict_block(mut self, block: Duration) -> Self {
        self.block_for = block;
        self.strict_block = self.strict_block.map(|_| block);
        self
    }

    /// Which rate-limit headers to advertise.
    pub fn headers(mut self, style: HeaderStyle) -> Self {
        self.headers = style;
        self
    }

    /// Whether a `429` carries `Retry-After` (default true). Without it, like a
    /// provider that only documents "wait 60 seconds", the key is held to the
    /// rejecting limit's whole window.
    pub fn retry_after(mut self, send: bool) -> Self {
        self.retry_after = send;
        self
    }

    /// The clock the limits and the log read (a `ManualClock` in tests).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Accepts `key` (call once per key). Without any, every non-empty key is accepted.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.keys.push(key.into());
        self
    }

    /// Faults on every endpoint without its own setting.
    pub fn faults(mut self, faults: Faults) -> Self {
        self.faults = faults;
        self
    }

    /// Faults on one endpoint.
    pub fn endpoint_faults(mut self, endpoint: Endpoint, faults: Faults) -> Self {
        self.endpoint_faults.insert(endpoint, faults);
        self
    }

    /// The API, with its data generated; [`ExampleApi::spawn`] serves it.
    pub fn build(self) -> ExampleApi {
        let clock = self.clock.unwrap_or_else(|| Arc::new(SystemClock::new()));
        let store = MemoryStore::new(Arc::clone(&clock));
        let gate = Gate::new(
            self.limits.policies(),
            store,
            self.strict_block,
            self.retry_after,
        );
        let keys = (!self.keys.is_empty()).then(|| self.keys.into_iter().collect());
        let shared = Shared {
            clock,
            app_id: self.app_id,
            keys,
            headers: self.headers,
            data: RwLock::new(Dataset::generate(self.seed, self.sizes)),
            gate,
            faults: FaultState::new(self.seed, self.faults, self.endpoint_faults),
            writes: Writes::default(),
        };
        ExampleApi {
            shared: Arc::new(shared),
        }
    }
}

/// Steers a running example API (faults, outage, data changes) and shows what it
/// saw (the request log, counters, strict-mode blocks, writes, the records).
/// Cheap to clone.
#[derive(Clone)]
pub struct ApiHandle {
    shared: Arc<Shared>,
}

impl fmt::Debug for ApiHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiHandle")
            .field("app_id", &self.shared.app_id)
            .finish_non_exhaustive()
    }
}

impl ApiHandle {
    /// The app id the channel routes answer for.
    pub fn app_id(&self) -> &str {
        &self.shared.app_id
    }

    /// Turns the outage on (every request `503`, nothing counted by the limits)
    /// or off.
    pub fn set_outage(&self, on: bool) {
        self.shared.faults.set_outage(on);
    }

    /// Whether the outage is on.
    pub fn outage(&self) -> bool {
        self.shared.faults.outage()
    }

    /// Faults on every endpoint without its own setting.
    pub fn set_faults(&self, faults: Faults) {
        self.shared.faults.set_all(faults);
    }

    /// Faults on one endpoint.
    pub fn set_endpoint_faults(&self, endpoint: Endpoint, faults: Faults) {
        self.shared.faults.set_endpoint(endpoint, faults);
    }

    /// No faults anywhere (the outage switch is apart).
    pub fn clear_faults(&self) {
        self.shared.faults.clear();
    }

    /// Every request so far, in the order answered.
    pub fn log(&self) -> Vec<LogEntry> {
        self.shared.gate.log()
    }

    /// The counters of `key` (zero for a key never seen).
    pub fn stats(&self, key: &str) -> KeyStats {
        self.all_stats().remove(key).unwrap_or_default()
    }

    /// The counters of every key seen.
    pub fn all_stats(&self) -> BTreeMap<String, KeyStats> {
        self.shared.gate.stats()
    }

    /// The most requests `key` sent (whatever their answer) within any window
    /// `(t − window, t]`: compare it with a limit to show a client kept to it.
    pub fn max_in_any_window(&self, key: &str, window: Duration) -> usize {
        self.shared.gate.max_in_any_window(key, window)
    }

    /// Every key strict mode ever blocked, sorted: empty for a client that never
    /// came back before it was told.
    pub fn blocked_keys(&self) -> Vec<String> {
        self.shared.gate.blocked_keys()
    }

    /// Every strict-mode block, in order.
    pub fn block_events(&self) -> Vec<BlockEvent> {
        self.shared.gate.blocks()
    }

    /// Lifts `key`'s block (the events stay recorded); true if it was blocked.
    pub fn unblock(&self, key: &str) -> bool {
        self.shared.gate.unblock(key, self.shared.clock.now())
    }

    /// Every write that reached a write endpoint, in order.
    pub fn writes(&self) -> Vec<WriteEntry> {
        self.shared.writes.log()
    }

    /// Every record of `resource` as the API now serves it, in primary-key order
    /// (created records in creation order): what a complete sync must hold.
    pub fn expected_records(&self, resource: Resource) -> Vec<Value> {
        match resource {
            Resource::TenancyApplications | Resource::Appointments => {
                self.shared.writes.created(resource)
            }
            _ => self.shared.data.read().records(resource),
        }
    }

    /// Changes `count` records of `resource`, chosen by the seed, and returns
    /// their primary keys (channel names for channels, whose user lists change).
    /// Changed records get an `updated_at` later than every record's before and
    /// no earlier than the clock, so `updated_since` finds exactly them.
    pub fn touch(&self, resource: Resource, count: usize) -> Vec<String> {
        let now_secs = self.shared.clock.now().as_nanos().div_ceil(1_000_000_000);
        self.shared.data.write().touch(resource, count, now_secs)
    }
}
