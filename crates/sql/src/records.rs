//! The records tables: creating them, reading and deleting records.

use crate::dialect::RECORD_COLUMNS;
use crate::name::records_table;
use crate::rows;
use crate::storage::Storage;
use crate::{ListQuery, MAX_LIST_LIMIT, StorageError, StoredRecord};

impl Storage {
    /// Creates the records table of `resource` (`records_<resource>`) if it
    /// is missing, and its state row. The name must match `[a-z][a-z0-9_]{0,47}`.
    pub async fn ensure_resource(&self, resource: &str) -> Result<(), StorageError> {
        let table = records_table(resource)?;
        let backend = self.backend();
        let create = backend.create_records_table(&table);
        let fail = StorageError::query(backend);
        on_pool!(self, pool => {
            match sqlx::query(&create).execute(pool).await {
                Ok(_) => {}
                // PostgreSQL: another connection created it at the same time
                // (the table, its row type, or the catalog row of either).
                Err(sqlx::Error::Database(e))
                    if matches!(e.code().as_deref(), Some("23505" | "42P07" | "42710")) => {}
                Err(e) => return Err(fail(e)),
            }
            sqlx::query(
                "INSERT INTO sync_resources (resource, scope) VALUES ($1, '') \
                 ON CONFLICT (resource, scope) DO NOTHING",
            )
            .bind(resource)
            .execute(pool)
            .await
            .map_err(&fail)?;
        });
        Ok(())
    }

    /// The record `id` of `resource`, if stored.
    pub async fn get(
        &self,
        resource: &str,
        id: &str,
    ) -> Result<Option<StoredRecord>, StorageError> {
        let table = records_table(resource)?;
        let backend = self.backend();
        let sql = format!("SELECT {RECORD_COLUMNS} FROM \"{table}\" WHERE id = $1");
        let fail = StorageError::on_resource(backend, resource);
        on_pool!(self, pool => {
            let row = sqlx::query(&sql).bind(id).fetch_optional(pool).await.map_err(&fail)?;
            row.map(|row| rows::stored_record(&row, backend)).transpose()
        })
    }

    /// A page of `resource`'s records in id order (by bytes, on both
    /// backends): the first `limit` after `query.after`, of those whose
    /// top-level `filter` field has the given value.
    pub async fn list(
        &self,
        resource: &str,
        query: &ListQuery,
    ) -> Result<Vec<StoredRecord>, StorageError> {
        let table = records_table(resource)?;
        if !(1..=MAX_LIST_LIMIT).contains(&query.limit) {
            return Err(StorageError::InvalidLimit { limit: query.limit });
        }
        let backend = self.backend();
        let mut conditions = Vec::new();
        let mut binds: Vec<String> = Vec::new();
        if let Some(after) = &query.after {
            binds.push(after.clone());
            conditions.push(format!("id > ${}", binds.len()));
        }
        if let Some((field, value)) = &query.filter {
            check_field(field)?;
            binds.push(backend.filter_path(field));
            binds.push(value.clone());
            conditions.push(backend.filter_matches(binds.len() - 1, binds.len()));
        }
        let mut sql = format!("SELECT {RECORD_COLUMNS} FROM \"{table}\"");
        if !conditions.is_empty() {
            sql = format!("{sql} WHERE {}", conditions.join(" AND "));
        }
        let sql = format!("{sql} ORDER BY id LIMIT {}", query.limit);
        let fail = StorageError::on_resource(backend, resource);
        on_pool!(self, pool => {
            let mut statement = sqlx::query(&sql);
            for bind in &binds {
                statement = statement.bind(bind);
            }
            let rows = statement.fetch_all(pool).await.map_err(&fail)?;
            rows.iter().map(|row| rows::stored_record(row, backend)).collect()
        })
    }

    /// Deletes the record `id` of `resource` (a webhook's delete event);
    /// `false` if it was not stored.
    pub async fn delete(&self, resource: &str, id: &str) -> Result<bool, StorageError> {
        let table = records_table(resource)?;
        let sql = format!("DELETE FROM \"{table}\" WHERE id = $1");
        let fail = StorageError::on_resource(self.backend(), resource);
        on_pool!(self, pool => {
            let done = sqlx::query(&sql).bind(id).execute(pool).await.map_err(&fail)?;
            Ok(done.rows_affected() > 0)
        })
    }

    /// How many records of `resource` are stored.
    pub async fn count(&self, resource: &str) -> Result<u64, StorageError> {
        let table = records_table(resource)?;
        let backend = self.backend();
        let sql = format!("SELECT COUNT(*) FROM \"{table}\"");
        let fail = StorageError::on_resource(backend, resource);
        let count: i64 = on_pool!(self, pool => {
            sqlx::query_scalar(&sql).fetch_one(pool).await.map_err(&fail)?
        });
        u64::try_from(count).map_err(|_| StorageError::Corrupt {
            backend,
            what: format!("a negative count of {table}"),
        })
    }
}

/// A filter field goes into a JSON path (bound, but the path syntax is ours):
/// only names that need no escaping.
fn check_field(field: &str) -> Result<(), StorageError> {
    let ok = (1..=64).contains(&field.len())
        && field
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-');
    if ok {
        Ok(())
    } else {
        Err(StorageError::InvalidFilterField {
            field: field.to_owned(),
        })
    }
}
