//! `POST /v1/sources/{source}/events`: the provider's push notifications,
//! checked and applied by [`crate::events`].

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::ApiState;
use crate::events::{self, Refused};

/// An `application/problem+json` answer with its own problem type.
fn problem(status: StatusCode, slug: &str, detail: String) -> Response {
    let body = json!({
        "type": format!("https://tollgate.dev/problems/{slug}"),
        "title": status.canonical_reason(),
        "status": status.as_u16(),
        "detail": detail,
    });
    let mut response = (status, Json(body)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    response
}

pub(super) async fn receive(
    State(state): State<ApiState>,
    Path(source): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(ctx) = state
        .daemon
        .sources
        .iter()
        .find(|c| c.source.name == source)
    else {
        let names: Vec<&str> = state
            .daemon
            .sources
            .iter()
            .map(|c| c.source.name.as_str())
            .collect();
        return problem(
            StatusCode::NOT_FOUND,
            "unknown-source",
            format!("no source `{source}`; the sources are {}", names.join(", ")),
        );
    };
    let now_ms = i64::try_from(state.clock.now().as_millis()).unwrap_or(i64::MAX);
    match events::receive(&ctx.source, &state.storage, &headers, &body, now_ms).await {
        Ok(received) if received.applied.is_some() => Json(received).into_response(),
        Ok(ignored) => (StatusCode::ACCEPTED, Json(ignored)).into_response(),
        Err(refused) => {
            match &refused {
                Refused::Secret(_) | Refused::Storage(_) => {
                    tracing::error!(%source, %refused, "event not applied")
                }
                _ => tracing::warn!(%source, %refused, "event refused"),
            }
            problem(refused.status(), refused.slug(), refused.to_string())
        }
    }
}
