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

    /// Saves where `resource` (`scope`) stands without a page: the start of a
    /// fan-out as a whole (scope `""`, its children's scopes being the parents'
    /// ids), which its children's pages do not carry. Replaces the checkpoint
    /// saved there, if any.
    pub async fn save_checkpoint(
        &self,
        resource: &str,
        scope: &str,
        checkpoint: &Checkpoint,
    ) -> Result<(), StorageError> {
        records_table(resource)?;
        let pages = bigint(checkpoint.pages_done, "pages_done")?;
        let records = bigint(checkpoint.records_done, "records_done")?;
        let fail = StorageError::query(self.backend());
        on_pool!(self, pool => {
            sqlx::query(
                "INSERT INTO sync_checkpoints \
                 (resource, scope, cursor, pages_done, records_done, started_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (resource, scope) DO UPDATE SET cursor = excluded.cursor, \
                 pages_done = excluded.pages_done, records_done = excluded.records_done, \
                 started_at_ms = excluded.started_at_ms",
            )
            .bind(resource)
            .bind(scope)
            .bind(&checkpoint.cursor)
            .bind(pages)
            .bind(records)
            .bind(checkpoint.started_at_ms)
            .execute(pool)
            .await
            .map_err(&fail)?;
        });
        Ok(())
    }

    /// Deletes the checkpoint of `resource` (`scope`), if any, and records
    /// nothing else: the end of a fan-out as a whole, whose children each
    /// recorded their own run with [`finish_run`](Self::finish_run).
    pub async fn clear_checkpoint(&self, resource: &str, scope: &str) -> Result<(), StorageError> {
        records_table(resource)?;
        let fail = StorageError::query(self.backend());
        on_pool!(self, pool => {
            sqlx::query("DELETE FROM sync_checkpoints WHERE resource = $1 AND scope = $2")
                .bind(resource)
                .bind(scope)
                .execute(pool)
                .await
                .map_err(&fail)?;
        });
        Ok(())
    }

    /// The scopes of `resource` other than `""` (a fan-out's children) whose
    /// last complete run finished after `after_ms`, in scope order: what an
    /// interrupted fan-out had already done when it resumes.
    pub async fn scopes_finished_after(
        &self,
        resource: &str,
        after_ms: i64,
    ) -> Result<Vec<String>, StorageError> {
        records_table(resource)?;
        let fail = StorageError::query(self.backend());
        on_pool!(self, pool => {
            let scopes: Vec<String> = sqlx::query_scalar(
                "SELECT scope FROM sync_resources WHERE resource = $1 AND scope <> '' \
                 AND last_success_ms > $2 ORDER BY scope",
            )
            .bind(resource)
            .bind(after_ms)
            .fetch_all(pool)
            .await
            .map_err(&fail)?;
            Ok(scopes)
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
