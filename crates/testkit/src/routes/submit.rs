//! Writes: tenancy applications and appointments, with `Idempotency-Key`.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::error;
use crate::api::Shared;
use crate::endpoint::Resource;
use crate::pipeline::api_key;
use crate::writes::Written;

pub(super) async fn tenancy_application(
    State(api): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    write(&api, Resource::TenancyApplications, &headers, &body)
}

pub(super) async fn appointment(
    State(api): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    write(&api, Resource::Appointments, &headers, &body)
}

fn write(api: &Shared, resource: Resource, headers: &HeaderMap, body: &[u8]) -> Response {
    let key = api_key(headers).unwrap_or_default();
    let idempotency_key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let now = api.clock.now();
    match api.writes.write(now, &key, resource, idempotency_key, body) {
        Written::Created(record) => (StatusCode::CREATED, Json(record)).into_response(),
        Written::Replayed(record) => {
            let replayed = (
                HeaderName::from_static("idempotent-replayed"),
                HeaderValue::from_static("true"),
            );
            (StatusCode::CREATED, [replayed], Json(record)).into_response()
        }
        Written::KeyReused => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "this Idempotency-Key was already used with a different body",
        ),
        Written::Invalid => error(StatusCode::BAD_REQUEST, "the body must be a JSON object"),
    }
}
