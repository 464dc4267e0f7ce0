//! The read API: your application reads the storage layer here instead of
//! calling the provider, and sees how fresh each answer is.
//!
//! * `GET /v1/{resource}?after=&limit=&field=&value=` — records, by primary key,
//!   filtered on one field; `next` gives the `after` of the following page;
//! * `GET /v1/{resource}/{id}` — one record;
//! * `GET /status` — per resource and source: last success, staleness, errors,
//!   requests, 429s;
//! * `POST /v1/sources/{source}/events` — the provider's push notifications,
//!   signed, applied to the stored records ([`crate::events`]);
//! * `POST /v1/sources/{source}/submit/{path…}` — a request for the provider,
//!   stored and answered `202 Accepted` at once, then delivered by the outbox
//!   inside the source's budget; `GET /v1/outbox/{id}` says how it went
//!   ([`crate::outbox`]);
//! * `GET /` (also `/status.html`) — the same as a page for a person, with each
//!   source's budget use over time as an inline SVG chart ([`page`]).
//!
//! Every record answer carries `Age` (seconds since the oldest record in it was
//! fetched) and the fetch times themselves.

mod events;
mod outbox;
pub mod page;
mod records;
mod status;

use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use tollgate_core::Clock;
use tollgate_sql::Storage;

use crate::daemon::Daemon;

/// What the handlers share.
#[derive(Clone)]
pub struct ApiState {
    /// The storage layer.
    pub storage: Storage,
    /// The daemon's sources (their counters).
    pub daemon: Arc<Daemon>,
    /// Now.
    pub clock: Arc<dyn Clock>,
    /// The resources that exist, by name (anything else is 404 without a query).
    pub resources: Arc<Vec<String>>,
}

/// The read API's router. Starts the status page's sampling task when called
/// inside a tokio runtime; it ends when the router is dropped.
pub fn router(state: ApiState) -> Router {
    let page_state = page::PageState {
        history: page::History::start(&state),
        api: state.clone(),
    };
    let page = Router::new()
        .route("/", get(page::page))
        .route("/status.html", get(page::page))
        .with_state(page_state);
    Router::new()
        .route("/status", get(status::status))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/v1/{resource}", get(records::list))
        .route("/v1/{resource}/{id}", get(records::one))
        .route("/v1/sources/{source}/submit/{*path}", post(outbox::submit))
        .route("/v1/outbox", get(outbox::list))
        .route("/v1/outbox/{id}", get(outbox::one).delete(outbox::cancel))
        .route("/v1/sources/{source}/events", post(events::receive))
        .with_state(state)
        .merge(page)
}
