//! `sync.toml`: the sources to import, how to reach them, their limits and
//! resources. Checked in full before anything starts; every mistake is reported
//! with its file, line and key.

mod raw;
mod validate;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http::HeaderName;
use tollgate_core::Rate;

pub use tollgate_config::ConfigError;

/// A loaded, checked sync configuration.
#[derive(Clone, Debug)]
pub struct SyncConfig {
    /// The file it was read from.
    pub source: PathBuf,
    /// The storage layer: `sqlite://file.db` (the default) or `postgres://…`.
    pub store: String,
    /// Where the read API listens, if it is served.
    pub listen: Option<SocketAddr>,
    /// A Redis server (`redis://host:port`) where the budget of each key is
    /// shared with every other sync process that names it, if any.
    pub redis: Option<String>,
    /// `redis` is one node of a Redis Cluster (the others are discovered).
    pub redis_cluster: bool,
    /// The APIs to import from.
    pub sources: Vec<Source>,
}

/// One provider API and one key's budget on it.
#[derive(Clone, Debug)]
pub struct Source {
    /// Its name (in the store, the read API and the report).
    pub name: String,
    /// Scheme, host, port and an optional path prefix.
    pub base_url: String,
    /// How the key is sent and where it is read from.
    pub key: KeySpec,
    /// The provider's limits for this key, or `None` to discover them.
    pub limits: Option<Vec<Rate>>,
    /// How long a request may take.
    pub timeout: Duration,
    /// Requests in flight at once (the pacer still spaces them).
    pub concurrency: u32,
    /// How the outbox delivers submissions (`[sources.submit]`).
    pub submit: Submit,
    /// What to import.
    pub resources: Vec<Resource>,
    /// The provider's push notifications, if it sends any (`[sources.events]`).
    pub events: Option<Events>,
}

/// How the API key is sent, and where its secret comes from (never the file).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeySpec {
    /// The header (`x-api-key`, `authorization`).
    pub header: HeaderName,
    /// A scheme before the key (`Bearer`).
    pub scheme: Option<String>,
    /// Where the secret is.
    pub secret: SecretSource,
}

/// How the outbox delivers submissions to one source (`[sources.submit]`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Submit {
    /// The header the provider reads an idempotency key from, when it honours
    /// one (`Idempotency-Key`): each submission's key goes in it, so a
    /// submission sent again after a crash is not acted on twice. `None`: the
    /// provider is not told the key.
    pub idempotency_header: Option<HeaderName>,
}

/// Where a secret is read from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretSource {
    /// An environment variable.
    Env(String),
    /// A file (its content, trimmed).
    File(PathBuf),
}

impl KeySpec {
    /// Reads the secret; the error says which variable or file to set.
    pub fn read_secret(&self) -> Result<String, String> {
        let secret = match &self.secret {
            SecretSource::Env(name) => std::env::var(name).map_err(|_| format!("the API key is read from the environment variable `{name}`, which is not set: export it"))?,
            SecretSource::File(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("the API key is read from `{}`, which cannot be read ({e})", path.display()))?,
        };
        let secret = secret.trim().to_owned();
        if secret.is_empty() {
            return Err("the API key is empty".into());
        }
        Ok(secret)
    }
}

/// One kind of record to import.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resource {
    /// Its name: the table `records_<name>` and the read API's path.
    pub name: String,
    /// The path, with `{placeholders}` filled from a parent record (fan-out).
    pub path: String,
    /// Fixed query parameters.
    pub query: Vec<(String, String)>,
    /// A JSON pointer to the records in the body (`/data`); the body itself
    /// when empty.
    pub records: String,
    /// The primary key: a field of each record (or a JSON pointer into it).
    pub id: String,
    /// How pages follow one another.
    pub pagination: Pagination,
    /// Only fetch what changed since the last import.
    pub incremental: Option<Incremental>,
    /// How fresh the data should be: a full import this often.
    pub every: Duration,
    /// A limit of this endpoint alone (`20/s`), on top of the key's budget.
    pub limit: Option<Rate>,
    /// For each record of another resource, import this one.
    pub for_each: Option<ForEach>,
}

