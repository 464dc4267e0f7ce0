//! Records, with their freshness.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tollgate_sql::{ListQuery, StoredRecord};

use super::ApiState;

fn problem(status: StatusCode, detail: String) -> Response {
    let body = json!({ "type": "about:blank", "title": status.canonical_reason(), "status": status.as_u16(), "detail": detail });
    let mut response = (status, Json(body)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}

/// `None` for a resource that exists; the `404` otherwise.
fn unknown(state: &ApiState, resource: &str) -> Option<Response> {
    if state.resources.iter().any(|r| r == resource) {
        None
    } else {
        Some(problem(
            StatusCode::NOT_FOUND,
            format!(
                "no resource `{resource}`; the resources are {}",
                state.resources.join(", ")
            ),
        ))
    }
}

fn record_json(record: &StoredRecord) -> Value {
    json!({ "id": record.id, "fetched_at_ms": record.fetched_at_ms, "data": record.body })
}

/// `Age`: whole seconds since the oldest of these records was fetched.
fn with_age(mut response: Response, state: &ApiState, oldest_ms: Option<i64>) -> Response {
    if let Some(oldest) = oldest_ms {
        let now = i64::try_from(state.clock.now().as_millis()).unwrap_or(i64::MAX);
        let age = (now - oldest).max(0) / 1000;
        response
            .headers_mut()
            .insert(header::AGE, HeaderValue::from(age));
    }
    response
}

/// Query parameters of a list.
#[derive(Deserialize)]
pub(super) struct ListParams {
    after: Option<String>,
    limit: Option<u32>,
    field: Option<String>,
    value: Option<String>,
}

pub(super) async fn list(
    State(state): State<ApiState>,
    Path(resource): Path<String>,
    Query(params): Query<ListParams>,
) -> Response {
    if let Some(response) = unknown(&state, &resource) {
        return response;
    }
    let limit = params.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return problem(
            StatusCode::BAD_REQUEST,
            format!("limit {limit} is out of range: ask for 1 to 1000"),
        );
    }
    let mut query = ListQuery::first(limit);
    query.after = params.after;
    match (params.field, params.value) {
        (Some(field), Some(value)) => query.filter = Some((field, value)),
        (None, None) => {}
        _ => {
            return problem(
                StatusCode::BAD_REQUEST,
                "filter with both `field` and `value`, like `?field=status&value=active`".into(),
            );
        }
    }
    match state.storage.list(&resource, &query).await {
        Ok(records) => {
            let next = (records.len() == limit as usize)
                .then(|| records.last().map(|r| r.id.clone()))
                .flatten();
            let oldest = records.iter().map(|r| r.fetched_at_ms).min();
            let body = json!({ "records": records.iter().map(record_json).collect::<Vec<_>>(), "next": next });
            with_age(Json(body).into_response(), &state, oldest)
        }
        Err(err) if !err.is_transient() => problem(StatusCode::BAD_REQUEST, err.to_string()),
        Err(err) => problem(StatusCode::SERVICE_UNAVAILABLE, err.to_string()),
    }
}

pub(super) async fn one(
    State(state): State<ApiState>,
    Path((resource, id)): Path<(String, String)>,
) -> Response {
    if let Some(response) = unknown(&state, &resource) {
        return response;
    }
    match state.storage.get(&resource, &id).await {
        Ok(Some(record)) => {
            let fetched = record.fetched_at_ms;
            with_age(
                Json(record_json(&record)).into_response(),
                &state,
                Some(fetched),
            )
        }
        Ok(None) => problem(
            StatusCode::NOT_FOUND,
            format!("no `{resource}` record `{id}` is stored (yet)"),
        ),
        Err(err) => problem(StatusCode::SERVICE_UNAVAILABLE, err.to_string()),
    }
}
