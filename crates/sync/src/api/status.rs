//! `/status`: how fresh each resource is, and how each source is doing.

use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::ApiState;

pub(super) async fn status(State(state): State<ApiState>) -> Json<Value> {
    let now = i64::try_from(state.clock.now().as_millis()).unwrap_or(i64::MAX);
    let states = state.storage.resource_states().await.unwrap_or_default();
    let resources: Vec<Value> = states
        .iter()
        .filter(|s| s.scope.is_empty())
        .map(|s| {
            json!({
                "resource": s.resource,
                "last_success_ms": s.last_success_ms,
                "staleness_s": s.last_success_ms.map(|t| (now - t).max(0) / 1000),
                "last_duration_ms": s.last_duration_ms,
                "last_records": s.last_records,
                "last_error": s.last_error,
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
