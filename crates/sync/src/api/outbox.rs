//! The outbox's endpoints: a submission accepted at once, stored first, and
//! how it went.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use tollgate_sql::{NewSubmission, Priority, Submission, SubmissionFilter, SubmissionState};

use super::ApiState;

/// The longest idempotency key accepted.
const MAX_KEY: usize = 255;

fn problem(status: StatusCode, detail: impl Into<String>) -> Response {
    let body = json!({ "type": "about:blank", "title": status.canonical_reason(), "status": status.as_u16(), "detail": detail.into() });
    let mut response = (status, Json(body)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}

fn unavailable(err: &tollgate_sql::StorageError) -> Response {
    problem(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the storage layer cannot answer: {err}"),
    )
}

/// A submission as the API shows it.
pub fn view(submission: &Submission) -> Value {
    let answer = submission.answer.as_ref().map(|answer| {
        let text = String::from_utf8_lossy(&answer.body);
        let body = serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text.into()));
        json!({ "status": answer.status, "content_type": answer.content_type, "body": body })
    });
    let queued = submission.state == SubmissionState::Queued;
    json!({
        "id": submission.id,
        "source": submission.source,
        "method": submission.method,
        "path": submission.path,
        "priority": submission.priority.as_str(),
        "state": submission.state.as_str(),
        "idempotency_key": submission.idempotency_key,
        "attempts": submission.attempts,
        "created_at_ms": submission.created_at_ms,
        "updated_at_ms": submission.updated_at_ms,
        "next_attempt_at_ms": queued.then_some(submission.next_attempt_ms),
        "error": submission.error,
        "response": answer,
    })
}

/// The priority of a submission: `?priority=`, else a `Priority` header naming
/// one (an RFC 9218 `Priority: u=…` is someone else's and ignored), else normal.
fn priority(query: Option<&str>, headers: &HeaderMap) -> Result<Priority, String> {
    if let Some(value) = query {
        return value.parse();
    }
    match headers.get("priority").and_then(|v| v.to_str().ok()) {
        Some(value) if !value.contains('=') => value.parse(),
        _ => Ok(Priority::Normal),
    }
}

/// `priority` taken out of the query; the rest goes to the provider.
fn split_query(raw: Option<&str>) -> (Option<String>, String) {
    let mut priority = None;
    let mut rest = Vec::new();
    for pair in raw.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("priority", value)) => priority = Some(value.to_owned()),
            _ if pair == "priority" => priority = Some(String::new()),
            _ => rest.push(pair),
        }
    }
    let rest = if rest.is_empty() {
        String::new()
    } else {
        format!("?{}", rest.join("&"))
    };
    (priority, rest)
}

/// `POST /v1/sources/{source}/submit/{path…}`: stores the request for the
/// provider, then answers `202 Accepted` with its `Location`.
pub(super) async fn submit(
    State(state): State<ApiState>,
    Path((source, path)): Path<(String, String)>,
    RawQuery(raw_query): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !state.daemon.sources.iter().any(|s| s.source.name == source) {
        let names: Vec<&str> = state
            .daemon
            .sources
            .iter()
            .map(|s| s.source.name.as_str())
            .collect();
        return problem(
            StatusCode::NOT_FOUND,
            format!("no source `{source}`; the sources are {}", names.join(", ")),
        );
    }
    let (priority_param, query) = split_query(raw_query.as_deref());
    let priority = match priority(priority_param.as_deref(), &headers) {
        Ok(priority) => priority,
        Err(message) => return problem(StatusCode::BAD_REQUEST, message),
    };
    let idempotency_key = match headers.get("idempotency-key").map(HeaderValue::to_str) {
        None => format!("{:032x}", rand::random::<u128>()),
        Some(Ok(key)) if !key.trim().is_empty() && key.len() <= MAX_KEY => key.trim().to_owned(),
        Some(_) => {
            return problem(
                StatusCode::BAD_REQUEST,
                format!(
                    "Idempotency-Key must be 1 to {MAX_KEY} visible ASCII characters, like a UUID"
                ),
            );
        }
    };
    let new = NewSubmission {
        source,
        idempotency_key,
        method: "POST".into(),
        path: format!("/{path}{query}"),
        content_type: headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        body: body.to_vec(),
        priority,
        at_ms: i64::try_from(state.clock.now().as_millis()).unwrap_or(i64::MAX),
    };
    let submitted = match state.storage.submit(&new).await {
        Ok(submitted) => submitted,
        Err(err) => return unavailable(&err),
    };
    let stored = &submitted.submission;
    if !submitted.created && (stored.path != new.path || stored.body != new.body) {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!(
                "Idempotency-Key `{}` was used for another request (submission {}): send a new key for a new request, the same request for the same key",
                stored.idempotency_key, stored.id
            ),
        );
    }
    if submitted.created {
        state.daemon.outbox.wake(&stored.source);
    }
    let location = format!("/v1/outbox/{}", stored.id);
    let mut response = (StatusCode::ACCEPTED, Json(view(stored))).into_response();
    let headers = response.headers_mut();
    if let Ok(location) = HeaderValue::try_from(location) {
        headers.insert(header::LOCATION, location);
    }
    if !submitted.created {
        headers.insert(
            HeaderName::from_static("idempotent-replayed"),
            HeaderValue::from_static("true"),
        );
    }
    response
}

