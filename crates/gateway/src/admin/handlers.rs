//! Admin API handlers.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tollgate_core::{Scope, Subject, retry_after_secs};

use super::AdminError;
use crate::Gateway;
use crate::keys::KeyInfo;
use crate::problem::rfc3339;

type Result<T> = std::result::Result<T, AdminError>;

/// Who made a change, for the billing record: the `X-Admin-Actor` header, or `admin`.
pub(crate) fn actor(headers: &HeaderMap) -> String {
    headers
        .get("x-admin-actor")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .unwrap_or("admin")
        .to_owned()
}

fn key_json(key: &KeyInfo) -> Value {
    json!({
        "id": key.id, "name": key.name, "last5": key.last5,
        "increments": key.increments, "created_at_ms": key.created_at, "revoked": key.revoked,
    })
}

pub(super) async fn ready(State(gateway): State<Gateway>) -> Response {
    match gateway.keys.list().await {
        Ok(_) => "ready\n".into_response(),
        Err(err) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("key database unavailable: {err}\n"),
        )
            .into_response(),
    }
}

pub(super) async fn metrics(State(gateway): State<Gateway>) -> Response {
    let store = gateway.enforcement.load().enforcer().store().resilience();
    gateway.metrics.observe_store(store);
    (
        [(
            http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        gateway.metrics.render(),
    )
        .into_response()
}

#[derive(Deserialize)]
pub(super) struct NewKeyRequest {
    name: String,
}

pub(super) async fn create_key(
    State(gateway): State<Gateway>,
    headers: HeaderMap,
    Json(body): Json<NewKeyRequest>,
) -> Result<Response> {
    if body.name.trim().is_empty() {
        return Err(AdminError::BadRequest(
            "`name` is empty: name the key after its owner, like `acme-sync`".into(),
        ));
    }
    let created = gateway
        .keys
        .create(body.name.trim(), &actor(&headers))
        .await?;
    let mut answer = key_json(&created.info);
    answer["secret"] = json!(created.secret.expose());
    answer["note"] = json!("the secret is shown once: store it now");
    Ok((StatusCode::CREATED, Json(answer)).into_response())
}

pub(super) async fn list_keys(State(gateway): State<Gateway>) -> Result<Json<Value>> {
    let keys = gateway.keys.list().await?;
    Ok(Json(Value::Array(keys.iter().map(key_json).collect())))
}

pub(super) async fn show_key(
    State(gateway): State<Gateway>,
    Path(id): Path<u32>,
) -> Result<Json<Value>> {
    let key = gateway
        .keys
        .get(id)
        .await?
        .ok_or(AdminError::UnknownKey(id))?;
    let enforcement = gateway.enforcement.load();
    let enforcer = enforcement.enforcer();
    let now = enforcement.clock.now();
    let subject = Subject {
        key: id,
        endpoint: None,
        increments: key.increments,
    };
    let usage = enforcer
        .store()
        .peek(&enforcer.policies().charges(&subject), now)
        .await
        .map_err(|e| AdminError::BadRequest(format!("the limit store cannot answer now: {e}")))?;
    let usage: Vec<Value> = usage
        .verdicts()
        .iter()
        .filter_map(|v| {
            let policy = enforcer.policies().get(v.limit)?;
            (policy.scope == Scope::PerKey).then(|| {
                json!({
                    "policy": policy.name, "limit": v.quota, "remaining": v.remaining,
                    "used": v.quota.saturating_sub(v.remaining),
                    "window_s": policy.quota.rate.window().as_secs_f64(),
                    "next_slot_returns_in_ms": v.reset_after.as_millis() as u64,
                })
            })
        })
        .collect();
    let escalation = enforcement.ledger.escalation(id);
    let mut answer = key_json(&key);
    answer["usage"] = Value::Array(usage);
    answer["strikes"] = json!(escalation.map_or(0, |e| e.strikes()));
    answer["blocked_until"] = json!(escalation.and_then(|e| e.blocked_until(now)).map(rfc3339));
    Ok(Json(answer))
}

pub(super) async fn revoke_key(
    State(gateway): State<Gateway>,
    headers: HeaderMap,
    Path(id): Path<u32>,
) -> Result<StatusCode> {
    if gateway.keys.revoke(id, &actor(&headers)).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AdminError::UnknownKey(id))
    }
}

#[derive(Deserialize)]
pub(super) struct IncrementsRequest {
    increments: u32,
    reason: Option<String>,
}

#[derive(Serialize)]
struct Change {
    key_id: u32,
    from: u32,
    to: u32,
    actor: String,
    reason: Option<String>,
    at: String,
}

fn change_json(change: &crate::keys::TierChange) -> Change {
    Change {
        key_id: change.key_id,
        from: change.from,
        to: change.to,
        actor: change.actor.clone(),
        reason: change.reason.clone(),
        at: rfc3339(tollgate_core::Timestamp::from_millis(
            change.at.max(0) as u64
        )),
    }
}

pub(super) async fn set_increments(
    State(gateway): State<Gateway>,
    headers: HeaderMap,
    Path(id): Path<u32>,
    Json(body): Json<IncrementsRequest>,
) -> Result<Response> {
    let change = gateway
        .keys
        .set_increments(
            id,
            body.increments,
            &actor(&headers),
            body.reason.as_deref(),
        )
        .await?;
    Ok(Json(change_json(&change)).into_response())
}

pub(super) async fn tier_history(
    State(gateway): State<Gateway>,
    Path(id): Path<u32>,
) -> Result<Response> {
    gateway
        .keys
        .get(id)
        .await?
        .ok_or(AdminError::UnknownKey(id))?;
    let history = gateway.keys.tier_history(id).await?;
    Ok(Json(history.iter().map(change_json).collect::<Vec<_>>()).into_response())
}

pub(super) async fn list_blocks(State(gateway): State<Gateway>) -> Json<Value> {
    let enforcement = gateway.enforcement.load();
    let now = enforcement.clock.now();
    let blocks = enforcement.ledger.blocked(now);
    Json(Value::Array(
        blocks
            .into_iter()
            .map(|(key, until)| {
                json!({ "key_id": key, "blocked_until": rfc3339(until), "remaining_s": retry_after_secs(until.saturating_since(now)) })
            })
            .collect(),
    ))
}

pub(super) async fn unblock(
    State(gateway): State<Gateway>,
    Path(id): Path<u32>,
) -> Result<StatusCode> {
    let enforcement = gateway.enforcement.load();
    let now = enforcement.clock.now();
    if enforcement.ledger.unblock(id, now) {
        tracing::info!(key = id, "key unblocked by an admin");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(AdminError::BadRequest(format!("key {id} is not blocked")))
    }
}

pub(super) async fn reload(State(gateway): State<Gateway>) -> Result<Json<Value>> {
    gateway.reload_from_file().map_err(|err| {
        AdminError::BadRequest(format!(
            "configuration not reloaded, nothing changed: {err}"
        ))
    })?;
    Ok(Json(json!({ "reloaded": true })))
}
