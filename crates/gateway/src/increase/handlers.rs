//! The HTTP side of limit-increase requests.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{Application, LimitRequest, db, evidence};
use crate::Gateway;
use crate::admin::AdminError;
use crate::problem::{Problem, rfc3339};

fn bad_request(detail: impl Into<String>) -> Response {
    Problem::new(
        StatusCode::BAD_REQUEST,
        "bad-request",
        "Bad request",
        detail,
    )
    .into_response()
}

fn database(err: sqlx::Error) -> Response {
    tracing::error!(%err, "limit-increase request store failed");
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "key-database",
        "Key database unavailable",
        "retry shortly",
    )
    .into_response()
}

/// `POST /_tollgate/limit-increase-requests`, authenticated by the API key.
pub(crate) async fn submit(
    State(gateway): State<Gateway>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let enforcement = gateway.enforcement.load();
    let Some(key) = enforcement
        .presented_key(&headers)
        .and_then(|k| gateway.keys.authenticate(k))
    else {
        return Problem::unauthorized("send the request with the API key the increase is for")
            .into_response();
    };
    let application: Application = match serde_json::from_slice(&body) {
        Ok(application) => application,
        Err(err) => {
            return bad_request(format!(
                "the form is not valid JSON of the expected shape ({err}); see docs/gateway.md for the fields"
            ));
        }
    };
    if let Err(problem) = application.check(&key.last5) {
        return Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "incomplete-application",
            "Incomplete application",
            problem,
        )
        .into_response();
    }
    let record = enforcement.ledger.record(key.id);
    let evidence = evidence(&record, &rfc3339(enforcement.ledger.since), key.increments);
    let form = serde_json::to_value(&application).unwrap_or_default();
    match db::insert(
        gateway.keys.pool(),
        key.id,
        &form,
        &evidence,
        gateway.keys.now_ms(),
    )
    .await
    {
        Ok(request) => {
            tracing::info!(
                key = key.id,
                id = request.id,
                "limit-increase request submitted"
            );
            let location = format!("/_tollgate/limit-increase-requests/{}", request.id);
            (
                StatusCode::CREATED,
                [(header::LOCATION, location)],
                Json(request),
            )
                .into_response()
        }
        Err(err) => database(err),
    }
}

/// `GET /_tollgate/limit-increase-requests/{id}`: the submitting key sees its own.
pub(crate) async fn status(
    State(gateway): State<Gateway>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Response {
    let enforcement = gateway.enforcement.load();
    let Some(key) = enforcement
        .presented_key(&headers)
        .and_then(|k| gateway.keys.authenticate(k))
    else {
        return Problem::unauthorized("send the API key that submitted the request")
            .into_response();
    };
    match db::get(gateway.keys.pool(), id).await {
        Ok(Some(request)) if request.key_id == key.id => Json(request).into_response(),
        Ok(_) => Problem::new(
            StatusCode::NOT_FOUND,
            "not-found",
            "Not found",
            format!("no limit-increase request {id} for this key"),
        )
        .into_response(),
        Err(err) => database(err),
    }
}

#[derive(Deserialize)]
pub(crate) struct Filter {
    status: Option<String>,
}

/// `GET /admin/limit-increase-requests?status=pending`.
pub(crate) async fn list(
    State(gateway): State<Gateway>,
    Query(filter): Query<Filter>,
) -> Result<Json<Vec<LimitRequest>>, AdminError> {
    db::list(gateway.keys.pool(), filter.status.as_deref())
        .await
        .map(Json)
        .map_err(|e| AdminError::BadRequest(format!("cannot list: {e}")))
}

#[derive(Deserialize)]
pub(crate) struct Decision {
    /// Increments to grant (approve); defaults to what was asked for.
    increments: Option<u32>,
    /// Why (required to decline).
    reason: Option<String>,
}

/// `POST /admin/limit-increase-requests/{id}/approve`: applies the increments.
pub(crate) async fn approve(
    State(gateway): State<Gateway>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Json(decision): Json<Decision>,
) -> Result<Response, AdminError> {
    let actor = crate::admin::actor(&headers);
    let pending = pending(&gateway, id).await?;
    let wanted = pending.application["increments_wanted"]
        .as_u64()
        .unwrap_or(1) as u32;
    let granted = decision.increments.unwrap_or(wanted);
    let key = gateway
        .keys
        .get(pending.key_id)
        .await?
        .ok_or(AdminError::UnknownKey(pending.key_id))?;
    let decided = db::decide(
        gateway.keys.pool(),
        id,
        "approved",
        Some(granted),
        &actor,
        decision.reason.as_deref(),
        gateway.keys.now_ms(),
    )
    .await
    .map_err(|e| AdminError::BadRequest(format!("cannot record the decision: {e}")))?
    .ok_or_else(|| AdminError::BadRequest(format!("request {id} is no longer pending")))?;
    let reason = format!("limit-increase request {id} approved");
    let change = gateway
        .keys
        .set_increments(
            key.id,
            key.increments.saturating_add(granted),
            &actor,
            Some(&reason),
        )
        .await?;
    Ok(
        Json(
            json!({ "request": decided, "tier_change": { "from": change.from, "to": change.to } }),
        )
        .into_response(),
    )
}

/// `POST /admin/limit-increase-requests/{id}/decline` with a reason.
pub(crate) async fn decline(
    State(gateway): State<Gateway>,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Json(decision): Json<Decision>,
) -> Result<Response, AdminError> {
    let Some(reason) = decision.reason.filter(|r| !r.trim().is_empty()) else {
        return Err(AdminError::BadRequest(
            "a decline needs a `reason` the integrator can act on".into(),
        ));
    };
    pending(&gateway, id).await?;
    let decided = db::decide(
        gateway.keys.pool(),
        id,
        "declined",
        None,
        &crate::admin::actor(&headers),
        Some(&reason),
        gateway.keys.now_ms(),
    )
    .await
    .map_err(|e| AdminError::BadRequest(format!("cannot record the decision: {e}")))?
    .ok_or_else(|| AdminError::BadRequest(format!("request {id} is no longer pending")))?;
    Ok(Json(decided).into_response())
}

async fn pending(gateway: &Gateway, id: i64) -> Result<LimitRequest, AdminError> {
    let request = db::get(gateway.keys.pool(), id)
        .await
        .map_err(|e| AdminError::BadRequest(format!("cannot read request {id}: {e}")))?
        .ok_or_else(|| AdminError::BadRequest(format!("no limit-increase request {id}")))?;
    if request.status != "pending" {
        return Err(AdminError::BadRequest(format!(
            "request {id} was already {}",
            request.status
        )));
    }
    Ok(request)
}