/// `GET /v1/outbox/{id}`.
pub(super) async fn one(State(state): State<ApiState>, Path(id): Path<i64>) -> Response {
    match state.storage.submission(id).await {
        Ok(Some(submission)) => Json(view(&submission)).into_response(),
        Ok(None) => problem(StatusCode::NOT_FOUND, format!("no submission {id}")),
        Err(err) => unavailable(&err),
    }
}

/// `DELETE /v1/outbox/{id}`: cancels a queued submission.
pub(super) async fn cancel(State(state): State<ApiState>, Path(id): Path<i64>) -> Response {
    let now = i64::try_from(state.clock.now().as_millis()).unwrap_or(i64::MAX);
    let cancelled = match state.storage.cancel_submission(id, now).await {
        Ok(cancelled) => cancelled,
        Err(err) => return unavailable(&err),
    };
    match state.storage.submission(id).await {
        Ok(Some(submission)) if cancelled => Json(view(&submission)).into_response(),
        Ok(Some(submission)) => problem(
            StatusCode::CONFLICT,
            format!(
                "submission {id} is {}: only a queued one can be cancelled",
                submission.state
            ),
        ),
        Ok(None) => problem(StatusCode::NOT_FOUND, format!("no submission {id}")),
        Err(err) => unavailable(&err),
    }
}

/// Query parameters of `GET /v1/outbox`.
#[derive(Deserialize)]
pub(super) struct ListParams {
    source: Option<String>,
    state: Option<String>,
    before: Option<i64>,
    limit: Option<u32>,
}

/// `GET /v1/outbox?source=&state=&before=&limit=`: newest first.
pub(super) async fn list(
    State(state): State<ApiState>,
    Query(params): Query<ListParams>,
) -> Response {
    let limit = params.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return problem(
            StatusCode::BAD_REQUEST,
            format!("limit {limit} is out of range: 1 to 1000"),
        );
    }
    let filter_state = match params.state.as_deref().map(str::parse).transpose() {
        Ok(s) => s,
        Err(message) => return problem(StatusCode::BAD_REQUEST, message),
    };
    let filter = SubmissionFilter {
        source: params.source,
        state: filter_state,
        before_id: params.before,
        limit,
    };
    match state.storage.submissions(&filter).await {
        Ok(found) => {
            let next = (found.len() == limit as usize)
                .then(|| found.last().map(|s| s.id))
                .flatten();
            let submissions: Vec<Value> = found.iter().map(view).collect();
            Json(json!({ "submissions": submissions, "next": next })).into_response()
        }
        Err(err) => unavailable(&err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_priority_parameter_is_kept_from_the_provider() {
        assert_eq!(split_query(None), (None, String::new()));
        assert_eq!(
            split_query(Some("a=1&priority=urgent&b=2")),
            (Some("urgent".into()), "?a=1&b=2".into())
        );
        let headers = HeaderMap::new();
        assert_eq!(priority(Some("bulk"), &headers), Ok(Priority::Bulk));
        assert!(
            priority(Some("soon"), &headers)
                .unwrap_err()
                .contains("urgent")
        );
        let mut headers = HeaderMap::new();
        headers.insert("priority", HeaderValue::from_static("u=1, i"));
        assert_eq!(priority(None, &headers), Ok(Priority::Normal));
        headers.insert("priority", HeaderValue::from_static("urgent"));
        assert_eq!(priority(None, &headers), Ok(Priority::Urgent));
    }
}
