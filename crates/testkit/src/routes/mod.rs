//! The example API's routes.

mod property;
mod rtc;
mod submit;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::api::Shared;
use crate::endpoint::Endpoint;
use crate::pipeline;

/// Every route, behind the pipeline (outage, keys, limits, strict mode, faults,
/// ETags, the request log).
pub(crate) fn router(api: Arc<Shared>) -> Router {
    use Endpoint as E;
    Router::new()
        .route(E::ChannelList.route(), get(rtc::channels))
        .route(E::ChannelUsers.route(), get(rtc::channel_users))
        .route(E::Properties.route(), get(property::properties))
        .route(E::Property.route(), get(property::property))
        .route(E::PropertiesBulk.route(), get(property::bulk))
        .route(E::Tenancies.route(), get(property::tenancies))
        .route(E::Tenancy.route(), get(property::tenancy))
        .route(E::Applicants.route(), get(property::applicants))
        .route(E::Applicant.route(), get(property::applicant))
        .route(
            E::TenancyApplications.route(),
            post(submit::tenancy_application),
        )
        .route(E::Appointments.route(), post(submit::appointment))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "no such endpoint") })
        .layer(from_fn_with_state(Arc::clone(&api), pipeline::guard))
        .with_state(api)
}

/// An error answer: `{"error": message}`.
pub(crate) fn error(status: StatusCode, message: impl Into<String>) -> Response {
    ApiError::new(status, message).into_response()
}

/// A request the API refuses, and why: answered as `{"error": message}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        let message = message.into();
        Self { status, message }
    }

    /// A `400`: the client's mistake, with what to send instead.
    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}
