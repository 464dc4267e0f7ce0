//! The outbox: requests meant for a provider (tenancy applications,
//! appointments) that the sync daemon accepted and delivers inside the
//! source's budget.
//!
//! A submission is stored before the daemon answers `202 Accepted`, so a crash
//! loses none. Its `state` moves `queued` → `in_flight` (claimed by one
//! delivery worker in one statement, so two workers never take the same one)
//! → `delivered` or `failed`, or back to `queued` for another attempt later;
//! a queued one can be `cancelled`. One left `in_flight` by a crash is queued
//! again by [`Storage::requeue_in_flight`] and sent with the same idempotency
//! key, unique per source: a provider that honours the key answers the second
//! send with the first one's result instead of acting twice.

use std::fmt;
use std::str::FromStr;

use sqlx::Row as _;

use crate::rows::Columns;
use crate::storage::Storage;
use crate::{Backend, StorageError};

/// How soon a submission should go out: urgent ones before normal ones, both
/// before the imports; bulk ones go with the imports, first come first served.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// The next slot of the budget, before every normal submission.
    Urgent,
    /// The next slot no urgent submission wants.
    #[default]
    Normal,
    /// Along with the imports.
    Bulk,
}

impl Priority {
    /// Every priority, most urgent first.
    pub const ALL: [Priority; 3] = [Priority::Urgent, Priority::Normal, Priority::Bulk];

    /// Its name: `urgent`, `normal`, `bulk`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Urgent => "urgent",
            Self::Normal => "normal",
            Self::Bulk => "bulk",
        }
    }

    fn rank(self) -> i64 {
        self as i64
    }

    fn from_rank(rank: i64) -> Option<Self> {
        Self::ALL.get(usize::try_from(rank).ok()?).copied()
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Priority {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str().eq_ignore_ascii_case(text.trim()))
            .ok_or_else(|| {
                format!("`{text}` is not a priority: write `urgent`, `normal` or `bulk`")
            })
    }
}

/// Where a submission stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SubmissionState {
    /// Waiting for its turn (or for its next attempt).
    Queued,
    /// Being sent: claimed by a delivery worker.
    InFlight,
    /// The provider accepted it (`2xx`); its answer is kept.
    Delivered,
    /// The provider refused it (a `4xx` other than `429`) or it was given up.
    Failed,
    /// Cancelled before it was sent.
    Cancelled,
}

impl SubmissionState {
    /// Every state, in the order a submission goes through them.
    pub const ALL: [SubmissionState; 5] = [
        Self::Queued,
        Self::InFlight,
        Self::Delivered,
        Self::Failed,
        Self::Cancelled,
    ];

    /// Its name in the database and the API: `queued`, `in_flight`, …
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::InFlight => "in_flight",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// True once nothing more will happen to it (unless retried by hand).
    pub fn is_final(self) -> bool {
        matches!(self, Self::Delivered | Self::Failed | Self::Cancelled)
    }
}

impl fmt::Display for SubmissionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SubmissionState {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim().replace([' ', '-'], "_");
        Self::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(&text))
            .ok_or_else(|| {
                format!(
                    "`{text}` is not a state: write `queued`, `in_flight`, `delivered`, `failed` or `cancelled`"
                )
            })
    }
}

/// A request to store in the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewSubmission {
    /// The source it is meant for.
    pub source: String,
    /// Unique per source: a second submission with the same key is the first.
    pub idempotency_key: String,
    /// The HTTP method (`POST`).
    pub method: String,
    /// Path and query, appended to the source's base URL.
    pub path: String,
    /// Its `Content-Type`, if it has one.
    pub content_type: Option<String>,
    /// Its body, as received.
    pub body: Vec<u8>,
    /// How soon it should go out.
    pub priority: Priority,
    /// When it was accepted.
    pub at_ms: i64,
}

/// What the provider answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderAnswer {
    /// Its status.
    pub status: u16,
    /// Its `Content-Type`.
    pub content_type: Option<String>,
    /// Its body.
    pub body: Vec<u8>,
}

/// A stored submission.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submission {
    /// Its id (increasing in the order accepted).
    pub id: i64,
    /// The source it is meant for.
    pub source: String,
    /// Sent along when the source's provider honours it.
    pub idempotency_key: String,
    /// The HTTP method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Its `Content-Type`.
    pub content_type: Option<String>,
    /// Its body.
    pub body: Vec<u8>,
    /// How soon it should go out.
    pub priority: Priority,
    /// Where it stands.
    pub state: SubmissionState,
    /// How many times it was sent (or claimed to be sent).
    pub attempts: u32,
    /// When it may go (again), while queued.
    pub next_attempt_ms: i64,
    /// When it was accepted.
    pub created_at_ms: i64,
    /// When its state last changed.
    pub updated_at_ms: i64,
    /// The provider's answer, once there is a final one.
    pub answer: Option<ProviderAnswer>,
    /// Why the last attempt failed, if it did.
    pub error: Option<String>,
}

