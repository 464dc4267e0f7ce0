//! The requests each source was sent recently: what a restarted sync process
//! needs to know of the budget the previous one used.
//!
//! A provider counts a request somewhere between its send and its answer, and
//! keeps counting it for one window. A process that starts right after another
//! stopped (a crash, a deploy, `kill -9`) and knew nothing of its sends would
//! spend the whole budget again inside that window and meet a `429`; after a
//! `429` it would not even know the retry instant, and a strict provider blocks
//! a key that calls before it. So each request is written when it goes out and
//! again when its answer arrives, and [`Storage::recent_requests`] hands the
//! next process what is still counting.

use crate::rows::Columns;
use crate::storage::Storage;
use crate::{Backend, StorageError};

/// A request sent to a source, as [`Storage::recent_requests`] reads it back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentRequest {
    /// The resource whose own limit it also counted against, if it has one.
    pub endpoint: Option<String>,
    /// When it went out.
    pub sent_at_ms: i64,
    /// When its answer arrived; `None` if its process stopped first.
    pub answered_at_ms: Option<i64>,
}

impl Storage {
    /// Records that request `id` (unique per source; random) went out to
    /// `source` at `sent_at_ms`, counting against `endpoint`'s own limit too if
    /// given.
    pub async fn record_request_sent(
        &self,
        source: &str,
        id: i64,
        endpoint: Option<&str>,
        sent_at_ms: i64,
    ) -> Result<(), StorageError> {
        let fail = StorageError::query(self.backend());
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO sync_requests (source, id, endpoint, sent_at_ms) VALUES ($1, $2, $3, $4)",
            )
            .bind(source)
            .bind(id)
            .bind(endpoint)
            .bind(sent_at_ms)
            .execute(pool)
            .await
            .map_err(&fail)?;
        });
        Ok(())
    }

    /// Records that the answer to request `id` arrived at `answered_at_ms`
    /// (or that it failed then), and forgets the requests of `source` answered
    /// before `forget_before_ms`: past the longest window, they count no more.
    pub async fn record_request_answered(
        &self,
        source: &str,
        id: i64,
        answered_at_ms: i64,
        forget_before_ms: i64,
    ) -> Result<(), StorageError> {
        let fail = StorageError::query(self.backend());
        on_pool!(self, pool => {
            sqlx::query("UPDATE sync_requests SET answered_at_ms = $3 WHERE source = $1 AND id = $2")
                .bind(source)
                .bind(id)
                .bind(answered_at_ms)
                .execute(pool)
                .await
                .map_err(&fail)?;
            sqlx::query("DELETE FROM sync_requests WHERE source = $1 AND answered_at_ms < $2")
                .bind(source)
                .bind(forget_before_ms)
                .execute(pool)
                .await
                .map_err(&fail)?;
        });
        Ok(())
    }

    /// The requests of `source` still in flight when their process stopped,
    /// and those answered at or after `since_ms`, oldest first. The ones in
    /// flight are then marked answered at `now_ms`: their process is gone, and
    /// the provider counted each at the latest by now.
    pub async fn recent_requests(
        &self,
        source: &str,
        since_ms: i64,
        now_ms: i64,
    ) -> Result<Vec<SentRequest>, StorageError> {
        let backend = self.backend();
        let fail = StorageError::query(backend);
        on_pool!(self, pool => {
            let rows = sqlx::query(
                "SELECT endpoint, sent_at_ms, answered_at_ms FROM sync_requests \
                 WHERE source = $1 AND (answered_at_ms IS NULL OR answered_at_ms >= $2) \
                 ORDER BY sent_at_ms, id",
            )
            .bind(source)
            .bind(since_ms)
            .fetch_all(pool)
            .await
            .map_err(&fail)?;
            sqlx::query(
                "UPDATE sync_requests SET answered_at_ms = $2 WHERE source = $1 AND answered_at_ms IS NULL",
            )
            .bind(source)
            .bind(now_ms)
            .execute(pool)
            .await
            .map_err(&fail)?;
            rows.iter().map(|row| sent_request(row, backend)).collect()
        })
    }

    /// The latest retry instant any `429` from `source` named, if any: a
    /// restarted process sends nothing to it before then.
    pub async fn latest_retry_at(&self, source: &str) -> Result<Option<i64>, StorageError> {
        let fail = StorageError::query(self.backend());
        on_pool!(self, pool => {
            let row = sqlx::query("SELECT MAX(retry_at_ms) FROM rate_limit_events WHERE source = $1")
                .bind(source)
                .fetch_one(pool)
                .await
                .map_err(&fail)?;
            row.opt_int(0).map_err(&fail)
        })
    }
}

fn sent_request(row: &impl Columns, backend: Backend) -> Result<SentRequest, StorageError> {
    let get = StorageError::query(backend);
    Ok(SentRequest {
        endpoint: row.opt_text(0).map_err(&get)?,
        sent_at_ms: row.int(1).map_err(&get)?,
        answered_at_ms: row.opt_int(2).map_err(&get)?,
    })
}
