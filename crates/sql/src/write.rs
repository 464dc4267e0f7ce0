//! Writing records: pages of an import run with their checkpoint, and
//! webhook events. One transaction per call.

use std::collections::HashMap;
use std::future::Future;

use serde::Serialize;
use serde_json::Value;
use sqlx::{PgConnection, PgPool, SqliteConnection, SqlitePool};

use crate::name::records_table;
use crate::rows::bigint;
use crate::storage::{Engine, Storage};
use crate::{Change, Checkpoint, PageStats, Record, StorageError, watermark};

/// What a page of an import run carries besides its records.
struct Progress<'a> {
    scope: &'a str,
    /// Where the run resumes: cursor, pages done, records done, start.
    next: Option<(&'a str, i64, i64, i64)>,
    /// The latest `updated_at` of the page.
    watermark: Option<&'a str>,
}

/// Saves `$progress` of `$resource` in the open transaction `$tx`.
macro_rules! save_progress {
    ($tx:expr, $backend:expr, $resource:expr, $progress:expr, $fail:expr) => {{
        let Progress {
            scope,
            next,
            watermark,
        } = $progress;
        if let Some(page_max) = watermark {
            let created = sqlx::query(
                "INSERT INTO sync_resources (resource, scope, run_watermark) VALUES ($1, $2, $3) \
                 ON CONFLICT (resource, scope) DO NOTHING",
            )
            .bind($resource)
            .bind(scope)
            .bind(page_max)
            .execute(&mut *$tx)
            .await
            .map_err($fail)?;
            if created.rows_affected() == 0 {
                let select = format!(
                    "SELECT run_watermark FROM sync_resources WHERE resource = $1 AND scope = $2{}",
                    $backend.lock_row()
                );
                let run_max: Option<String> = sqlx::query_scalar(&select)
                    .bind($resource)
                    .bind(scope)
                    .fetch_one(&mut *$tx)
                    .await
                    .map_err($fail)?;
                if watermark::later(run_max.as_deref(), Some(page_max)) != run_max.as_deref() {
                    sqlx::query(
                        "UPDATE sync_resources SET run_watermark = $3 \
                         WHERE resource = $1 AND scope = $2",
                    )
                    .bind($resource)
                    .bind(scope)
                    .bind(page_max)
                    .execute(&mut *$tx)
                    .await
                    .map_err($fail)?;
                }
            }
        }
        if let Some((cursor, pages, records, started)) = next {
            sqlx::query(
                "INSERT INTO sync_checkpoints \
                 (resource, scope, cursor, pages_done, records_done, started_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (resource, scope) DO UPDATE SET cursor = excluded.cursor, \
                 pages_done = excluded.pages_done, records_done = excluded.records_done, \
                 started_at_ms = excluded.started_at_ms",
            )
            .bind($resource)
            .bind(scope)
            .bind(cursor)
            .bind(pages)
            .bind(records)
            .bind(started)
            .execute(&mut *$tx)
            .await
            .map_err($fail)?;
        }
    }};
}

impl Storage {
    /// Stores one page of an import run of `resource` (`scope`: `""`, or the
    /// parent's id for a fan-out) and, in the same transaction, where the run
    /// resumes (`next`; `None` after the last page). A crash between pages
    /// leaves the pages saved so far and the checkpoint after the last of
    /// them; saving a page again stores no duplicate (records are keyed by id).
    ///
    /// Counts each distinct id once; if a page holds an id twice, the later
    /// record is stored. Also keeps the latest `updated_at` of the run, which
    /// [`finish_run`](Self::finish_run) makes the watermark.
    pub async fn save_page(
        &self,
        resource: &str,
        scope: &str,
        records: &[Record],
        next: Option<&Checkpoint>,
    ) -> Result<PageStats, StorageError> {
        let next = match next {
            Some(c) => Some((
                c.cursor.as_str(),
                bigint(c.pages_done, "pages_done")?,
                bigint(c.records_done, "records_done")?,
                c.started_at_ms,
            )),
            None => None,
        };
        let watermark = watermark::latest(records.iter().filter_map(|r| r.updated_at.as_deref()));
        let progress = Progress {
            scope,
            next,
            watermark,
        };
        self.write(resource, records, Some(progress)).await
    }

    /// Stores one record outside any import run (a webhook's upsert event):
    /// the watermark and checkpoints are left alone.
    pub async fn upsert_one(
        &self,
        resource: &str,
        record: &Record,
    ) -> Result<Change, StorageError> {
        let stats = self
            .write(resource, std::slice::from_ref(record), None)
            .await?;
        Ok(if stats.inserted == 1 {
            Change::Inserted
        } else if stats.updated == 1 {
            Change::Updated
        } else {
            Change::Unchanged
        })
    }

    async fn write(
        &self,
        resource: &str,
        records: &[Record],
        progress: Option<Progress<'_>>,
    ) -> Result<PageStats, StorageError> {
        let table = records_table(resource)?;
        let records = last_of_each_id(records);
        let backend = self.backend();
        let fail = StorageError::on_resource(backend, resource);
        on_pool!(self, pool => {
            let mut tx = pool.begin_write().await.map_err(&fail)?;
            let stats = pool.write_page(&mut tx, &table, &records).await.map_err(&fail)?;
            if let Some(progress) = progress {
                save_progress!(tx, backend, resource, progress, &fail);
            }
            tx.commit().await.map_err(&fail)?;
            Ok(stats)
        })
    }
}

