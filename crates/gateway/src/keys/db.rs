//! The SQLite side of the registry: connecting, migrating and the queries.
//!
//! Queries are checked at run time (`sqlx::query` with binds), so building the
//! crate needs no `DATABASE_URL`; the schema is in `crates/gateway/migrations/`.

use std::path::Path;
use std::str::FromStr as _;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
};
use sqlx::{Row as _, SqliteConnection};

use super::{KeyError, KeyInfo, TierChange};

/// The schema, embedded at build time (the path is relative to the crate's Cargo.toml).
static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Connections of a file-backed pool: writes are rare (admin calls), reads
/// happen only when the snapshot is rebuilt, so a few are plenty.
const MAX_CONNECTIONS: u32 = 4;

/// How long a statement waits for another connection's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

const KEY_COLUMNS: &str = "id, name, last5, increments, created_at, revoked_at IS NOT NULL";

/// A pool on the database file at `path`, created (with its folder) if missing.
pub(super) async fn connect_file(path: &Path) -> Result<SqlitePool, KeyError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| KeyError::CreateDir {
            dir: dir.to_path_buf(),
            source,
        })?;
    }
    // WAL lets the snapshot reload read while an admin write is in flight;
    // `synchronous` stays at sqlx's default (FULL): tier changes are billed.
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT);
    SqlitePoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .connect_with(options)
        .await
        .map_err(|source| KeyError::Open {
            path: path.to_path_buf(),
            source,
        })
}

/// A pool on a private in-memory database. It has a single connection that
/// is never closed for idleness or age: the database lives as long as it does.
pub(super) async fn connect_memory() -> Result<SqlitePool, KeyError> {
    let options = SqliteConnectOptions::from_str("sqlite::memory:")?.foreign_keys(true);
    let pool = SqlitePoolOptions::new()
        .min_connections(1)
        .max_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        .connect_with(options)
        .await?;
    Ok(pool)
}

/// Brings the schema up to date.
pub(super) async fn migrate(pool: &SqlitePool) -> Result<(), KeyError> {
    Ok(MIGRATOR.run(pool).await?)
}

/// Inserts an active key with no increments and returns it.
pub(super) async fn insert(
    pool: &SqlitePool,
    name: &str,
    hash: &[u8; 32],
    last5: &str,
    actor: &str,
    now: i64,
) -> Result<KeyInfo, KeyError> {
    let sql = format!(
        "INSERT INTO keys (name, secret_hash, last5, increments, created_at, created_by) \
         VALUES (?, ?, ?, 0, ?, ?) RETURNING {KEY_COLUMNS}"
    );
    let inserted = sqlx::query(&sql)
        .bind(name)
        .bind(&hash[..])
        .bind(last5)
        .bind(now)
        .bind(actor)
        .fetch_one(pool)
        .await;
    match inserted {
        Ok(row) => key_info(&row),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
            Err(KeyError::DuplicateSecret {
                last5: last5.to_owned(),
            })
        }
        Err(e) => Err(e.into()),
    }
}

/// Marks the key revoked; `false` if it already was.
pub(super) async fn revoke(
    pool: &SqlitePool,
    id: u32,
    actor: &str,
    now: i64,
) -> Result<bool, KeyError> {
    let done = sqlx::query(
        "UPDATE keys SET revoked_at = ?, revoked_by = ? WHERE id = ? AND revoked_at IS NULL",
    )
    .bind(now)
    .bind(actor)
    .bind(id)
    .execute(pool)
    .await?;
    if done.rows_affected() == 1 {
        return Ok(true);
    }
    one(pool, id)
        .await?
        .map(|_| false)
        .ok_or(KeyError::UnknownKey(id))
}

/// Every key, revoked ones included, oldest first.
pub(super) async fn all(pool: &SqlitePool) -> Result<Vec<KeyInfo>, KeyError> {
    let sql = format!("SELECT {KEY_COLUMNS} FROM keys ORDER BY id");
    let rows = sqlx::query(&sql).fetch_all(pool).await?;
    rows.iter().map(key_info).collect()
}

