//! The property-management platform: one pagination style per list, an
//! `updated_since` filter, single records and a bulk read.

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header::{HOST, LINK};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{ApiError, error};
use crate::api::Shared;
use crate::data::{Keyed, to_value};

const DEFAULT_PAGE: usize = 25;
const MAX_PAGE: usize = 100;

/// Every list's query; each list reads the parameters of its style.
#[derive(Deserialize)]
pub(super) struct ListQuery {
    page: Option<usize>,
    per_page: Option<usize>,
    cursor: Option<String>,
    limit: Option<usize>,
    updated_since: Option<String>,
}

type Answer = Result<Response, ApiError>;

/// `GET /v1/properties?page=N&per_page=M[&updated_since=…]`, `meta` in the body.
pub(super) async fn properties(
    State(api): State<Arc<Shared>>,
    Query(query): Query<ListQuery>,
) -> Answer {
    let since = since(query.updated_since.as_deref())?;
    let (page, per_page) = page_number(query.page, query.per_page)?;
    let data = api.data.read();
    let matching = fresh(&data.properties, since);
    let total = matching.len();
    let skip = (page - 1) * per_page;
    let items: Vec<Value> = matching
        .into_iter()
        .skip(skip)
        .take(per_page)
        .map(to_value)
        .collect();
    let total_pages = total.div_ceil(per_page);
    let meta =
        json!({ "page": page, "per_page": per_page, "total": total, "total_pages": total_pages });
    Ok(Json(json!({ "data": items, "meta": meta })).into_response())
}

/// `GET /v1/tenancies?cursor=…&limit=M[&updated_since=…]`, `next_cursor` in the body.
pub(super) async fn tenancies(
    State(api): State<Arc<Shared>>,
    Query(query): Query<ListQuery>,
) -> Answer {
    let since = since(query.updated_since.as_deref())?;
    let limit = size(query.limit, "limit")?;
    let after = match query.cursor.as_deref().filter(|c| !c.is_empty()) {
        Some(cursor) => Some(decode_cursor(cursor).ok_or_else(|| {
            ApiError::bad_request(
                "invalid cursor: pass next_cursor from the previous page as it is",
            )
        })?),
        None => None,
    };
    let data = api.data.read();
    let rest: Vec<_> = fresh(&data.tenancies, since)
        .into_iter()
        .filter(|t| after.as_deref().is_none_or(|a| t.id.as_str() > a))
        .collect();
    let page = &rest[..limit.min(rest.len())];
    let next = (rest.len() > page.len()).then(|| page.last().map(|t| encode_cursor(&t.id)));
    let items: Vec<Value> = page.iter().map(to_value).collect();
    Ok(Json(json!({ "data": items, "next_cursor": next.flatten() })).into_response())
}

/// `GET /v1/applicants?page=N&per_page=M`: the body is the array, the next page
/// is in `Link: <…>; rel="next"` (absent on the last page).
pub(super) async fn applicants(
    State(api): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<ListQuery>,
) -> Answer {
    let (page, per_page) = page_number(query.page, query.per_page)?;
    let data = api.data.read();
    let items: Vec<Value> = data
        .applicants
        .iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .map(to_value)
        .collect();
    let mut response = Json(items).into_response();
    if page * per_page < data.applicants.len() {
        let host = headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("127.0.0.1");
        let link = format!(
            "<http://{host}/v1/applicants?page={}&per_page={per_page}>; rel=\"next\"",
            page + 1
        );
        if let Ok(link) = link.parse() {
            response.headers_mut().insert(LINK, link);
        }
    }
    Ok(response)
}

pub(super) async fn property(State(api): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    one(&api.data.read().properties, &id, "property")
}

pub(super) async fn tenancy(State(api): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    one(&api.data.read().tenancies, &id, "tenancy")
}

pub(super) async fn applicant(State(api): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    one(&api.data.read().applicants, &id, "applicant")
}

/// The query of `GET /v1/properties/bulk`.
#[derive(Deserialize)]
pub(super) struct BulkQuery {
    ids: Option<String>,
}

/// `GET /v1/properties/bulk?ids=a,b,c`: up to 100 properties in one request;
/// `missing` lists the ids that match none.
pub(super) async fn bulk(
    State(api): State<Arc<Shared>>,
    Query(query): Query<BulkQuery>,
) -> Response {
    let ids: Vec<&str> = query
        .ids
        .as_deref()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if ids.is_empty() || ids.len() > MAX_PAGE {
        return error(
            StatusCode::BAD_REQUEST,
            format!("ids: give 1 to {MAX_PAGE} ids, separated by commas"),
        );
    }
    let data = api.data.read();
    let (mut found, mut missing) = (Vec::new(), Vec::new());
    for id in ids {
        match data.properties.binary_search_by(|p| p.id.as_str().cmp(id)) {
            Ok(i) => found.push(to_value(&data.properties[i])),
            Err(_) => missing.push(id),
        }
    }
    Json(json!({ "data": found, "missing": missing })).into_response()
}

/// One record by primary key (records are kept sorted by it).
fn one<T: Keyed>(records: &[T], id: &str, what: &str) -> Response {
    match records.binary_search_by(|r| r.id().cmp(id)) {
        Ok(i) => Json(to_value(&records[i])).into_response(),
        Err(_) => error(StatusCode::NOT_FOUND, format!("no {what} with id {id}")),
    }
}

/// The records changed at or after `since` (all without it): inclusive, so a
/// client that passes its last sync's start never misses a change.
fn fresh<T: Keyed>(records: &[T], since: Option<Duration>) -> Vec<&T> {
    let changed = |r: &&T| since.is_none_or(|s| Duration::from_secs(r.updated_at()) >= s);
    records.iter().filter(changed).collect()
}

fn since(text: Option<&str>) -> Result<Option<Duration>, ApiError> {
    let Some(text) = text else { return Ok(None) };
    let since = humantime::parse_rfc3339_weak(text)
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok());
    since.map(Some).ok_or_else(|| {
        ApiError::bad_request(format!(
            "updated_since `{text}`: write an RFC 3339 UTC time, like 2024-03-01T12:00:00Z"
        ))
    })
}

/// A 1-based page and its size.
fn page_number(page: Option<usize>, per_page: Option<usize>) -> Result<(usize, usize), ApiError> {
    let page = page.unwrap_or(1);
    if page == 0 {
        return Err(ApiError::bad_request("page: pages are numbered from 1"));
    }
    Ok((page, size(per_page, "per_page")?))
}

fn size(size: Option<usize>, name: &str) -> Result<usize, ApiError> {
    let size = size.unwrap_or(DEFAULT_PAGE);
    if (1..=MAX_PAGE).contains(&size) {
        return Ok(size);
    }
    Err(ApiError::bad_request(format!(
        "{name}: give 1 to {MAX_PAGE}, not {size}"
    )))
}

/// The cursor is the last id of the page, hex-encoded: opaque to clients.
fn encode_cursor(id: &str) -> String {
    id.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_cursor(cursor: &str) -> Option<String> {
    if cursor.len() % 2 != 0 {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..cursor.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(cursor.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}
