//! Everything the imports of one source share.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use http::{HeaderName, HeaderValue};
use sha2::{Digest, Sha256};
use tollgate_core::{Clock, Rate, Timestamp};
use tollgate_sql::Storage;

use super::claim::Division;
use crate::config::Source;
use crate::pacer::{Advice, Answer, Pacer, PastRequest, Permit};

/// Counters of one source, for the progress line, `/status` and the report.
#[derive(Debug, Default)]
pub struct SourceStats {
    /// Requests sent.
    pub requests: AtomicU64,
    /// `429`s received (each waited out).
    pub rejected_429: AtomicU64,
    /// Failed attempts (server errors, timeouts, unusable bodies).
    pub failures: AtomicU64,
    /// Records stored.
    pub records: AtomicU64,
    /// Pages stored.
    pub pages: AtomicU64,
    /// Answers `304 Not Modified`: nothing to store.
    pub unchanged: AtomicU64,
    /// Set by a `403`: the source is stopped.
    pub forbidden: AtomicBool,
}

/// One source's client, pacer, storage and counters.
pub struct SourceContext {
    /// Its configuration.
    pub source: Source,
    /// The HTTP client (pooled connections, the source's timeout).
    pub http: reqwest::Client,
    /// The header that carries the key, and its value (with the scheme).
    pub key_header: HeaderName,
    /// Marked sensitive, so it never appears in logs.
    pub key_value: HeaderValue,
    /// The source's pacer.
    pub pacer: Arc<Pacer>,
    /// The storage layer.
    pub storage: Storage,
    /// The clock.
    pub clock: Arc<dyn Clock>,
    /// Counters.
    pub stats: SourceStats,
    /// Each resource's own limit in the pacer, if it has one.
    pub endpoint_limits: HashMap<String, usize>,
    /// A `429` was recorded and the next call not yet.
    pending_429: AtomicBool,
    /// The work division with other processes, when they share this
    /// process's budget and storage layer.
    pub(crate) division: OnceLock<Division>,
}

/// Why a source cannot start.
#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    /// The key cannot be read.
    #[error("source `{source_name}`: {problem}")]
    Key {
        /// The source.
        source_name: String,
        /// What to do.
        problem: String,
    },
    /// The HTTP client cannot be built.
    #[error("source `{0}`: cannot build the HTTP client: {1}")]
    Client(String, reqwest::Error),
}

/// A provider's whole answer: status, headers and body.
pub type Answered = (http::StatusCode, http::HeaderMap, bytes::Bytes);

impl SourceContext {
    /// Sends `request`, which the pacer let go with `permit`, reads the whole
    /// answer, and tells the pacer (and the restart record) how it went.
    /// Returns the answer and, after a `429`, the instant every request of the
    /// source is paused until.
    pub async fn send_paced(
        &self,
        permit: Permit,
        request: reqwest::RequestBuilder,
    ) -> (Result<Answered, reqwest::Error>, Option<Timestamp>) {
        let id = permit.id;
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        let result = match request.send().await {
            Ok(response) => {
                let status = response.status();
                let headers = response.headers().clone();
                response.bytes().await.map(|body| (status, headers, body))
            }
            Err(err) => Err(err),
        };
        let (answer, advice) = match &result {
            Ok((status, headers, _)) => (
                Answer::Status(status.as_u16()),
                Advice::from_headers(headers, std::time::SystemTime::now()),
            ),
            Err(_) => (Answer::Failed, Advice::default()),
        };
        let paused = self.pacer.complete(permit, answer, &advice).await;
        self.note_answered(id).await;
        (result, paused)
    }