/// What [`Storage::submit`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Submitted {
    /// The submission as stored: the new one, or the one stored before with
    /// the same idempotency key.
    pub submission: Submission,
    /// False when the key was seen before and nothing new was stored.
    pub created: bool,
}

/// How one attempt to deliver a submission ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// `2xx`: delivered.
    Delivered(ProviderAnswer),
    /// Final: the provider refused it, or it was given up.
    Failed {
        /// Why.
        error: String,
        /// The refusal, if the provider answered.
        answer: Option<ProviderAnswer>,
    },
    /// Queued again, to go no earlier than `at_ms`.
    Retry {
        /// Why.
        error: String,
        /// The earliest next attempt.
        at_ms: i64,
    },
}

/// Which submissions [`Storage::submissions`] lists.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SubmissionFilter {
    /// Only this source's.
    pub source: Option<String>,
    /// Only those in this state.
    pub state: Option<SubmissionState>,
    /// Only those with an id below this (the next page, newest first).
    pub before_id: Option<i64>,
    /// At most this many (newest first).
    pub limit: u32,
}

const COLUMNS: &str = "id, source, idempotency_key, method, path, content_type, body, priority, \
    state, attempts, next_attempt_ms, created_at_ms, updated_at_ms, response_status, \
    response_content_type, response_body, error";

