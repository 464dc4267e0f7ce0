//! The values that go in and out of the storage layer.

use std::fmt;

use serde_json::Value;

/// The most records one [`ListQuery`] returns.
pub const MAX_LIST_LIMIT: u32 = 1000;

/// Which database a [`Storage`](crate::Storage) talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Backend {
    /// A SQLite file (or a private in-memory database).
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sqlite => "SQLite",
            Self::Postgres => "PostgreSQL",
        })
    }
}

/// A record as fetched from the source, to be stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    /// The source's primary key, as text.
    pub id: String,
    /// The record as the source sent it.
    pub body: Value,
    /// The record's `ETag`, if the source sent one.
    pub etag: Option<String>,
    /// The record's `Last-Modified`, if the source sent one.
    pub last_modified: Option<String>,
    /// The value of the resource's incremental field ("updated since"), if it
    /// has one: the run's watermark is the latest of these.
    pub updated_at: Option<String>,
    /// When it was fetched.
    pub fetched_at_ms: i64,
}

impl Record {
    /// A record with no validators and no incremental field.
    pub fn new(id: impl Into<String>, body: Value, fetched_at_ms: i64) -> Self {
        Self {
            id: id.into(),
            body,
            etag: None,
            last_modified: None,
            updated_at: None,
            fetched_at_ms,
        }
    }

    /// The same record with its incremental field's value.
    pub fn updated_at(mut self, value: impl Into<String>) -> Self {
        self.updated_at = Some(value.into());
        self
    }
}

/// A record as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredRecord {
    /// The source's primary key, as text.
    pub id: String,
    /// The record as the source last sent it.
    pub body: Value,
    /// Its `ETag`, as last fetched.
    pub etag: Option<String>,
    /// Its `Last-Modified`, as last fetched.
    pub last_modified: Option<String>,
    /// Its incremental field's value when its body last changed.
    pub updated_at: Option<String>,
    /// When it was last fetched, changed or not.
    pub fetched_at_ms: i64,
    /// When it was first stored.
    pub created_at_ms: i64,
}

/// Where an unfinished import run resumes: saved with the page it follows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Opaque to the storage: the next page number, a cursor token or the next URL.
    pub cursor: String,
    /// Pages saved so far in this run.
    pub pages_done: u64,
    /// Records saved so far in this run.
    pub records_done: u64,
    /// When the run started, so a resumed run reports its whole duration.
    pub started_at_ms: i64,
}

/// What saving a page did, record by record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PageStats {
    /// Records that were not stored yet.
    pub inserted: u64,
    /// Records whose body changed.
    pub updated: u64,
    /// Records whose body is identical: only their fetch time and validators moved.
    pub unchanged: u64,
}

impl PageStats {
    /// Records in the page.
    pub fn total(&self) -> u64 {
        self.inserted + self.updated + self.unchanged
    }

    pub(crate) fn count(&mut self, change: Change) {
        match change {
            Change::Inserted => self.inserted += 1,
            Change::Updated => self.updated += 1,
            Change::Unchanged => self.unchanged += 1,
        }
    }
}

/// What storing one record did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// It was not stored yet.
    Inserted,
    /// Its body changed.
    Updated,
    /// Its body is identical: only its fetch time and validators moved.
    Unchanged,
}

/// A finished import run, as [`Storage::finish_run`](crate::Storage::finish_run) records it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunOutcome {
    /// When the run finished.
    pub finished_at_ms: i64,
    /// How long it took, from the start of its first attempt.
    pub duration_ms: u64,
    /// Pages fetched.
    pub pages: u64,
    /// Records fetched.
    pub records: u64,
    /// The `ETag` of the list, for a conditional request next time.
    pub list_etag: Option<String>,
    /// The `Last-Modified` of the list, for a conditional request next time.
    pub list_last_modified: Option<String>,
}

/// The state of a resource (or of one scope of a fan-out resource).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResourceState {
    /// The resource.
    pub resource: String,
    /// `""` for a plain resource, the parent's id for a fan-out.
    pub scope: String,
    /// When the last complete run finished.
    pub last_success_ms: Option<i64>,
    /// How long the last complete run took.
    pub last_duration_ms: Option<u64>,
    /// Pages the last complete run fetched.
    pub last_pages: Option<u64>,
    /// Records the last complete run fetched.
    pub last_records: Option<u64>,
    /// The last error recorded, even if a run succeeded since: compare the times.
    pub last_error: Option<String>,
    /// When the last error was recorded.
    pub last_error_ms: Option<i64>,
    /// The latest `updated_at` of the completed runs: fetch only what changed
    /// since. Runs still in progress do not move it, so a run that is restarted
    /// from scratch misses nothing.
    pub watermark: Option<String>,
    /// The `ETag` of the list at the last complete run.
    pub list_etag: Option<String>,
    /// The `Last-Modified` of the list at the last complete run.
    pub list_last_modified: Option<String>,
}

/// Which records [`Storage::list`](crate::Storage::list) returns: a keyset page in id order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListQuery {
    /// Only ids after this one (the last id of the previous page).
    pub after: Option<String>,
    /// At most this many records, 1 to [`MAX_LIST_LIMIT`].
    pub limit: u32,
    /// Only records whose top-level field (first) has this text value (second):
    /// a JSON string as it is, a number or `true`/`false` as written in JSON.
    pub filter: Option<(String, String)>,
}

impl ListQuery {
    /// The first `limit` records.
    pub fn first(limit: u32) -> Self {
        Self {
            after: None,
            limit,
            filter: None,
        }
    }

    /// The same query for the ids after `id`.
    pub fn after(mut self, id: impl Into<String>) -> Self {
        self.after = Some(id.into());
        self
    }

    /// The same query for records whose top-level `field` is `value`.
    pub fn filter(mut self, field: impl Into<String>, value: impl Into<String>) -> Self {
        self.filter = Some((field.into(), value.into()));
        self
    }
}

/// A `429` the sync daemon received, and whether it waited it out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimitEvent {
    /// The source that answered `429`.
    pub source: String,
    /// When the `429` arrived.
    pub at_ms: i64,
    /// The earliest next request it allowed (from `Retry-After`, or the default wait).
    pub retry_at_ms: i64,
    /// When the source was next called, if it was.
    pub next_call_ms: Option<i64>,
    /// Whether that call came at or after `retry_at_ms`; `None` until it happens.
    pub honoured: Option<bool>,
}