    /// A context for `source`, reading its key secret now. Without known limits
    /// (`discover`) the pacer starts at one request per second and adopts what
    /// the provider announces.
    pub fn new(
        source: Source,
        storage: Storage,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ContextError> {
        let secret = source
            .key
            .read_secret()
            .map_err(|problem| ContextError::Key {
                source_name: source.name.clone(),
                problem,
            })?;
        let value = match &source.key.scheme {
            Some(scheme) => format!("{scheme} {secret}"),
            None => secret,
        };
        let mut key_value = HeaderValue::try_from(value).map_err(|_| ContextError::Key {
            source_name: source.name.clone(),
            problem: "the API key has characters a header cannot carry".into(),
        })?;
        key_value.set_sensitive(true);
        let http = reqwest::Client::builder()
            .timeout(source.timeout)
            .pool_max_idle_per_host(source.concurrency as usize)
            .build()
            .map_err(|e| ContextError::Client(source.name.clone(), e))?;
        let (limits, learn) = match &source.limits {
            Some(limits) => (limits.clone(), false),
            None => (vec![tollgate_core::Rate::per_second(1)], true),
        };
        let pacer = Arc::new(Pacer::new(&limits, learn, Arc::clone(&clock)));
        let endpoint_limits = source
            .resources
            .iter()
            .filter_map(|r| Some((r.name.clone(), pacer.add_limit(&r.name, r.limit?))))
            .collect();
        Ok(Self {
            key_header: source.key.header.clone(),
            source,
            http,
            key_value,
            pacer,
            storage,
            clock,
            stats: SourceStats::default(),
            endpoint_limits,
            pending_429: AtomicBool::new(false),
            division: OnceLock::new(),
        })
    }

    /// The name of this key's budget with this provider in a shared store: the
    /// same in every process that calls the same base URL with the same key,
    /// and revealing neither (a SHA-256 digest).
    pub fn budget_name(&self) -> String {
        let mut digest = Sha256::new();
        digest.update(self.source.base_url.as_bytes());
        digest.update(b"\n");
        digest.update(self.key_value.as_bytes());
        let digest = digest.finalize();
        digest[..16].iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Divides the work with the other processes that share `slots` and the
    /// storage layer at `store_url` (see [`CLAIM_TTL`](super::CLAIM_TTL)).
    pub fn divide_work(&self, slots: tollgate_redis::SharedSlots, store_url: &str) {
        let _ = self.division.set(Division::new(slots, store_url));
    }

    /// The longest window of the budget and the endpoints' limits, as known now.
    fn longest_window(&self) -> Duration {
        self.pacer
            .budget()
            .iter()
            .chain(
                self.source
                    .resources
                    .iter()
                    .filter_map(|r| r.limit.as_ref()),
            )
            .map(Rate::window)
            .max()
            .unwrap_or(Duration::ZERO)
    }

    /// Takes back, from the storage layer, the requests an earlier process on
    /// this source sent within the last window and the retry instant of its
    /// last `429`: a restart (after a crash, a deploy, `kill -9`) neither
    /// spends the budget again inside the provider's window nor calls before a
    /// retry instant, which a strict provider punishes with a block.
    pub async fn restore(&self) {
        let now = self.now_ms();
        let since = now.saturating_sub(ms_of(self.longest_window()));
        let name = &self.source.name;
        let past = match self.storage.recent_requests(name, since, now).await {
            Ok(past) => past,
            Err(err) => {
                tracing::warn!(source = %name, %err, "cannot read the requests of the previous run; starting as if the budget were unused");
                Vec::new()
            }
        };
        let paused = match self.storage.latest_retry_at(name).await {
            Ok(at) => at.filter(|at| *at > now),
            Err(err) => {
                tracing::warn!(source = %name, %err, "cannot read the last 429 of the previous run");
                None
            }
        };
        let instant = |ms: i64| Timestamp::from_millis(u64::try_from(ms).unwrap_or(0));
        let past: Vec<PastRequest> = past
            .into_iter()
            .map(|r| PastRequest {
                endpoint: r.endpoint,
                sent_at: instant(r.sent_at_ms),
                answered_at: instant(r.answered_at_ms.unwrap_or(now)),
            })
            .collect();
        if !past.is_empty() || paused.is_some() {
            tracing::info!(source = %name, requests = past.len(), paused_until_ms = ?paused, "the previous run's recent requests still count");
        }
        self.pacer.restore(&past, paused.map(instant));
    }

    /// Records that a request goes out, so that a process started after this
    /// one stops still counts it.
    pub(crate) async fn note_sent(&self, id: u64, endpoints: &[usize]) {
        let endpoint = endpoints.first().and_then(|i| self.pacer.endpoint_name(*i));
        if let Err(err) = self
            .storage
            .record_request_sent(
                &self.source.name,
                id as i64,
                endpoint.as_deref(),
                self.now_ms(),
            )
            .await
        {
            tracing::warn!(%err, "cannot record a request for the next run");
        }
    }

    /// Records that the answer to request `id` arrived now.
    pub(crate) async fn note_answered(&self, id: u64) {
        let now = self.now_ms();
        let forget_before = now.saturating_sub(ms_of(self.longest_window()));
        if let Err(err) = self
            .storage
            .record_request_answered(&self.source.name, id as i64, now, forget_before)
            .await
        {
            tracing::warn!(%err, "cannot record an answer for the next run");
        }
    }

    /// Now, in Unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        ms(self.clock.now())
    }

    /// Records a `429` and the instant it named.
    pub(crate) async fn note_429(&self, until: Timestamp) {
        self.pending_429.store(true, Ordering::SeqCst);
        if let Err(err) = self
            .storage
            .record_429(&self.source.name, self.now_ms(), ms(until))
            .await
        {
            tracing::warn!(%err, "cannot record a 429 for the report");
        }
    }

    /// Records that a request goes out now: after a `429`, the report shows
    /// whether it waited long enough.
    pub(crate) async fn note_call(&self) {
        if self.pending_429.swap(false, Ordering::SeqCst)
            && let Err(err) = self
                .storage
                .record_next_call(&self.source.name, self.now_ms())
                .await
        {
            tracing::warn!(%err, "cannot record the call after a 429");
        }
    }
}

fn ms_of(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// An instant in Unix milliseconds.
pub fn ms(at: Timestamp) -> i64 {
    i64::try_from(at.as_millis()).unwrap_or(i64::MAX)
}
