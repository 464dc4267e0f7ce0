//! The admin listener: `/healthz`, `/readyz` and `/metrics` for operations, and
//! the admin API under `/admin/`, which needs `Authorization: Bearer <token>`.

mod handlers;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use http::StatusCode;
use subtle::ConstantTimeEq;

use crate::Gateway;
use crate::increase::handlers as increase;

use crate::keys::KeyError;
use crate::problem::Problem;
pub(crate) use handlers::actor;

/// The admin router for `gateway`.
pub fn router(gateway: Gateway) -> Router {
    let admin = Router::new()
        .route("/keys", post(handlers::create_key).get(handlers::list_keys))
        .route(
            "/keys/{id}",
            get(handlers::show_key).delete(handlers::revoke_key),
        )
        .route("/keys/{id}/increments", put(handlers::set_increments))
        .route("/keys/{id}/tier-history", get(handlers::tier_history))
        .route("/blocks", get(handlers::list_blocks))
        .route("/blocks/{id}", delete(handlers::unblock))
        .route("/reload", post(handlers::reload))
        .route("/limit-increase-requests", get(increase::list))
        .route(
            "/limit-increase-requests/{id}/approve",
            post(increase::approve),
        )
        .route(
            "/limit-increase-requests/{id}/decline",
            post(increase::decline),
        )
        .route_layer(middleware::from_fn_with_state(
            gateway.clone(),
            require_token,
        ));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(handlers::ready))
        .route("/metrics", get(handlers::metrics))
        .nest("/admin", admin)
        .with_state(gateway)
}

/// Lets a request through only with the admin token, compared in constant time.
async fn require_token(State(gateway): State<Gateway>, request: Request, next: Next) -> Response {
    let Some(token) = gateway.admin_token.as_deref() else {
        return AdminError::Disabled.into_response();
    };
    let presented = request
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(presented.as_bytes().ct_eq(token.as_bytes())) {
        next.run(request).await
    } else {
        AdminError::BadToken.into_response()
    }
}

/// What can go wrong in the admin API.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// No token configured: the admin API is off.
    #[error(
        "the admin API is disabled: set the token in the variable named by `admin.token_env` and restart"
    )]
    Disabled,
    /// Missing or wrong token.
    #[error("missing or wrong admin token: send `Authorization: Bearer <token>`")]
    BadToken,
    /// No such key.
    #[error("no key has id {0}")]
    UnknownKey(u32),
    /// The request is wrong.
    #[error("{0}")]
    BadRequest(String),
    /// The key database failed.
    #[error("key database: {0}")]
    Keys(KeyError),
}

impl From<KeyError> for AdminError {
    fn from(err: KeyError) -> Self {
        match err {
            KeyError::UnknownKey(id) => AdminError::UnknownKey(id),
            other => AdminError::Keys(other),
        }
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let (status, slug, title) = match &self {
            AdminError::Disabled => (
                StatusCode::SERVICE_UNAVAILABLE,
                "admin-disabled",
                "Admin API disabled",
            ),
            AdminError::BadToken => (
                StatusCode::UNAUTHORIZED,
                "admin-unauthorized",
                "Admin token required",
            ),
            AdminError::UnknownKey(_) => (StatusCode::NOT_FOUND, "unknown-key", "Unknown key"),
            AdminError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad-request", "Bad request"),
            AdminError::Keys(err) if err.is_transient() => (
                StatusCode::SERVICE_UNAVAILABLE,
                "key-database",
                "Key database unavailable",
            ),
            AdminError::Keys(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "key-database",
                "Key database error",
            ),
        };
        Problem::new(status, slug, title, self.to_string()).into_response()
    }
}
