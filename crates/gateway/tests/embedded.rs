//! The layer inside someone else's axum app, driven with `oneshot`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{Request, StatusCode};
use tollgate_core::{Endpoints, ManualClock, Policy, PolicySet, Quota, Rate, Scope, Timestamp};
use tollgate_gateway::layer::{RateLimitLayer, ResolvedKey};
use tower::ServiceExt;

fn app(clock: &ManualClock) -> Router {
    let policies = PolicySet::new(vec![Policy {
        name: "per-key".into(),
        scope: Scope::PerKey,
        quota: Quota::rolling(Rate::per_minute(2)),
        endpoints: Endpoints::All,
        tier_step: None,
    }]);
    let keys = |k: &str| {
        (k == "embedded-key-000000").then_some(ResolvedKey {
            id: 7,
            increments: 0,
        })
    };
    let layer = RateLimitLayer::builder(policies, keys)
        .clock(Arc::new(clock.clone()))
        .build();
    Router::new()
        .route("/hello", get(|| async { "hello" }))
        .layer(layer)
}

fn request() -> Request<Body> {
    Request::get("/hello")
        .header("x-api-key", "embedded-key-000000")
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn an_axum_app_gets_the_same_enforcement_in_a_few_lines() {
    let clock = ManualClock::new(Timestamp::from_secs(1_000));
    let app = app(&clock);
    for remaining in ["1", "0"] {
        let response = app.clone().oneshot(request()).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let state = response.headers()["ratelimit"].to_str().unwrap();
        assert_eq!(state, format!("\"per-key\";r={remaining};t=60"));
    }
    let limited = app.clone().oneshot(request()).await.unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.headers()["retry-after"], "60");
    let anonymous = Request::get("/hello").body(Body::empty()).unwrap();
    assert_eq!(
        app.clone().oneshot(anonymous).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    clock.advance(Duration::from_secs(60));
    assert_eq!(
        app.oneshot(request()).await.unwrap().status(),
        StatusCode::OK
    );
}
