//! The provider's push notifications (webhooks): each event, once it is shown
//! to come from the provider, now, and for the first time, changes the stored
//! record it names, so the data stays fresh between polls.
//!
//! An event is refused, and nothing is written, when
//!
//! * its signature ([`verify`]) does not match the source's secret;
//! * its signed timestamp is further from now than the source's `tolerance`
//!   (a captured event replayed later);
//! * its id was applied before (a replay inside the window; the ids are kept
//!   in the storage layer, so a restart forgets none);
//! * its body is not what the configuration maps (`[sources.events]`).
//!
//! What it is not: a queue. An event is applied when it arrives, in the order
//! events arrive; polling (less often, see [`crate::schedule`]) still brings
//! back anything an event missed.

mod apply;
mod signature;

use std::time::Duration;

use http::{HeaderMap, StatusCode};
use serde::Serialize;
use serde_json::Value;
use tollgate_sql::{EventClaim, Storage, StorageError};

use crate::config::{EventAction, Source};

pub use signature::{sign, verify};

/// An accepted event, as the endpoint answers it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Received {
    /// The provider's event id.
    pub event: String,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: String,
    /// What it changed; `None` when no mapping names its type (nothing to do).
    pub applied: Option<Applied>,
}

/// The change an event made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Applied {
    /// The resource.
    pub resource: String,
    /// `upsert` or `delete`.
    pub action: &'static str,
    /// The record's primary key.
    pub id: String,
    /// `inserted`, `updated`, `unchanged`, `deleted` or `not_stored` (a
    /// delete of a record that was not stored).
    pub change: &'static str,
}

/// Why an event was refused. Nothing was written for any of them.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// The source takes no events.
    #[error("source `{0}` takes no events: add a [sources.events] table to its configuration")]
    NotConfigured(String),
    /// The signing secret cannot be read (the operator's mistake, not the provider's).
    #[error("{0}")]
    Secret(String),
    /// A header the signature needs is missing.
    #[error("no `{0}` header: events must be signed over `<timestamp>.<body>`")]
    Unsigned(String),
    /// The signature does not match.
    #[error(
        "the `{0}` signature does not match this event: it must be `sha256=<hex>`, the HMAC-SHA256 of `<timestamp>.<body>` with the source's secret"
    )]
    BadSignature(String),
    /// The signed timestamp is not unix seconds.
    #[error("`{header}` is `{value}`, not a time in unix seconds")]
    BadTimestamp {
        /// The timestamp header.
        header: String,
        /// What it held.
        value: String,
    },
    /// The signed timestamp is too far from now.
    #[error(
        "the event was signed at {signed_at_s} and received at {now_s} (unix s), {off_s} s apart; events signed more than {tolerance_s} s from now are refused: check both clocks, and that the event is not a replay"
    )]
    Stale {
        /// The signed instant, unix seconds.
        signed_at_s: i64,
        /// Now, unix seconds.
        now_s: i64,
        /// How far apart, in whole seconds.
        off_s: u64,
        /// The tolerance, in seconds.
        tolerance_s: u64,
    },
    /// The body is not an event of the configured shape.
    #[error("{0}")]
    Malformed(String),
    /// The event was applied before.
    #[error("event `{0}` was already received: a replay changes nothing")]
    Replayed(String),
    /// The storage layer failed.
    #[error("the storage layer cannot take the event: {0}")]
    Storage(#[from] StorageError),
}

impl Refused {
    /// The answer's status: 401 for what does not prove it comes from the
    /// provider now (signature, stale timestamp), 400 for a body or timestamp
    /// that makes no sense, 409 for a replay, 404 for a source without events,
    /// 503 for what the provider should retry later.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotConfigured(_) => StatusCode::NOT_FOUND,
            Self::Unsigned(_) | Self::BadSignature(_) | Self::Stale { .. } => {
                StatusCode::UNAUTHORIZED
            }
            Self::BadTimestamp { .. } | Self::Malformed(_) => StatusCode::BAD_REQUEST,
            Self::Replayed(_) => StatusCode::CONFLICT,
            Self::Secret(_) | Self::Storage(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The problem type's slug (`https://tollgate.dev/problems/<slug>`).
    pub fn slug(&self) -> &'static str {
        match self {
            Self::NotConfigured(_) => "no-events",
            Self::Unsigned(_) | Self::BadSignature(_) => "bad-signature",
            Self::Stale { .. } => "stale-event",
            Self::BadTimestamp { .. } | Self::Malformed(_) => "malformed-event",
            Self::Replayed(_) => "replayed-event",
            Self::Secret(_) => "events-unavailable",
            Self::Storage(_) => "storage-unavailable",
        }
    }
}