/// The records of `records` that no later record of the same id replaces.
fn last_of_each_id(records: &[Record]) -> Vec<&Record> {
    let last: HashMap<&str, usize> = records
        .iter()
        .enumerate()
        .map(|(i, r)| (r.id.as_str(), i))
        .collect();
    let is_last = |i: usize, r: &Record| last.get(r.id.as_str()) == Some(&i);
    records
        .iter()
        .enumerate()
        .filter(|&(i, r)| is_last(i, r))
        .map(|(_, r)| r)
        .collect()
}

/// How each backend stores the records of a page, distinct ids, in an open
/// transaction.
trait PageWriter: Engine {
    fn write_page(
        &self,
        conn: &mut <Self::Db as sqlx::Database>::Connection,
        table: &str,
        records: &[&Record],
    ) -> impl Future<Output = Result<PageStats, sqlx::Error>> + Send;
}

/// SQLite is in-process: a statement costs microseconds, so records go one
/// by one, with statements the connection keeps prepared.
impl PageWriter for SqlitePool {
    async fn write_page(
        &self,
        conn: &mut SqliteConnection,
        table: &str,
        records: &[&Record],
    ) -> Result<PageStats, sqlx::Error> {
        // Bodies are stored as serde_json writes them: compact, keys sorted,
        // so equal bodies are equal text.
        let same_body = format!("SELECT body = $2 FROM \"{table}\" WHERE id = $1");
        let upsert = format!(
            "INSERT INTO \"{table}\" \
             (id, body, etag, last_modified, updated_at, fetched_at_ms, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $6) \
             ON CONFLICT (id) DO UPDATE SET body = excluded.body, etag = excluded.etag, \
             last_modified = excluded.last_modified, updated_at = excluded.updated_at, \
             fetched_at_ms = excluded.fetched_at_ms"
        );
        let touch = format!(
            "UPDATE \"{table}\" SET fetched_at_ms = $2, etag = $3, last_modified = $4 WHERE id = $1"
        );
        let mut stats = PageStats::default();
        for record in records {
            let body = record.body.to_string();
            let same: Option<bool> = sqlx::query_scalar(&same_body)
                .bind(&record.id)
                .bind(&body)
                .fetch_optional(&mut *conn)
                .await?;
            let change = match same {
                None => Change::Inserted,
                Some(false) => Change::Updated,
                Some(true) => Change::Unchanged,
            };
            let statement = if change == Change::Unchanged {
                sqlx::query(&touch)
                    .bind(&record.id)
                    .bind(record.fetched_at_ms)
                    .bind(&record.etag)
                    .bind(&record.last_modified)
            } else {
                sqlx::query(&upsert)
                    .bind(&record.id)
                    .bind(body)
                    .bind(&record.etag)
                    .bind(&record.last_modified)
                    .bind(&record.updated_at)
                    .bind(record.fetched_at_ms)
            };
            statement.execute(&mut *conn).await?;
            stats.count(change);
        }
        Ok(stats)
    }
}

/// A record as one element of the JSON array PostgreSQL unpacks.
#[derive(Serialize)]
struct PgRecord<'a> {
    id: &'a str,
    body: &'a Value,
    etag: Option<&'a str>,
    last_modified: Option<&'a str>,
    updated_at: Option<&'a str>,
    fetched_at_ms: i64,
}

/// PostgreSQL is a round trip away: the whole page goes in one statement, as
/// one JSON array, and is compared, upserted and counted in the same
/// snapshot (`before` cannot see what `upsert` writes).
impl PageWriter for PgPool {
    async fn write_page(
        &self,
        conn: &mut PgConnection,
        table: &str,
        records: &[&Record],
    ) -> Result<PageStats, sqlx::Error> {
        let page: Vec<PgRecord<'_>> = records
            .iter()
            .map(|r| PgRecord {
                id: &r.id,
                body: &r.body,
                etag: r.etag.as_deref(),
                last_modified: r.last_modified.as_deref(),
                updated_at: r.updated_at.as_deref(),
                fetched_at_ms: r.fetched_at_ms,
            })
            .collect();
        let page = serde_json::to_string(&page).map_err(|e| sqlx::Error::Encode(e.into()))?;
        let sql = format!(
            "WITH page AS (\
                SELECT * FROM json_to_recordset(CAST($1 AS JSON)) AS p(id TEXT, body JSONB, \
                etag TEXT, last_modified TEXT, updated_at TEXT, fetched_at_ms BIGINT)\
             ), before AS (\
                SELECT t.body = page.body AS same FROM \"{table}\" t JOIN page ON t.id = page.id\
             ), upsert AS (\
                INSERT INTO \"{table}\" AS t \
                (id, body, etag, last_modified, updated_at, fetched_at_ms, created_at_ms) \
                SELECT id, body, etag, last_modified, updated_at, fetched_at_ms, fetched_at_ms \
                FROM page \
                ON CONFLICT (id) DO UPDATE SET body = excluded.body, etag = excluded.etag, \
                last_modified = excluded.last_modified, \
                updated_at = CASE WHEN t.body = excluded.body THEN t.updated_at \
                ELSE excluded.updated_at END, \
                fetched_at_ms = excluded.fetched_at_ms\
             ) \
             SELECT (SELECT COUNT(*) FROM page) - COUNT(*), \
             COUNT(*) FILTER (WHERE NOT same), COUNT(*) FILTER (WHERE same) FROM before"
        );
        let (inserted, updated, unchanged): (i64, i64, i64) =
            sqlx::query_as(&sql).bind(page).fetch_one(conn).await?;
        Ok(PageStats {
            inserted: inserted.unsigned_abs(),
            updated: updated.unsigned_abs(),
            unchanged: unchanged.unsigned_abs(),
        })
    }
}
