//! The real-time communication platform: channels and their users, shaped like
//! Agora's online channel statistics (`{"success": true, "data": …}`).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::api::Shared;
use crate::data::Channel;

/// The channel list's query: 0-based `page_no`, `page_size` up to 500.
#[derive(Deserialize)]
pub(super) struct ChannelPage {
    page_no: Option<usize>,
    page_size: Option<usize>,
}

pub(super) async fn channels(
    State(api): State<Arc<Shared>>,
    Path(app_id): Path<String>,
    Query(query): Query<ChannelPage>,
) -> Response {
    if app_id != api.app_id {
        return failure(StatusCode::NOT_FOUND, "invalid appid");
    }
    let page_size = query.page_size.unwrap_or(100);
    if !(1..=500).contains(&page_size) {
        return failure(StatusCode::BAD_REQUEST, "page_size must be from 1 to 500");
    }
    let skip = query.page_no.unwrap_or(0).saturating_mul(page_size);
    let data = api.data.read();
    let page: Vec<Value> = data
        .channels
        .iter()
        .skip(skip)
        .take(page_size)
        .map(Channel::list_item)
        .collect();
    let body = json!({ "channels": page, "total_size": data.channels.len() });
    Json(json!({ "success": true, "data": body })).into_response()
}

pub(super) async fn channel_users(
    State(api): State<Arc<Shared>>,
    Path((app_id, name)): Path<(String, String)>,
) -> Response {
    if app_id != api.app_id {
        return failure(StatusCode::NOT_FOUND, "invalid appid");
    }
    let data = api.data.read();
    let users = match data.channels.iter().find(|c| c.name == name) {
        Some(channel) => channel.users_data(),
        None => json!({ "channel_exist": false }),
    };
    Json(json!({ "success": true, "data": users })).into_response()
}

fn failure(status: StatusCode, message: &str) -> Response {
    (
        status,
        Json(json!({ "success": false, "message": message })),
    )
        .into_response()
}