/// Checks an event sent to `source` (its headers and raw body) at `now_ms`
/// and applies it to `storage`.
pub async fn receive(
    source: &Source,
    storage: &Storage,
    headers: &HeaderMap,
    body: &[u8],
    now_ms: i64,
) -> Result<Received, Refused> {
    let Some(events) = &source.events else {
        return Err(Refused::NotConfigured(source.name.clone()));
    };
    let signed_at_ms = authenticate(source, headers, body, now_ms)?;
    let event: Value = serde_json::from_slice(body)
        .map_err(|e| Refused::Malformed(format!("the body is not JSON: {e}")))?;
    let id = apply::text_at(&event, &events.id, "the event id")?;
    let kind = apply::text_at(&event, &events.kind, "the event type")?;
    let Some(mapping) = events.map.iter().find(|m| m.kind == kind) else {
        tracing::info!(source = %source.name, event = %id, %kind, "event of a type no mapping names: nothing to do");
        return Ok(Received {
            event: id,
            kind,
            applied: None,
        });
    };
    let change = apply::change(source, mapping, &event, now_ms)?;
    let claim = EventClaim {
        source: &source.name,
        id: &id,
        signed_at_ms,
        received_at_ms: now_ms,
    };
    // A copy of an event signed before this would be refused as stale.
    let forget_before = now_ms - millis(events.tolerance);
    if !storage.claim_event(claim, forget_before).await? {
        return Err(Refused::Replayed(id));
    }
    let applied = match apply::apply(storage, &mapping.resource, change).await {
        Ok(applied) => applied,
        Err(err) => {
            // Give the id back: the provider's next delivery must be applied.
            if let Err(release) = storage.release_event(&source.name, &id).await {
                tracing::error!(source = %source.name, event = %id, %release, "the event was not applied and its id stays claimed: its next delivery will be refused as a replay");
            }
            return Err(err.into());
        }
    };
    tracing::info!(source = %source.name, event = %id, %kind, resource = %applied.resource, action = applied.action, record = %applied.id, change = applied.change, "event applied");
    Ok(Received {
        event: id,
        kind,
        applied: Some(applied),
    })
}

/// Checks the signature, then the signed timestamp; returns the latter in ms.
fn authenticate(
    source: &Source,
    headers: &HeaderMap,
    body: &[u8],
    now_ms: i64,
) -> Result<i64, Refused> {
    let events = source.events.as_ref().expect("checked by the caller");
    let secret = events
        .secret
        .read(&format!("the webhook secret of source `{}`", source.name))
        .map_err(Refused::Secret)?;
    let header = |name: &http::HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Refused::Unsigned(name.to_string()))
    };
    let signature = header(&events.signature_header)?;
    let timestamp = header(&events.timestamp_header)?;
    if !verify(secret.as_bytes(), timestamp, body, signature) {
        return Err(Refused::BadSignature(events.signature_header.to_string()));
    }
    let signed_at_s: i64 = timestamp
        .trim()
        .parse()
        .ok()
        .filter(|s| (0..i64::MAX / 1000).contains(s))
        .ok_or_else(|| Refused::BadTimestamp {
            header: events.timestamp_header.to_string(),
            value: timestamp.to_owned(),
        })?;
    let signed_at_ms = signed_at_s * 1000;
    let off_ms = (now_ms - signed_at_ms).unsigned_abs();
    if off_ms > u64::try_from(events.tolerance.as_millis()).unwrap_or(u64::MAX) {
        return Err(Refused::Stale {
            signed_at_s,
            now_s: now_ms.div_euclid(1000),
            off_s: off_ms / 1000,
            tolerance_s: events.tolerance.as_secs(),
        });
    }
    Ok(signed_at_ms)
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

/// The action's name, as answered and logged.
fn action_name(action: EventAction) -> &'static str {
    match action {
        EventAction::Upsert => "upsert",
        EventAction::Delete => "delete",
    }
}