impl Storage {
    /// Stores `new` as queued, unless a submission with its idempotency key is
    /// stored for its source already: then that one is returned, unchanged.
    /// Committed when it returns.
    pub async fn submit(&self, new: &NewSubmission) -> Result<Submitted, StorageError> {
        let fail = StorageError::query(self.backend());
        let inserted = on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO outbox (source, idempotency_key, method, path, content_type, body, \
                 priority, state, next_attempt_ms, created_at_ms, updated_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 'queued', $8, $8, $8) \
                 ON CONFLICT (source, idempotency_key) DO NOTHING",
            )
            .bind(&new.source)
            .bind(&new.idempotency_key)
            .bind(&new.method)
            .bind(&new.path)
            .bind(&new.content_type)
            .bind(&new.body)
            .bind(new.priority.rank())
            .bind(new.at_ms)
            .execute(pool)
            .await
            .map_err(&fail)?
            .rows_affected()
        });
        let submission = self
            .submission_by_key(&new.source, &new.idempotency_key)
            .await?
            .ok_or_else(|| StorageError::Corrupt {
                backend: self.backend(),
                what: format!(
                    "submission `{}` of `{}` vanished as it was stored",
                    new.idempotency_key, new.source
                ),
            })?;
        Ok(Submitted {
            submission,
            created: inserted == 1,
        })
    }

    /// The submission of `source` with `idempotency_key`, if any.
    pub async fn submission_by_key(
        &self,
        source: &str,
        idempotency_key: &str,
    ) -> Result<Option<Submission>, StorageError> {
        let backend = self.backend();
        let fail = StorageError::query(backend);
        let sql =
            format!("SELECT {COLUMNS} FROM outbox WHERE source = $1 AND idempotency_key = $2");
        on_pool!(self, pool => {
            let row = sqlx::query(&sql)
                .bind(source)
                .bind(idempotency_key)
                .fetch_optional(pool)
                .await
                .map_err(&fail)?;
            row.map(|row| submission(&row, backend)).transpose()
        })
    }

    /// Submission `id`, if it exists.
    pub async fn submission(&self, id: i64) -> Result<Option<Submission>, StorageError> {
        let backend = self.backend();
        let fail = StorageError::query(backend);
        let sql = format!("SELECT {COLUMNS} FROM outbox WHERE id = $1");
        on_pool!(self, pool => {
            let row = sqlx::query(&sql).bind(id).fetch_optional(pool).await.map_err(&fail)?;
            row.map(|row| submission(&row, backend)).transpose()
        })
    }

    /// Submissions matching `filter`, newest first.
    pub async fn submissions(
        &self,
        filter: &SubmissionFilter,
    ) -> Result<Vec<Submission>, StorageError> {
        let backend = self.backend();
        let fail = StorageError::query(backend);
        let sql = format!(
            "SELECT {COLUMNS} FROM outbox WHERE ($1 IS NULL OR source = $1) \
             AND ($2 IS NULL OR state = $2) AND ($3 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4"
        );
        let state = filter.state.map(SubmissionState::as_str);
        on_pool!(self, pool => {
            let rows = sqlx::query(&sql)
                .bind(filter.source.as_deref())
                .bind(state)
                .bind(filter.before_id)
                .bind(i64::from(filter.limit))
                .fetch_all(pool)
                .await
                .map_err(&fail)?;
            rows.iter().map(|row| submission(row, backend)).collect()
        })
    }

    /// How many submissions of `source` are in each state (states with none
    /// left out).
    pub async fn outbox_counts(
        &self,
        source: &str,
    ) -> Result<Vec<(SubmissionState, u64)>, StorageError> {
        let backend = self.backend();
        let fail = StorageError::query(backend);
        on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT state, COUNT(*) FROM outbox WHERE source = $1 GROUP BY state",
            )
            .bind(source)
            .fetch_all(pool)
            .await
            .map_err(&fail)?;
            let mut counts = Vec::new();
            for row in &rows {
                let state = state_of(&row.text(0).map_err(&fail)?, backend)?;
                let count = u64::try_from(row.int(1).map_err(&fail)?).unwrap_or(0);
                counts.push((state, count));
            }
            counts.sort_by_key(|(s, _)| SubmissionState::ALL.iter().position(|a| a == s));
            Ok(counts)
        })
    }

    /// Claims the next submission of `source` due by `now_ms` — the most
    /// urgent, then the oldest — marking it in flight and counting the attempt,
    /// in one statement: of two workers asking at once, one gets it.
    pub async fn claim_submission(
        &self,
        source: &str,
        now_ms: i64,
    ) -> Result<Option<Submission>, StorageError> {
        let backend = self.backend();
        let fail = StorageError::query(backend);
        // PostgreSQL: a concurrent claimer skips the row locked by the other
        // instead of waiting for it and then finding it taken. SQLite takes
        // the database's write lock for the statement.
        let skip_locked = match backend {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        };
        let sql = format!(
            "UPDATE outbox SET state = 'in_flight', attempts = attempts + 1, updated_at_ms = $2 \
             WHERE state = 'queued' AND id = (SELECT id FROM outbox WHERE source = $1 \
             AND state = 'queued' AND next_attempt_ms <= $2 ORDER BY priority, id LIMIT 1{skip_locked}) \
             RETURNING {COLUMNS}"
        );
        on_pool!(self, pool => {
            let row = sqlx::query(&sql)
                .bind(source)
                .bind(now_ms)
                .fetch_optional(pool)
                .await
                .map_err(&fail)?;
            row.map(|row| submission(&row, backend)).transpose()
        })
    }

    /// When the next queued submission of `source` is due, if one is queued.
    pub async fn next_submission_at(&self, source: &str) -> Result<Option<i64>, StorageError> {
        let fail = StorageError::query(self.backend());
        on_pool!(self, pool => {
            let row = sqlx::query(
                "SELECT MIN(next_attempt_ms) FROM outbox WHERE source = $1 AND state = 'queued'",
            )
            .bind(source)
            .fetch_one(pool)
            .await
            .map_err(&fail)?;
            row.opt_int(0).map_err(&fail)
        })
    }

    /// Records how the attempt on in-flight submission `id` ended; false if
    /// it was not in flight (nothing changed).
    pub async fn record_attempt(
        &self,
        id: i64,
        attempt: &Attempt,
        now_ms: i64,
    ) -> Result<bool, StorageError> {
        let fail = StorageError::query(self.backend());
        let (state, next_at, error, answer) = match attempt {
            Attempt::Delivered(answer) => ("delivered", None, None, Some(answer)),
            Attempt::Failed { error, answer } => ("failed", None, Some(error), answer.as_ref()),
            Attempt::Retry { error, at_ms } => ("queued", Some(*at_ms), Some(error), None),
        };
        on_pool!(self, pool => {
            let done = sqlx::query(
                "UPDATE outbox SET state = $2, next_attempt_ms = COALESCE($3, next_attempt_ms), \
                 error = $4, response_status = $5, response_content_type = $6, response_body = $7, \
                 updated_at_ms = $8 WHERE id = $1 AND state = 'in_flight'",
            )
            .bind(id)
            .bind(state)
            .bind(next_at)
            .bind(error)
            .bind(answer.map(|a| i64::from(a.status)))
            .bind(answer.and_then(|a| a.content_type.as_deref()))
            .bind(answer.map(|a| a.body.as_slice()))
            .bind(now_ms)
            .execute(pool)
            .await
            .map_err(&fail)?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Queues again, due at once, every submission of `source` left in
    /// flight: its process stopped while sending it, so whether the provider
    /// got it is unknown, and it goes again with the same idempotency key.
    /// Returns how many.
    pub async fn requeue_in_flight(&self, source: &str, now_ms: i64) -> Result<u64, StorageError> {
        let fail = StorageError::query(self.backend());
        on_pool!(self, pool => {
            let done = sqlx::query(
                "UPDATE outbox SET state = 'queued', next_attempt_ms = $2, updated_at_ms = $2, \
                 error = 'its process stopped while sending it: sent again with the same idempotency key' \
                 WHERE source = $1 AND state = 'in_flight'",
            )
            .bind(source)
            .bind(now_ms)
            .execute(pool)
            .await
            .map_err(&fail)?;
            Ok(done.rows_affected())
        })
    }

    /// Queues submission `id` again, due at once, if it failed, was
    /// cancelled or waits for a later attempt; false otherwise (delivered, in
    /// flight, or no such id).
    pub async fn retry_submission(&self, id: i64, now_ms: i64) -> Result<bool, StorageError> {
        let fail = StorageError::query(self.backend());
        on_pool!(self, pool => {
            let done = sqlx::query(
                "UPDATE outbox SET state = 'queued', next_attempt_ms = $2, updated_at_ms = $2 \
                 WHERE id = $1 AND state IN ('queued', 'failed', 'cancelled')",
            )
            .bind(id)
            .bind(now_ms)
            .execute(pool)
            .await
            .map_err(&fail)?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Cancels submission `id` if it is queued; false otherwise (it is being
    /// sent or was already, or there is no such id).
    pub async fn cancel_submission(&self, id: i64, now_ms: i64) -> Result<bool, StorageError> {
        let fail = StorageError::query(self.backend());
        on_pool!(self, pool => {
            let done = sqlx::query(
                "UPDATE outbox SET state = 'cancelled', updated_at_ms = $2 \
                 WHERE id = $1 AND state = 'queued'",
            )
            .bind(id)
            .bind(now_ms)
            .execute(pool)
            .await
            .map_err(&fail)?;
            Ok(done.rows_affected() == 1)
        })
    }
}

/// The byte columns, which [`Columns`] does not read.
trait Bytes {
    fn bytes(&self, i: usize) -> Result<Option<Vec<u8>>, sqlx::Error>;
}

impl Bytes for sqlx::sqlite::SqliteRow {
    fn bytes(&self, i: usize) -> Result<Option<Vec<u8>>, sqlx::Error> {
        self.try_get(i)
    }
}

impl Bytes for sqlx::postgres::PgRow {
    fn bytes(&self, i: usize) -> Result<Option<Vec<u8>>, sqlx::Error> {
        self.try_get(i)
    }
}

fn state_of(text: &str, backend: Backend) -> Result<SubmissionState, StorageError> {
    text.parse().map_err(|_| StorageError::Corrupt {
        backend,
        what: format!("an outbox state `{text}`"),
    })
}

fn submission(row: &(impl Columns + Bytes), backend: Backend) -> Result<Submission, StorageError> {
    let get = StorageError::query(backend);
    let corrupt = |what: String| StorageError::Corrupt { backend, what };
    let priority = row.int(7).map_err(&get)?;
    let answer = match row.opt_int(13).map_err(&get)? {
        Some(status) => Some(ProviderAnswer {
            status: u16::try_from(status)
                .map_err(|_| corrupt(format!("a response status {status}")))?,
            content_type: row.opt_text(14).map_err(&get)?,
            body: row.bytes(15).map_err(&get)?.unwrap_or_default(),
        }),
        None => None,
    };
    Ok(Submission {
        id: row.int(0).map_err(&get)?,
        source: row.text(1).map_err(&get)?,
        idempotency_key: row.text(2).map_err(&get)?,
        method: row.text(3).map_err(&get)?,
        path: row.text(4).map_err(&get)?,
        content_type: row.opt_text(5).map_err(&get)?,
        body: row.bytes(6).map_err(&get)?.unwrap_or_default(),
        priority: Priority::from_rank(priority)
            .ok_or_else(|| corrupt(format!("an outbox priority {priority}")))?,
        state: state_of(&row.text(8).map_err(&get)?, backend)?,
        attempts: u32::try_from(row.int(9).map_err(&get)?).unwrap_or(0),
        next_attempt_ms: row.int(10).map_err(&get)?,
        created_at_ms: row.int(11).map_err(&get)?,
        updated_at_ms: row.int(12).map_err(&get)?,
        answer,
        error: row.opt_text(16).map_err(&get)?,
    })
}
