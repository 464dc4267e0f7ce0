//! What every request goes through before and after its route: the outage
//! switch, the key, strict mode and the limits, injected faults, the `ETag`, and
//! the request log.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::{Body, to_bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, ETAG, IF_NONE_MATCH, RETRY_AFTER};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use sha2::{Digest, Sha256};
use tollgate_core::{Decision, Timestamp, retry_after_secs};

use crate::api::Shared;
use crate::endpoint::Endpoint;
use crate::faults::Fault;
use crate::gate::{Admission, LogEntry};
use crate::routes::error;
use crate::server::ConnectionKill;

/// A request's answer, and how to give it.
enum Reply {
    Now(Response),
    /// A slow answer: after this delay.
    After(Duration, Response),
    /// No answer: the connection is closed.
    Drop,
}

/// One request, as the API sees it before it is answered.
struct Arrival {
    now: Timestamp,
    key: String,
    endpoint: Option<Endpoint>,
    path: String,
}

/// The middleware in front of every route.
pub(crate) async fn guard(
    State(api): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let arrival = Arrival {
        now: api.clock.now(),
        key: api_key(request.headers()).unwrap_or_default(),
        endpoint: request
            .extensions()
            .get::<MatchedPath>()
            .and_then(|m| Endpoint::from_route(m.as_str())),
        path: request
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned(),
    };
    let method = request.method().clone();
    let kill = request.extensions().get::<ConnectionKill>().cloned();
    let (reply, fault) = answer(&api, &arrival, request, next).await;
    let status = match &reply {
        Reply::Now(response) | Reply::After(_, response) => Some(response.status().as_u16()),
        Reply::Drop => None,
    };
    let Arrival {
        now,
        key,
        endpoint,
        path,
    } = arrival;
    api.gate.record(LogEntry {
        at: now,
        key,
        method,
        path,
        endpoint,
        status,
        fault,
    });
    match (reply, kill) {
        (Reply::Now(response), _) => response,
        (Reply::After(delay, response), _) => {
            tokio::time::sleep(delay).await;
            response
        }
        (Reply::Drop, Some(kill)) => {
            kill.close();
            std::future::pending().await
        }
        // Served without this crate's connection loop: nothing to drop.
        (Reply::Drop, None) => error(StatusCode::INTERNAL_SERVER_ERROR, "connection reset"),
    }
}

async fn answer(
    api: &Shared,
    arrival: &Arrival,
    request: Request,
    next: Next,
) -> (Reply, Option<Fault>) {
    if api.faults.outage() {
        return (
            Reply::Now(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "service unavailable",
            )),
            Some(Fault::Outage),
        );
    }
    if let Err(refused) = api.authorise(&arrival.key) {
        return (Reply::Now(refused.into_response()), None);
    }
    let decision = match api
        .gate
        .admit(&arrival.key, arrival.endpoint, &arrival.path, arrival.now)
    {
        Admission::Admitted(decision) => decision,
        Admission::Limited { decision, wait } => {
            return (Reply::Now(limited(api, &decision, wait)), None);
        }
        Admission::Blocked => {
            return (
                Reply::Now(error(StatusCode::FORBIDDEN, "abnormal usage")),
                None,
            );
        }
    };
    let drawn = api.faults.draw(arrival.endpoint);
    let reply = match drawn {
        Some((Fault::InternalError, _)) => {
            Reply::Now(error(StatusCode::INTERNAL_SERVER_ERROR, "internal error"))
        }
        Some((Fault::Unavailable, _)) => Reply::Now(error(
            StatusCode::SERVICE_UNAVAILABLE,
            "service unavailable",
        )),
        _ => {
            let is_get = request.method() == Method::GET;
            let if_none_match = request.headers().get(IF_NONE_MATCH).cloned();
            let response = next.run(request).await;
            let response = if is_get {
                with_etag(response, if_none_match).await
            } else {
                response
            };
            match drawn {
                Some((Fault::Slow, delay)) => Reply::After(delay, response),
                Some((Fault::Garbage, _)) => Reply::Now(garbage()),
                Some((Fault::Reset, _)) => Reply::Drop,
                _ => Reply::Now(response),
            }
        }
    };
    (
        with_limit_headers(api, &decision, reply),
        drawn.map(|(fault, _)| fault),
    )
}