/// The key with this id, if any.
pub(super) async fn one(pool: &SqlitePool, id: u32) -> Result<Option<KeyInfo>, KeyError> {
    let sql = format!("SELECT {KEY_COLUMNS} FROM keys WHERE id = ?");
    let row = sqlx::query(&sql).bind(id).fetch_optional(pool).await?;
    row.as_ref().map(key_info).transpose()
}

/// The active keys with their secret hashes: what the snapshot is built from.
pub(super) async fn active(pool: &SqlitePool) -> Result<Vec<([u8; 32], KeyInfo)>, KeyError> {
    let sql = format!("SELECT {KEY_COLUMNS}, secret_hash FROM keys WHERE revoked_at IS NULL");
    let rows = sqlx::query(&sql).fetch_all(pool).await?;
    rows.iter()
        .map(|row| {
            let hash: Vec<u8> = row.try_get("secret_hash")?;
            let hash = <[u8; 32]>::try_from(hash)
                .map_err(|h| KeyError::Corrupt(format!("a secret hash of {} bytes", h.len())))?;
            Ok((hash, key_info(row)?))
        })
        .collect()
}

/// Sets the key's increments and records the change, in one transaction.
pub(super) async fn set_increments(
    pool: &SqlitePool,
    id: u32,
    to: u32,
    actor: &str,
    reason: Option<&str>,
    now_ms: impl FnOnce() -> i64,
) -> Result<TierChange, KeyError> {
    // IMMEDIATE takes the write lock up front, so the `from` read below cannot
    // be overtaken by another writer between the read and the update; the time
    // is read under the lock too, so it grows with the order of the changes.
    let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
    let at = now_ms();
    let from = current_increments(&mut tx, id).await?;
    sqlx::query("UPDATE keys SET increments = ? WHERE id = ?")
        .bind(to)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "INSERT INTO tier_changes (key_id, from_increments, to_increments, actor, reason, at) \
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(id)
    .bind(from)
    .bind(to)
    .bind(actor)
    .bind(reason)
    .bind(at)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(TierChange {
        key_id: id,
        from,
        to,
        actor: actor.to_owned(),
        reason: reason.map(str::to_owned),
        at,
    })
}

/// The increments of an active key, or why there are none.
async fn current_increments(conn: &mut SqliteConnection, id: u32) -> Result<u32, KeyError> {
    let row = sqlx::query("SELECT increments, revoked_at IS NOT NULL FROM keys WHERE id = ?")
        .bind(id)
        .fetch_optional(conn)
        .await?
        .ok_or(KeyError::UnknownKey(id))?;
    if row.try_get::<bool, _>(1)? {
        return Err(KeyError::Revoked(id));
    }
    to_u32(row.try_get(0)?, "increments")
}

/// The key's tier changes in the order they were made.
pub(super) async fn history(pool: &SqlitePool, id: u32) -> Result<Vec<TierChange>, KeyError> {
    let rows = sqlx::query(
        "SELECT key_id, from_increments, to_increments, actor, reason, at \
         FROM tier_changes WHERE key_id = ? ORDER BY id",
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(TierChange {
                key_id: to_u32(row.try_get(0)?, "key id")?,
                from: to_u32(row.try_get(1)?, "increments")?,
                to: to_u32(row.try_get(2)?, "increments")?,
                actor: row.try_get(3)?,
                reason: row.try_get(4)?,
                at: row.try_get(5)?,
            })
        })
        .collect()
}

/// A row of [`KEY_COLUMNS`] as a [`KeyInfo`].
fn key_info(row: &SqliteRow) -> Result<KeyInfo, KeyError> {
    Ok(KeyInfo {
        id: to_u32(row.try_get(0)?, "key id")?,
        name: row.try_get(1)?,
        last5: row.try_get(2)?,
        increments: to_u32(row.try_get(3)?, "increments")?,
        created_at: row.try_get(4)?,
        revoked: row.try_get(5)?,
    })
}

fn to_u32(value: i64, what: &str) -> Result<u32, KeyError> {
    u32::try_from(value)
        .map_err(|_| KeyError::Corrupt(format!("{what} {value}, beyond 0..=4294967295")))
}
