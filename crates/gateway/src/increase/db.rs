//! Limit-increase requests in the key database.

use serde::Serialize;
use serde_json::Value;
use sqlx::{Row, SqlitePool};

/// A stored limit-increase request.
#[derive(Clone, Debug, Serialize)]
pub struct LimitRequest {
    /// Its id.
    pub id: i64,
    /// The key it is for.
    pub key_id: u32,
    /// The submitted form.
    pub application: Value,
    /// What the gateway measured when it was submitted.
    pub evidence: Value,
    /// `pending`, `approved` or `declined`.
    pub status: String,
    /// Increments granted, when approved.
    pub increments_granted: Option<u32>,
    /// Who decided.
    pub decided_by: Option<String>,
    /// Why (required to decline).
    pub decision_reason: Option<String>,
    /// Unix milliseconds.
    pub created_at: i64,
    /// Unix milliseconds.
    pub decided_at: Option<i64>,
}

fn from_row(row: &sqlx::sqlite::SqliteRow) -> Result<LimitRequest, sqlx::Error> {
    let json = |column: &str| -> Result<Value, sqlx::Error> {
        let text: String = row.try_get(column)?;
        serde_json::from_str(&text).map_err(|e| sqlx::Error::Decode(Box::new(e)))
    };
    Ok(LimitRequest {
        id: row.try_get("id")?,
        key_id: row.try_get::<i64, _>("key_id")? as u32,
        application: json("application")?,
        evidence: json("evidence")?,
        status: row.try_get("status")?,
        increments_granted: row
            .try_get::<Option<i64>, _>("increments_granted")?
            .map(|v| v as u32),
        decided_by: row.try_get("decided_by")?,
        decision_reason: row.try_get("decision_reason")?,
        created_at: row.try_get("created_at")?,
        decided_at: row.try_get("decided_at")?,
    })
}

pub(super) async fn insert(
    pool: &SqlitePool,
    key_id: u32,
    application: &Value,
    evidence: &Value,
    now: i64,
) -> Result<LimitRequest, sqlx::Error> {
    let row = sqlx::query(
        "INSERT INTO limit_increase_requests (key_id, application, evidence, created_at)
         VALUES (?, ?, ?, ?) RETURNING *",
    )
    .bind(i64::from(key_id))
    .bind(application.to_string())
    .bind(evidence.to_string())
    .bind(now)
    .fetch_one(pool)
    .await?;
    from_row(&row)
}

pub(super) async fn get(pool: &SqlitePool, id: i64) -> Result<Option<LimitRequest>, sqlx::Error> {
    let row = sqlx::query("SELECT * FROM limit_increase_requests WHERE id = ?")
        .bind(id)
        .fetch_optional(pool)
        .await?;
    row.as_ref().map(from_row).transpose()
}

pub(super) async fn list(
    pool: &SqlitePool,
    status: Option<&str>,
) -> Result<Vec<LimitRequest>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT * FROM limit_increase_requests WHERE ?1 IS NULL OR status = ?1 ORDER BY id",
    )
    .bind(status)
    .fetch_all(pool)
    .await?;
    rows.iter().map(from_row).collect()
}

/// Records a decision on a pending request; `None` if it is not pending.
pub(super) async fn decide(
    pool: &SqlitePool,
    id: i64,
    status: &str,
    granted: Option<u32>,
    actor: &str,
    reason: Option<&str>,
    now: i64,
) -> Result<Option<LimitRequest>, sqlx::Error> {
    let row = sqlx::query(
        "UPDATE limit_increase_requests
         SET status = ?, increments_granted = ?, decided_by = ?, decision_reason = ?, decided_at = ?
         WHERE id = ? AND status = 'pending' RETURNING *",
    )
    .bind(status)
    .bind(granted.map(i64::from))
    .bind(actor)
    .bind(reason)
    .bind(now)
    .bind(id)
    .fetch_optional(pool)
    .await?;
    row.as_ref().map(from_row).transpose()
}