/// The `429`: `Retry-After` in whole seconds rounded up (and the exact wait in
/// the body), unless the API is set to tell nothing.
fn limited(api: &Shared, decision: &Decision, wait: Duration) -> Response {
    let limits: Vec<&str> = decision
        .rejections()
        .filter_map(|v| api.gate.policies().get(v.limit))
        .map(|p| p.name.as_str())
        .collect();
    let mut body = json!({ "error": "too many requests", "limits": limits });
    let mut response = if api.gate.tells_retry_after() {
        body["retry_after_ms"] = json!(wait.as_millis() as u64);
        let mut response = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(retry_after_secs(wait)));
        response
    } else {
        (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response()
    };
    api.headers
        .insert(response.headers_mut(), api.gate.policies(), decision);
    response
}

fn with_limit_headers(api: &Shared, decision: &Decision, mut reply: Reply) -> Reply {
    if let Reply::Now(response) | Reply::After(_, response) = &mut reply {
        api.headers
            .insert(response.headers_mut(), api.gate.policies(), decision);
    }
    reply
}

/// Adds a strong `ETag` (a hash of the body) to a `200`, and answers `304` with
/// no body when `If-None-Match` names it.
async fn with_etag(response: Response, if_none_match: Option<HeaderValue>) -> Response {
    if response.status() != StatusCode::OK {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = to_bytes(body, usize::MAX).await else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the body could not be read",
        );
    };
    let digest = Sha256::digest(&bytes);
    let tag: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    let tag = format!("\"{tag}\"");
    let matched = if_none_match
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| names_tag(v, &tag));
    if let Ok(value) = HeaderValue::from_str(&tag) {
        parts.headers.insert(ETAG, value);
    }
    if matched {
        parts.status = StatusCode::NOT_MODIFIED;
        parts.headers.remove(CONTENT_TYPE);
        return Response::from_parts(parts, Body::empty());
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// Whether an `If-None-Match` value names `tag` (weak comparison, or `*`).
fn names_tag(if_none_match: &str, tag: &str) -> bool {
    if_none_match
        .split(',')
        .map(str::trim)
        .any(|candidate| candidate == "*" || candidate.trim_start_matches("W/") == tag)
}

/// A `200` that claims JSON and is not.
fn garbage() -> Response {
    let body = "{\"data\":[{\"id\":\"prop-0<html><body>502 Bad Gateway</body></html>";
    (StatusCode::OK, [(CONTENT_TYPE, "application/json")], body).into_response()
}

/// The API key: `X-Api-Key`, or `Authorization: Bearer …`; behind a tollgate
/// gateway (which never forwards the secret), the key id it vouches for, as
/// `gateway-key-<id>`.
pub(crate) fn api_key(headers: &HeaderMap) -> Option<String> {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .map(str::trim)
    };
    if let Some(key) = text("x-api-key").filter(|k| !k.is_empty()) {
        return Some(key.to_owned());
    }
    if let Some(id) = text("x-tollgate-key-id").filter(|k| !k.is_empty()) {
        return Some(format!("gateway-key-{id}"));
    }
    let authorization = text(AUTHORIZATION.as_str())?;
    let (scheme, key) = authorization.split_once(' ')?;
    let key = key.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !key.is_empty()).then(|| key.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_compares_weakly_and_accepts_lists_and_star() {
        assert!(names_tag("\"ab\"", "\"ab\""));
        assert!(names_tag("W/\"ab\"", "\"ab\""));
        assert!(names_tag("\"x\", \"ab\"", "\"ab\""));
        assert!(names_tag("*", "\"ab\""));
        assert!(!names_tag("\"abc\"", "\"ab\""));
    }

    #[test]
    fn the_key_comes_from_x_api_key_or_a_bearer_token() {
        let headers = |name: &'static str, value: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(name, HeaderValue::from_static(value));
            h
        };
        assert_eq!(
            api_key(&headers("x-api-key", "k-12345")).as_deref(),
            Some("k-12345")
        );
        assert_eq!(
            api_key(&headers("authorization", "Bearer k-1")).as_deref(),
            Some("k-1")
        );
        assert_eq!(api_key(&headers("authorization", "Basic abc")), None);
        assert_eq!(api_key(&headers("x-api-key", "  ")), None);
        assert_eq!(
            api_key(&headers("x-tollgate-key-id", "7")).as_deref(),
            Some("gateway-key-7")
        );
    }
}