/// How pages follow one another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pagination {
    /// One request returns everything.
    None,
    /// `?page=1,2,…` until a page comes back short or empty.
    Page {
        /// The page-number parameter.
        param: String,
        /// The page-size parameter and size, if any.
        size: Option<(String, u32)>,
        /// The first page's number.
        start: u64,
    },
    /// `?offset=0,100,…` until a page comes back short or empty.
    Offset {
        /// The offset parameter.
        param: String,
        /// The page-size parameter and size.
        size: (String, u32),
    },
    /// A cursor in the body (`/next_cursor`) passed back as a parameter.
    Cursor {
        /// The parameter.
        param: String,
        /// A JSON pointer to the next cursor; null or missing ends.
        next: String,
    },
    /// RFC 8288 `Link: <…>; rel="next"`.
    Link,
}

/// Incremental imports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Incremental {
    /// The record field that says when it changed.
    pub field: String,
    /// The query parameter that asks for changes since a value.
    pub param: String,
}

/// A fan-out: one request per record of a parent resource.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForEach {
    /// The parent resource.
    pub resource: String,
    /// Path placeholder → the parent record's field that fills it.
    pub fields: Vec<(String, String)>,
    /// A bulk read of many parents' children at once, used instead of one
    /// request per parent when the provider offers one (`bulk = { … }`).
    pub bulk: Option<Bulk>,
}

/// A bulk read: `GET <path>?<param>=a,b,c` answers the children of up to
/// `max` parents in one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bulk {
    /// The bulk endpoint's path (`/v1/properties/bulk`).
    pub path: String,
    /// The query parameter that takes the parents' values, joined by commas.
    pub param: String,
    /// At most this many values a request.
    pub max: u32,
    /// A JSON pointer to the array of records in the answer (`/data`); the
    /// body itself when empty.
    pub records: String,
}

/// The provider's push notifications (webhooks) for one source: how they are
/// authenticated and which stored records each kind of event changes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Events {
    /// Where the shared signing secret is (never the file).
    pub secret: SecretSource,
    /// The header with `sha256=<hex>`: HMAC-SHA256 of `<timestamp>.<body>`.
    pub signature_header: HeaderName,
    /// The header with the signing instant, in unix seconds.
    pub timestamp_header: HeaderName,
    /// How far the signing instant may be from now, either way: an older
    /// event is refused as stale, so a captured one cannot be replayed later.
    pub tolerance: Duration,
    /// A JSON pointer to the event's id in the body (`/id`).
    pub id: String,
    /// A JSON pointer to the event's type in the body (`/type`).
    pub kind: String,
    /// How often a resource that events keep fresh is still polled; `None`:
    /// ten times its `every`.
    pub poll_every_with_events: Option<Duration>,
    /// Event type → the change it makes, in file order.
    pub map: Vec<EventMapping>,
}

/// What one type of event does to the stored records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventMapping {
    /// The event type, as the provider names it (`property.updated`).
    pub kind: String,
    /// The resource whose records it changes.
    pub resource: String,
    /// Store the record, or delete it.
    pub action: EventAction,
    /// A JSON pointer to the record in the event (`/data`; `""`: the event itself).
    pub record: String,
    /// A JSON pointer to the record's primary key in the event; `None`: the
    /// resource's `id` in the record.
    pub id: Option<String>,
}

/// What an event does to its record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventAction {
    /// Stores the record the event carries (inserted or replaced).
    Upsert,
    /// Deletes the record.
    Delete,
}

impl Events {
    /// How often `resource`, planned every `every`, is polled: less often
    /// when an event mapping keeps it fresh; `None` when none does.
    pub fn poll_every(&self, resource: &str, every: Duration) -> Option<Duration> {
        self.map
            .iter()
            .any(|m| m.resource == resource)
            .then(|| self.poll_every_with_events.unwrap_or(every * 10))
    }
}

impl SecretSource {
    /// Reads the secret; `what` names it in the error, which says which
    /// variable or file to set.
    pub fn read(&self, what: &str) -> Result<String, String> {
        let secret = match self {
            Self::Env(name) => std::env::var(name).map_err(|_| {
                format!("{what} is read from the environment variable `{name}`, which is not set: export it")
            })?,
            Self::File(path) => std::fs::read_to_string(path).map_err(|e| {
                format!("{what} is read from `{}`, which cannot be read ({e})", path.display())
            })?,
        };
        let secret = secret.trim().to_owned();
        if secret.is_empty() {
            return Err(format!("{what} is empty"));
        }
        Ok(secret)
    }
}

impl SyncConfig {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = tollgate_config::Locator::read(path, "examples/sync.toml")?;
        Self::parse(&text, path)
    }

    /// Checks a configuration given as text (`path` for messages and for a
    /// relative SQLite path).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        validate::validate(text, path)
    }
}

#[cfg(test)]
mod tests;
