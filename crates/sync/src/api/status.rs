//! `/status`: how fresh each resource is, and how each source is doing.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::ApiState;

pub(super) async fn status(State(state): State<ApiState>) -> Json<Value> {
    let now = i64::try_from(state.clock.now().as_millis()).unwrap_or(i64::MAX);
    let states = state.storage.resource_states().await.unwrap_or_default();
    // A fan-out's runs are kept per parent: its scopes are folded into one row
    // (the oldest success, the latest error), as on the status page.
    let resources: Vec<Value> = super::page::rows(&state, &states)
        .into_iter()
        .map(|row| {
            json!({
                "resource": row.resource,
                "scopes": row.scopes,
                "last_success_ms": row.last_success_ms,
                "staleness_s": row.last_success_ms.map(|t| (now - t).max(0) / 1000),
                "last_duration_ms": row.last_duration_ms,
                "last_records": row.last_records,
                "last_error": row.last_error.map(|(error, _)| error),
            })
        })
        .collect();
    let sources: Vec<Value> = state
        .daemon
        .sources
        .iter()
        .map(|ctx| {
            json!({
                "source": ctx.source.name,
                "requests": ctx.stats.requests.load(Ordering::Relaxed),
                "rejected_429": ctx.stats.rejected_429.load(Ordering::Relaxed),
                "failures": ctx.stats.failures.load(Ordering::Relaxed),
                "forbidden": ctx.stats.forbidden.load(Ordering::Relaxed),
                "budget": ctx.pacer.budget().iter().map(ToString::to_string).collect::<Vec<_>>(),
                "paused_until_ms": ctx.pacer.paused_until().map(|t| t.as_millis()),
            })
        })
        .collect();
    Json(json!({ "resources": resources, "sources": sources }))
}
