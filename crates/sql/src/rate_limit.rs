//! The `429` log: every `429` the sync daemon received and whether the next
//! call to that source waited until it was allowed — the evidence `tollgate
//! report` prints for a limit-increase request.

use crate::rows::{self, EVENT_COLUMNS};
use crate::storage::Storage;
use crate::{RateLimitEvent, StorageError};

impl Storage {
    /// Records a `429` from `source` at `at_ms` that allowed the next request
    /// at `retry_at_ms` (from `Retry-After`, or the default wait).
    pub async fn record_429(
        &self,
        source: &str,
        at_ms: i64,
        retry_at_ms: i64,
    ) -> Result<(), StorageError> {
        let fail = StorageError::query(self.backend());
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO rate_limit_events (source, at_ms, retry_at_ms) VALUES ($1, $2, $3)",
            )
            .bind(source)
            .bind(at_ms)
            .bind(retry_at_ms)
            .execute(pool)
            .await
            .map_err(&fail)?;
        });
        Ok(())
    }

    /// Records that `source` was called at `at_ms`: each of its `429`s
    /// received by then and still waiting for a next call gets this one,
    /// honoured if it came at or after its `retry_at_ms`. Returns how many.
    pub async fn record_next_call(&self, source: &str, at_ms: i64) -> Result<u64, StorageError> {
        let fail = StorageError::query(self.backend());
        on_pool!(self, pool => {
            let done = sqlx::query(
                "UPDATE rate_limit_events SET next_call_ms = $2, honoured = ($2 >= retry_at_ms) \
                 WHERE source = $1 AND next_call_ms IS NULL AND at_ms <= $2",
            )
            .bind(source)
            .bind(at_ms)
            .execute(pool)
            .await
            .map_err(&fail)?;
            Ok(done.rows_affected())
        })
    }

    /// Every `429` of `source`, oldest first.
    pub async fn rate_limit_log(&self, source: &str) -> Result<Vec<RateLimitEvent>, StorageError> {
        let backend = self.backend();
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM rate_limit_events WHERE source = $1 ORDER BY at_ms, id"
        );
        let fail = StorageError::query(backend);
        on_pool!(self, pool => {
            let rows = sqlx::query(&sql).bind(source).fetch_all(pool).await.map_err(&fail)?;
            rows.iter().map(|row| rows::rate_limit_event(row, backend)).collect()
        })
    }
}
