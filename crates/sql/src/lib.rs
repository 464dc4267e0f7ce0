//! The sync daemon's storage layer: the records it imports, where each import
//! run stands, and every `429` it received — in a SQLite file (the default: no
//! setup) or in PostgreSQL (for shared or bigger deployments), with the same
//! schema and the same behaviour on both.
//!
//! ```
//! use serde_json::json;
//! use tollgate_sql::{Checkpoint, ListQuery, Record, RunOutcome, Storage};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tollgate_sql::StorageError> {
//! let storage = Storage::connect("sqlite::memory:").await?;
//! storage.ensure_resource("channels").await?;
//!
//! // One page and where to resume, in one transaction.
//! let page = [Record::new("c1", json!({"name": "general"}), 1_000)];
//! let next = Checkpoint { cursor: "page=2".into(), pages_done: 1, records_done: 1, started_at_ms: 990 };
//! let stats = storage.save_page("channels", "", &page, Some(&next)).await?;
//! assert_eq!(stats.inserted, 1);
//!
//! // After a crash, the next run starts from here.
//! assert_eq!(storage.checkpoint("channels", "").await?, Some(next));
//!
//! let outcome = RunOutcome { finished_at_ms: 1_200, duration_ms: 210, pages: 1, records: 1, ..RunOutcome::default() };
//! storage.finish_run("channels", "", &outcome).await?;
//! assert_eq!(storage.checkpoint("channels", "").await?, None);
//!
//! let first = storage.list("channels", &ListQuery::first(100)).await?;
//! assert_eq!(first[0].body["name"], "general");
//! # Ok(())
//! # }
//! ```
//!
//! # Connecting
//!
//! [`Storage::connect`] takes a URL and brings the schema up to date:
//!
//! * `sqlite://data/tollgate.db` (relative) or `sqlite:///var/lib/tollgate.db`
//!   (absolute): a file, created with its folder if missing, in WAL mode so
//!   readers never wait for the importer;
//! * `sqlite::memory:`: a private database that lives as long as the `Storage`
//!   (tests, demos);
//! * `postgres://user:password@host:5432/database`: a PostgreSQL server (plain
//!   TCP; this build has no TLS).
//!
//! # Schema
//!
//! An application may read the database directly; these tables are the
//! contract. Times are unix milliseconds (UTC).
//!
//! **`records_<resource>`**, one per resource, created by
//! [`Storage::ensure_resource`]:
//!
//! | column          | SQLite              | PostgreSQL            | meaning |
//! |-----------------|---------------------|-----------------------|---------|
//! | `id`            | `TEXT PRIMARY KEY`  | `TEXT COLLATE "C" PRIMARY KEY` | the source's primary key, as text |
//! | `body`          | `TEXT` (JSON)       | `JSONB`               | the record as the source sent it |
//! | `etag`          | `TEXT`              | `TEXT`                | the record's `ETag`, if the source sent one |
//! | `last_modified` | `TEXT`              | `TEXT`                | its `Last-Modified`, if any |
//! | `updated_at`    | `TEXT`              | `TEXT`                | the value of the resource's incremental field, if any |
//! | `fetched_at_ms` | `BIGINT`            | `BIGINT`              | when it was last fetched (moves even if nothing changed) |
//! | `created_at_ms` | `BIGINT`            | `BIGINT`              | when it was first stored |
//!
//! **`sync_checkpoints`** (`resource`, `scope`, `cursor`, `pages_done`,
//! `records_done`, `started_at_ms`): where an unfinished run resumes. `scope`
//! is `''` for a plain resource and the parent's id for a fan-out's child ("for
//! each channel, its users"); a fan-out as a whole also keeps one at `''` while
//! it is unfinished, whose `started_at_ms` tells a resumed run which children
//! are already done. `cursor` is opaque (a page number, a cursor token or the
//! next URL).
//!
//! **`sync_resources`** (`resource`, `scope`, `last_success_ms`,
//! `last_duration_ms`, `last_pages`, `last_records`, `last_error`,
//! `last_error_ms`, `watermark`, `run_watermark`, `list_etag`,
//! `list_last_modified`): the state of each resource and scope, see
//! [`ResourceState`].
//!
//! **`rate_limit_events`** (`id`, `source`, `at_ms`, `retry_at_ms`,
//! `next_call_ms`, `honoured`): every `429` and whether the next call to that
//! source waited until `retry_at_ms`, see [`RateLimitEvent`].
//!
//! **`outbox`** (`id`, `source`, `idempotency_key`, `method`, `path`,
//! `content_type`, `body`, `priority`, `state`, `attempts`, `next_attempt_ms`,
//! `created_at_ms`, `updated_at_ms`, `response_status`,
//! `response_content_type`, `response_body`, `error`): requests meant for a
//! provider, stored before they are accepted and delivered inside the
//! source's budget, see [`Submission`].
//!
//! **`sync_requests`** (`source`, `id`, `endpoint`, `sent_at_ms`,
//! `answered_at_ms`): the requests of each source's last window, written when
//! each goes out and when its answer arrives, so a restarted process knows the
//! budget the previous one used, see [`Storage::recent_requests`].
//!
//! **`sync_events`** (`source`, `id`, `signed_at_ms`, `received_at_ms`): the
//! webhook events applied within their source's tolerance window, so a replay
//! is refused after a restart too, see [`Storage::claim_event`].
//!
//! Ids sort by their bytes on both backends (PostgreSQL columns use `COLLATE
//! "C"`), so keyset pages come out the same.
//!
//! # What it is not for
//!
//! Not the limiter's state (that is `tollgate-core`'s `Store`, in memory or in
//! Redis), not the gateway's API keys, and not a general ORM: records are
//! opaque JSON documents addressed by id, with one equality filter on a
//! top-level field. Queries are checked at run time (`sqlx::query` with binds),
//! so building needs no database.

/// Runs `$body` once for the storage's concrete pool, bound to `$pool`: the
/// same source compiles against `SqlitePool` and `PgPool`, without the
/// trait-bound maze of code generic over `sqlx::Database`.
macro_rules! on_pool {
    ($storage:expr, $pool:ident => $body:expr) => {
        match &$storage.pool {
            $crate::storage::Pools::Sqlite($pool) => $body,
            $crate::storage::Pools::Postgres($pool) => $body,
        }
    };
}

mod connect;
mod dialect;
mod error;
mod events;
mod name;
mod outbox;
mod rate_limit;
mod records;
mod requests;
mod rows;
mod state;
mod storage;
mod types;
mod watermark;
mod write;

pub use error::StorageError;
pub use events::EventClaim;
pub use name::MAX_RESOURCE_NAME;
pub use outbox::{
    Attempt, NewSubmission, Priority, ProviderAnswer, Submission, SubmissionFilter,
    SubmissionState, Submitted,
};
pub use requests::SentRequest;
pub use storage::Storage;
pub use types::{
    Backend, Change, Checkpoint, ListQuery, MAX_LIST_LIMIT, PageStats, RateLimitEvent, Record,
    ResourceState, RunOutcome, StoredRecord,
};
