//! Rows of either backend as the crate's values: [`Columns`] is the handful
//! of typed reads the decoders need, implemented for both row types.

use sqlx::Row as _;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;

use crate::{Backend, Checkpoint, RateLimitEvent, ResourceState, StorageError, StoredRecord};

/// Typed reads of a row by column position.
pub(crate) trait Columns {
    fn text(&self, i: usize) -> Result<String, sqlx::Error>;
    fn opt_text(&self, i: usize) -> Result<Option<String>, sqlx::Error>;
    fn int(&self, i: usize) -> Result<i64, sqlx::Error>;
    fn opt_int(&self, i: usize) -> Result<Option<i64>, sqlx::Error>;
    fn opt_bool(&self, i: usize) -> Result<Option<bool>, sqlx::Error>;
}

macro_rules! columns {
    ($row:ty) => {
        impl Columns for $row {
            fn text(&self, i: usize) -> Result<String, sqlx::Error> {
                self.try_get(i)
            }
            fn opt_text(&self, i: usize) -> Result<Option<String>, sqlx::Error> {
                self.try_get(i)
            }
            fn int(&self, i: usize) -> Result<i64, sqlx::Error> {
                self.try_get(i)
            }
            fn opt_int(&self, i: usize) -> Result<Option<i64>, sqlx::Error> {
                self.try_get(i)
            }
            fn opt_bool(&self, i: usize) -> Result<Option<bool>, sqlx::Error> {
                self.try_get(i)
            }
        }
    };
}

columns!(SqliteRow);
columns!(PgRow);

/// A row of [`RECORD_COLUMNS`](crate::dialect::RECORD_COLUMNS).
pub(crate) fn stored_record(
    row: &impl Columns,
    backend: Backend,
) -> Result<StoredRecord, StorageError> {
    let get = StorageError::query(backend);
    let id = row.text(0).map_err(&get)?;
    let body = row.text(1).map_err(&get)?;
    let body = serde_json::from_str(&body).map_err(|e| StorageError::Corrupt {
        backend,
        what: format!("a body that is not JSON ({e}) in record `{id}`"),
    })?;
    Ok(StoredRecord {
        body,
        etag: row.opt_text(2).map_err(&get)?,
        last_modified: row.opt_text(3).map_err(&get)?,
        updated_at: row.opt_text(4).map_err(&get)?,
        fetched_at_ms: row.int(5).map_err(&get)?,
        created_at_ms: row.int(6).map_err(&get)?,
        id,
    })
}

/// The columns [`checkpoint`] reads.
pub(crate) const CHECKPOINT_COLUMNS: &str = "cursor, pages_done, records_done, started_at_ms";

pub(crate) fn checkpoint(row: &impl Columns, backend: Backend) -> Result<Checkpoint, StorageError> {
    let get = StorageError::query(backend);
    Ok(Checkpoint {
        cursor: row.text(0).map_err(&get)?,
        pages_done: count(row.int(1).map_err(&get)?, "pages_done", backend)?,
        records_done: count(row.int(2).map_err(&get)?, "records_done", backend)?,
        started_at_ms: row.int(3).map_err(&get)?,
    })
}

/// The columns [`resource_state`] reads.
pub(crate) const STATE_COLUMNS: &str = "resource, scope, last_success_ms, last_duration_ms, \
    last_pages, last_records, last_error, last_error_ms, watermark, list_etag, list_last_modified";

pub(crate) fn resource_state(
    row: &impl Columns,
    backend: Backend,
) -> Result<ResourceState, StorageError> {
    let get = StorageError::query(backend);
    let opt_count = |i: usize, what: &'static str| -> Result<Option<u64>, StorageError> {
        row.opt_int(i)
            .map_err(&get)?
            .map(|v| count(v, what, backend))
            .transpose()
    };
    Ok(ResourceState {
        resource: row.text(0).map_err(&get)?,
        scope: row.text(1).map_err(&get)?,
        last_success_ms: row.opt_int(2).map_err(&get)?,
        last_duration_ms: opt_count(3, "last_duration_ms")?,
        last_pages: opt_count(4, "last_pages")?,
        last_records: opt_count(5, "last_records")?,
        last_error: row.opt_text(6).map_err(&get)?,
        last_error_ms: row.opt_int(7).map_err(&get)?,
        watermark: row.opt_text(8).map_err(&get)?,
        list_etag: row.opt_text(9).map_err(&get)?,
        list_last_modified: row.opt_text(10).map_err(&get)?,
    })
}

/// The columns [`rate_limit_event`] reads.
pub(crate) const EVENT_COLUMNS: &str = "source, at_ms, retry_at_ms, next_call_ms, honoured";

pub(crate) fn rate_limit_event(
    row: &impl Columns,
    backend: Backend,
) -> Result<RateLimitEvent, StorageError> {
    let get = StorageError::query(backend);
    Ok(RateLimitEvent {
        source: row.text(0).map_err(&get)?,
        at_ms: row.int(1).map_err(&get)?,
        retry_at_ms: row.int(2).map_err(&get)?,
        next_call_ms: row.opt_int(3).map_err(&get)?,
        honoured: row.opt_bool(4).map_err(&get)?,
    })
}

fn count(value: i64, what: &str, backend: Backend) -> Result<u64, StorageError> {
    u64::try_from(value).map_err(|_| StorageError::Corrupt {
        backend,
        what: format!("{what} = {value}, a negative count"),
    })
}

/// A count as a `BIGINT`.
pub(crate) fn bigint(value: u64, what: &'static str) -> Result<i64, StorageError> {
    i64::try_from(value).map_err(|_| StorageError::OutOfRange { what, value })
}
