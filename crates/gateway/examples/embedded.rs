//! Enforcement inside your own axum service, without a separate proxy.
//!
//! ```sh
//! cargo run -p tollgate-gateway --example embedded
//! curl -i -H 'X-Api-Key: demo-key-0000000000000' http://127.0.0.1:3000/hello
//! ```
//!
//! Every response carries `RateLimit-Policy` and `RateLimit`; the sixth request
//! within 60 s gets `429` with `Retry-After`, and hammering after that, `403`.

use axum::Router;
use axum::routing::get;
use tollgate_core::{Endpoints, Policy, PolicySet, Quota, Rate, Scope};
use tollgate_gateway::layer::{RateLimitLayer, ResolvedKey};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let policies = PolicySet::new(vec![Policy {
        name: "per-key".into(),
        scope: Scope::PerKey,
        quota: Quota::rolling(Rate::per_minute(5)),
        endpoints: Endpoints::All,
        tier_step: None,
    }]);
    // Your own key lookup: it runs on every request, so keep it in memory.
    let keys = |presented: &str| {
        (presented == "demo-key-0000000000000").then_some(ResolvedKey {
            id: 1,
            increments: 0,
        })
    };
    let app = Router::new()
        .route("/hello", get(|| async { "hello\n" }))
        .layer(RateLimitLayer::builder(policies, keys).build());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://127.0.0.1:3000/hello");
    axum::serve(listener, app).await
}
