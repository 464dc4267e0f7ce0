//! Faults and the outage switch, deterministic by seed and toggled at runtime.

use std::time::Duration;

use tollgate_testkit::{Endpoint, ExampleApi, Fault, Faults, Limits};

use crate::support::{KEY, client, get, spawn, unlimited};

const PATH: &str = "/v1/properties?page=1";

#[tokio::test]
async fn the_outage_switch_answers_503_until_turned_off() {
    let api = spawn(unlimited()).await;
    api.handle.set_outage(true);
    assert!(api.handle.outage());
    assert_eq!(get(&api, PATH).await.status, 503);
    assert_eq!(get(&api, "/dev/v1/channel/demo-app").await.status, 503);
    api.handle.set_outage(false);
    assert_eq!(get(&api, PATH).await.status, 200);
    let faults: Vec<_> = api.handle.log().iter().map(|e| e.fault).collect();
    assert_eq!(faults, [Some(Fault::Outage), Some(Fault::Outage), None]);
}

#[tokio::test]
async fn each_fault_does_what_it_says_and_clears() {
    let api = spawn(unlimited()).await;
    api.handle.set_faults(Faults::none().internal_errors(1.0));
    assert_eq!(get(&api, PATH).await.status, 500);
    api.handle.set_faults(Faults::none().unavailable(1.0));
    assert_eq!(get(&api, PATH).await.status, 503);
    api.handle.set_faults(Faults::none().garbage(1.0));
    let garbage = client()
        .get(api.url(PATH))
        .header("X-Api-Key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), 200);
    assert!(garbage.json::<serde_json::Value>().await.is_err());

    api.handle
        .set_faults(Faults::none().slow(1.0, Duration::from_millis(400)));
    let impatient = client()
        .get(api.url(PATH))
        .header("X-Api-Key", KEY)
        .timeout(Duration::from_millis(100));
    assert!(impatient.send().await.unwrap_err().is_timeout());

    api.handle.set_faults(Faults::none().resets(1.0));
    let reset = client()
        .get(api.url(PATH))
        .header("X-Api-Key", KEY)
        .send()
        .await
        .unwrap_err();
    assert!(!reset.is_timeout(), "{reset:?}");

    api.handle.clear_faults();
    assert_eq!(get(&api, PATH).await.status, 200);
    let log = api.handle.log();
    let seen: Vec<_> = log.iter().map(|e| (e.fault, e.status)).collect();
    let expected = [
        (Some(Fault::InternalError), Some(500)),
        (Some(Fault::Unavailable), Some(503)),
        (Some(Fault::Garbage), Some(200)),
        (Some(Fault::Slow), Some(200)),
        (Some(Fault::Reset), None),
        (None, Some(200)),
    ];
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn faults_are_the_same_for_the_same_seed_and_apply_per_endpoint() {
    let statuses = |seed| async move {
        let builder = ExampleApi::builder().seed(seed).limits(Limits::none());
        let api = spawn(
            builder.endpoint_faults(Endpoint::Properties, Faults::none().internal_errors(0.3)),
        )
        .await;
        let mut statuses = Vec::new();
        for _ in 0..40 {
            statuses.push(get(&api, PATH).await.status.as_u16());
            assert_eq!(get(&api, "/v1/applicants").await.status, 200);
        }
        statuses
    };
    let (a, b, c) = (statuses(11).await, statuses(11).await, statuses(12).await);
    assert_eq!(a, b);
    assert_ne!(a, c);
    let errors = a.iter().filter(|s| **s == 500).count();
    assert!((4..=20).contains(&errors), "{errors} of 40");
}
