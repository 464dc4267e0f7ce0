//! Checkpoints and the state of each resource: resuming, finishing, reporting.

use crate::name::records_table;
use crate::rows::{self, CHECKPOINT_COLUMNS, STATE_COLUMNS, bigint};
use crate::storage::{Engine as _, Storage};
use crate::{Checkpoint, ResourceState, RunOutcome, StorageError, watermark};

impl Storage {
    /// Where the unfinished run of `resource` (`scope`: `""`, or the parent's
    /// id for a fan-out) resumes, if one was interrupted.
    pub async fn checkpoint(
        &self,
        resource: &str,
        scope: &str,
    ) -> Result<Option<Checkpoint>, StorageError> {
        records_table(resource)?;
        let backend = self.backend();
        let sql = format!(
            "SELECT {CHECKPOINT_COLUMNS} FROM sync_checkpoints WHERE resource = $1 AND scope = $2"
        );
        let fail = StorageError::query(backend);
        on_pool!(self, pool => {
            let row = sqlx::query(&sql)
                .bind(resource)
                .bind(scope)
                .fetch_optional(pool)
                .await
                .map_err(&fail)?;
            row.map(|row| rows::checkpoint(&row, backend)).transpose()
        })
    }

    /// Records a complete run of `resource` (`scope`), in one transaction:
    /// deletes its checkpoint, records when it finished, how long it took, its
    /// pages and records and the list's validators, and moves the watermark
    /// to the latest `updated_at` the run saved (never backwards).
    pub async fn finish_run(
        &self,
        resource: &str,
        scope: &str,
        outcome: &RunOutcome,
    ) -> Result<(), StorageError> {
        records_table(resource)?;
        let duration = bigint(outcome.duration_ms, "duration_ms")?;
        let pages = bigint(outcome.pages, "pages")?;
        let records = bigint(outcome.records, "records")?;
        let backend = self.backend();
        let select = format!(
            "SELECT watermark, run_watermark FROM sync_resources \
             WHERE resource = $1 AND scope = $2{}",
            backend.lock_row()
        );
        let fail = StorageError::query(backend);
        on_pool!(self, pool => {
            let mut tx = pool.begin_write().await.map_err(&fail)?;
            sqlx::query("DELETE FROM sync_checkpoints WHERE resource = $1 AND scope = $2")
                .bind(resource)
                .bind(scope)
                .execute(&mut *tx)
                .await
                .map_err(&fail)?;
            sqlx::query(
                "INSERT INTO sync_resources (resource, scope) VALUES ($1, $2) \
                 ON CONFLICT (resource, scope) DO NOTHING",
            )
            .bind(resource)
            .bind(scope)
            .execute(&mut *tx)
            .await
            .map_err(&fail)?;
            let (old, run): (Option<String>, Option<String>) = sqlx::query_as(&select)
                .bind(resource)
                .bind(scope)
                .fetch_one(&mut *tx)
                .await
                .map_err(&fail)?;
            let watermark = watermark::later(old.as_deref(), run.as_deref());
            sqlx::query(
                "UPDATE sync_resources SET last_success_ms = $3, last_duration_ms = $4, \
                 last_pages = $5, last_records = $6, list_etag = $7, list_last_modified = $8, \
                 watermark = $9, run_watermark = NULL WHERE resource = $1 AND scope = $2",
            )
            .bind(resource)
            .bind(scope)
            .bind(outcome.finished_at_ms)
            .bind(duration)
            .bind(pages)
            .bind(records)
            .bind(&outcome.list_etag)
            .bind(&outcome.list_last_modified)
            .bind(watermark)
            .execute(&mut *tx)
            .await
            .map_err(&fail)?;
            tx.commit().await.map_err(&fail)?;
        });
        Ok(())
    }

    /// Records that a run of `resource` (`scope`) failed, and when. The
    /// checkpoint stays: the next run resumes from it.
    pub async fn record_error(
        &self,
        resource: &str,
        scope: &str,
        error: &str,
        at_ms: i64,
    ) -> Result<(), StorageError> {
        records_table(resource)?;
        let fail = StorageError::query(self.backend());
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO sync_resources (resource, scope, last_error, last_error_ms) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (resource, scope) DO UPDATE \
                 SET last_error = excluded.last_error, last_error_ms = excluded.last_error_ms",
            )
            .bind(resource)
            .bind(scope)
            .bind(error)
            .bind(at_ms)
            .execute(pool)
            .await
            .map_err(&fail)?;
        });
        Ok(())
    }

    /// The state of `resource` (`scope`: `""`, or a parent's id), if it was
    /// ever ensured, run or failed.
    pub async fn resource_state(
        &self,
        resource: &str,
        scope: &str,
    ) -> Result<Option<ResourceState>, StorageError> {
        records_table(resource)?;
        let backend = self.backend();
        let sql = format!(
            "SELECT {STATE_COLUMNS} FROM sync_resources WHERE resource = $1 AND scope = $2"
        );
        let fail = StorageError::query(backend);
        on_pool!(self, pool => {
            let row = sqlx::query(&sql)
                .bind(resource)
                .bind(scope)
                .fetch_optional(pool)
                .await
                .map_err(&fail)?;
            row.map(|row| rows::resource_state(&row, backend)).transpose()
        })
    }

    /// The state of every resource and scope, ordered by resource then scope:
    /// what the report prints.
    pub async fn resource_states(&self) -> Result<Vec<ResourceState>, StorageError> {
        let backend = self.backend();
        let sql = format!("SELECT {STATE_COLUMNS} FROM sync_resources ORDER BY resource, scope");
        let fail = StorageError::query(backend);
        on_pool!(self, pool => {
            let rows = sqlx::query(&sql).fetch_all(pool).await.map_err(&fail)?;
            rows.iter().map(|row| rows::resource_state(row, backend)).collect()
        })
    }
}
