//! Strict mode blocks a key that comes back before it was told, and never one
//! that waited `Retry-After`.

use std::time::Duration;

use tollgate_core::{Quota, Rate, Timestamp};
use tollgate_testkit::{ExampleApi, ExampleApiBuilder, Limits};

use crate::support::{get_as, manual_clock, spawn};

const PATH: &str = "/v1/properties/prop-00001";

fn strict(shared: std::sync::Arc<dyn tollgate_core::Clock>) -> ExampleApiBuilder {
    let two_a_minute = Limits::per_key(Quota::rolling(Rate::per_minute(2)));
    ExampleApi::builder()
        .clock(shared)
        .limits(two_a_minute)
        .strict(true)
        .strict_block(Duration::from_secs(300))
}

#[tokio::test]
async fn a_request_before_the_told_instant_blocks_the_key_at_once() {
    let (clock, shared) = manual_clock();
    let start = clock.now();
    let api = spawn(strict(shared)).await;
    assert_eq!(get_as(&api, "eager", PATH).await.status, 200);
    assert_eq!(get_as(&api, "eager", PATH).await.status, 200);
    let limited = get_as(&api, "eager", PATH).await;
    assert_eq!(
        (limited.status.as_u16(), limited.header("retry-after")),
        (429, Some("60"))
    );
    clock.advance(Duration::from_secs(59));
    let blocked = get_as(&api, "eager", PATH).await;
    assert_eq!(blocked.status, 403);
    assert_eq!(
        blocked.body,
        serde_json::json!({ "error": "abnormal usage" })
    );
    assert_eq!(api.handle.blocked_keys(), ["eager"]);
    let event = &api.handle.block_events()[0];
    assert_eq!(
        (event.told_until, event.until),
        (
            start + Duration::from_secs(60),
            clock.now() + Duration::from_secs(300)
        )
    );
    // Blocked for the whole block, even after its slots came back.
    clock.advance(Duration::from_secs(299));
    assert_eq!(get_as(&api, "eager", PATH).await.status, 403);
    clock.advance(Duration::from_secs(1));
    assert_eq!(get_as(&api, "eager", PATH).await.status, 200);
    let stats = api.handle.stats("eager");
    assert_eq!(
        (stats.requests, stats.limited, stats.early, stats.forbidden),
        (6, 1, 1, 2)
    );
}

#[tokio::test]
async fn a_client_that_waits_retry_after_is_never_blocked() {
    let (clock, shared) = manual_clock();
    let api = spawn(strict(shared)).await;
    for _ in 0..3 {
        assert_eq!(get_as(&api, "patient", PATH).await.status, 200);
        clock.advance(Duration::from_millis(700));
        assert_eq!(get_as(&api, "patient", PATH).await.status, 200);
        clock.advance(Duration::from_millis(300));
        // The first slot returns 60 s after it was used: in exactly 59 s.
        assert_eq!(wait_told(&api).await, 59);
        clock.advance(Duration::from_secs(59));
        assert_eq!(get_as(&api, "patient", PATH).await.status, 200);
        // The second slot returns in 0.7 s: told 1 s, rounded up.
        assert_eq!(wait_told(&api).await, 1);
        clock.advance(Duration::from_secs(1));
        assert_eq!(get_as(&api, "patient", PATH).await.status, 200);
        clock.advance(Duration::from_secs(61));
    }
    assert!(api.handle.blocked_keys().is_empty());
    assert_eq!(api.handle.stats("patient").early, 0);
    assert_eq!(
        api.handle
            .max_in_any_window("patient", Duration::from_secs(60)),
        4
    );
}

#[tokio::test]
async fn without_retry_after_the_key_must_wait_the_whole_window() {
    let (clock, shared) = manual_clock();
    let api = spawn(strict(shared).retry_after(false)).await;
    assert_eq!(get_as(&api, "k", PATH).await.status, 200);
    clock.advance(Duration::from_secs(30));
    assert_eq!(get_as(&api, "k", PATH).await.status, 200);
    assert_eq!(get_as(&api, "k", PATH).await.status, 429);
    // The first slot is back after 30 s, but the client was told nothing, and
    // the documented wait is the window: 60 s.
    clock.advance(Duration::from_secs(30));
    assert_eq!(get_as(&api, "early", PATH).await.status, 200);
    assert_eq!(get_as(&api, "k", PATH).await.status, 403);
    assert_eq!(api.handle.blocked_keys(), ["k"]);
    assert!(api.handle.unblock("k"));
    assert_eq!(get_as(&api, "k", PATH).await.status, 200);
    assert_eq!(
        api.handle.block_events()[0].told_until,
        Timestamp::from_secs(1_700_000_090)
    );
}

/// A request that must be limited, and the `Retry-After` it got.
async fn wait_told(api: &tollgate_testkit::RunningApi) -> u64 {
    let limited = get_as(api, "patient", PATH).await;
    assert_eq!(limited.status, 429, "{:?}", limited.body);
    limited.header("retry-after").unwrap().parse().unwrap()
}
