//! The limiter answers `429` at exactly N+1, with `Retry-After`, and advertises
//! its limits in the configured style (or not at all).

use std::time::Duration;

use tollgate_core::{Quota, Rate};
use tollgate_testkit::{Endpoint, ExampleApi, HeaderStyle, Limits};

use crate::support::{KEY, client, get, get_as, manual_clock, read, spawn};

#[tokio::test]
async fn the_fifty_first_request_in_a_rolling_minute_gets_429_with_retry_after() {
    let (clock, shared) = manual_clock();
    let api = spawn(ExampleApi::builder().clock(shared)).await;
    for n in 0..50 {
        let answer = get(&api, "/v1/properties/prop-00001").await;
        assert_eq!(answer.status, 200, "request {}", n + 1);
        let state = format!("\"per-key\";r={};t=", 49 - n);
        assert!(answer.header("ratelimit").unwrap().starts_with(&state));
        if n < 49 {
            clock.advance(Duration::from_millis(100));
        }
    }
    let limited = get(&api, "/v1/properties/prop-00001").await;
    assert_eq!(limited.status, 429);
    // The first slot returns 60 s after it was used: 4.9 s have passed.
    assert_eq!(limited.header("retry-after"), Some("56"));
    assert_eq!(limited.body["retry_after_ms"], 55_100);
    assert_eq!(limited.body["limits"], serde_json::json!(["per-key"]));
    clock.advance(Duration::from_millis(55_099));
    assert_eq!(get(&api, "/v1/properties/prop-00001").await.status, 429);
    clock.advance(Duration::from_millis(1));
    assert_eq!(get(&api, "/v1/properties/prop-00001").await.status, 200);
    // Not strict: the request 1 ms before the told instant was early, and so was
    // the last one (the second 429 said `Retry-After: 1`), but nobody is blocked.
    let stats = api.handle.stats(KEY);
    assert_eq!((stats.requests, stats.limited, stats.early), (53, 2, 2));
    assert!(api.handle.blocked_keys().is_empty());
    assert_eq!(
        api.handle.max_in_any_window(KEY, Duration::from_secs(60)),
        52
    );
    // Another key has its own budget.
    assert_eq!(
        get_as(&api, "other-key", "/v1/properties/prop-00001")
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn the_user_list_allows_twenty_a_second_on_top_of_the_per_key_limit() {
    let (clock, shared) = manual_clock();
    let api = spawn(ExampleApi::builder().clock(shared)).await;
    let path = "/dev/v1/channel/user/demo-app/lobby-000";
    for _ in 0..20 {
        assert_eq!(get(&api, path).await.status, 200);
    }
    let limited = get(&api, path).await;
    assert_eq!(limited.status, 429);
    assert_eq!(limited.header("retry-after"), Some("1"));
    assert_eq!(
        limited.header("ratelimit-policy"),
        Some("\"per-key\";q=50;w=60, \"channel-users\";q=20;w=1")
    );
    assert_eq!(
        limited.header("ratelimit"),
        Some("\"per-key\";r=30;t=60, \"channel-users\";r=0;t=1")
    );
    // Other endpoints still answer within the per-key limit.
    assert_eq!(get(&api, "/v1/properties/prop-00001").await.status, 200);
    clock.advance(Duration::from_secs(1));
    assert_eq!(get(&api, path).await.status, 200);
}

#[tokio::test]
async fn headers_follow_the_configured_style_or_say_nothing() {
    let (_clock, shared) = manual_clock();
    let one_a_minute = Limits::per_key(Quota::rolling(Rate::per_minute(1)));
    let builder = |style| {
        ExampleApi::builder()
            .clock(shared.clone())
            .limits(one_a_minute.clone())
            .headers(style)
    };

    let x = spawn(builder(HeaderStyle::XRateLimit)).await;
    let ok = get(&x, "/v1/applicants").await;
    assert_eq!(ok.header("x-ratelimit-limit"), Some("1"));
    assert_eq!(ok.header("x-ratelimit-remaining"), Some("0"));
    assert_eq!(ok.header("x-ratelimit-reset"), Some("60"));
    assert_eq!(ok.header("ratelimit"), None);

    let silent = spawn(builder(HeaderStyle::None).retry_after(false)).await;
    let ok = get(&silent, "/v1/applicants").await;
    let limited = get(&silent, "/v1/applicants").await;
    assert_eq!(limited.status, 429);
    for answer in [&ok, &limited] {
        let names: Vec<&str> = answer.headers.keys().map(|k| k.as_str()).collect();
        assert!(
            names
                .iter()
                .all(|n| !n.contains("ratelimit") && *n != "retry-after"),
            "{names:?}"
        );
    }
    assert!(limited.body.get("retry_after_ms").is_none());
}

#[tokio::test]
async fn keys_come_from_x_api_key_or_bearer_and_unknown_ones_get_401() {
    let api = spawn(
        ExampleApi::builder()
            .key("demo-key-00001")
            .limits(Limits::none()),
    )
    .await;
    let bearer = client()
        .get(api.url("/v1/applicants"))
        .bearer_auth("demo-key-00001")
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status(), 200);
    assert_eq!(
        get_as(&api, "demo-key-00001", "/v1/applicants")
            .await
            .status,
        200
    );
    assert_eq!(
        get_as(&api, "demo-key-99999", "/v1/applicants")
            .await
            .status,
        401
    );
    let anonymous = read(
        client()
            .get(api.url("/v1/applicants"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(anonymous.status, 401);
    assert!(
        anonymous.body["error"]
            .as_str()
            .unwrap()
            .contains("X-Api-Key")
    );
    assert_eq!(
        get_as(&api, "demo-key-00001", "/v1/nothing").await.status,
        404
    );
    let endpoints: Vec<_> = api.handle.log().iter().map(|e| e.endpoint).collect();
    assert_eq!(endpoints[..2], [Some(Endpoint::Applicants); 2]);
    assert_eq!(endpoints[4], None);
}
