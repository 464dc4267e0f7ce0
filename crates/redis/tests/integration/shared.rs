//! `SharedSlots`: one client budget for several processes, each with its own
//! connection, on an injected clock.

use std::time::Duration;

use tollgate_core::{Rate, Timestamp};
use tollgate_redis::{SharedLimit, SharedSlots};

use crate::support::{Rng, cleanup, store, unique_prefix};

const T0: Timestamp = Timestamp::from_secs(1_800_000_000);
const TIMEOUT: Duration = Duration::from_secs(5);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

async fn processes(prefix: &str, n: usize) -> Vec<SharedSlots> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(store(prefix).await.shared_slots("crm-key"));
    }
    out
}

#[tokio::test]
async fn a_slot_is_held_from_the_send_until_a_window_after_the_answer_across_processes() {
    let prefix = unique_prefix("shared-hold");
    let [a, b] = <[SharedSlots; 2]>::try_from(processes(&prefix, 2).await).unwrap();
    // 2 per 10 s: one send every 5 s at most.
    let limits = [SharedLimit {
        label: "budget.0",
        rate: Rate::new(2, Duration::from_secs(10)),
    }];
    assert_eq!(a.take_at("a1", &limits, TIMEOUT, T0).await.unwrap(), None);
    // The other process sees the spacing of the first.
    assert_eq!(
        b.take_at("b1", &limits, TIMEOUT, T0 + ms(1_000))
            .await
            .unwrap(),
        Some(ms(4_000))
    );
    assert_eq!(
        b.take_at("b1", &limits, TIMEOUT, T0 + ms(5_000))
            .await
            .unwrap(),
        None
    );
    // Both in flight: the first slot returns at the latest 5 s (timeout) + 10 s after its send.
    assert_eq!(
        a.take_at("a2", &limits, TIMEOUT, T0 + ms(10_000))
            .await
            .unwrap(),
        Some(ms(5_000))
    );
    // Its answer came at 400 ms: it returns at 10.4 s.
    a.done_at("a1", &limits, T0 + ms(400)).await.unwrap();
    assert_eq!(
        a.take_at("a2", &limits, TIMEOUT, T0 + ms(10_000))
            .await
            .unwrap(),
        Some(ms(400))
    );
    assert_eq!(
        a.take_at("a2", &limits, TIMEOUT, T0 + ms(10_400))
            .await
            .unwrap(),
        None
    );
    // A late answer never lengthens a slot beyond its provisional hold... and
    // a second `done` for the same request does not take a slot again.
    a.done_at("a1", &limits, T0 + ms(20_000)).await.unwrap();
    cleanup(&prefix).await;
}

#[tokio::test]
async fn a_pause_holds_every_process_until_the_retry_instant() {
    let prefix = unique_prefix("shared-pause");
    let [a, b] = <[SharedSlots; 2]>::try_from(processes(&prefix, 2).await).unwrap();
    let limits = [SharedLimit {
        label: "budget.0",
        rate: Rate::per_second(100),
    }];
    let until = a.pause_at(ms(60_000), T0).await.unwrap();
    assert_eq!(until, T0 + ms(60_000));
    // A shorter pause never shortens it.
    assert_eq!(
        b.pause_at(ms(1_000), T0 + ms(10)).await.unwrap(),
        T0 + ms(60_000)
    );
    assert_eq!(
        b.take_at("b1", &limits, TIMEOUT, T0 + ms(59_999))
            .await
            .unwrap(),
        Some(ms(1))
    );
    assert_eq!(
        b.take_at("b1", &limits, TIMEOUT, T0 + ms(60_000))
            .await
            .unwrap(),
        None
    );
    cleanup(&prefix).await;
}

#[tokio::test]
async fn an_endpoint_limit_and_the_key_budget_are_taken_together_or_not_at_all() {
    let prefix = unique_prefix("shared-both");
    let [a] = <[SharedSlots; 1]>::try_from(processes(&prefix, 1).await).unwrap();
    let budget = SharedLimit {
        label: "budget.0",
        rate: Rate::new(3, Duration::from_secs(1)),
    };
    let users = SharedLimit {
        label: "endpoint.users",
        rate: Rate::new(1, Duration::from_secs(1)),
    };
    assert_eq!(
        a.take_at("r1", &[budget, users], TIMEOUT, T0)
            .await
            .unwrap(),
        None
    );
    a.done_at("r1", &[budget, users], T0 + ms(10))
        .await
        .unwrap();
    // The endpoint is full until 1.01 s; the budget alone is not.
    let wait = a
        .take_at("r2", &[budget, users], TIMEOUT, T0 + ms(400))
        .await
        .unwrap();
    assert_eq!(wait, Some(ms(610)));
    assert_eq!(
        a.take_at("r3", &[budget], TIMEOUT, T0 + ms(400))
            .await
            .unwrap(),
        None
    );
    a.done_at("r3", &[budget], T0 + ms(410)).await.unwrap();
    // r2 took nothing: the budget has one slot left for it at 1.01 s.
    assert_eq!(
        a.take_at("r2", &[budget, users], TIMEOUT, T0 + ms(1_010))
            .await
            .unwrap(),
        None
    );
    cleanup(&prefix).await;
}

/// Four processes, each with requests in flight, against a provider that
/// counts each request at a random instant between its send and its answer:
/// no window of the provider ever holds more than the limit, and the budget
/// is used.
#[tokio::test]
async fn four_processes_never_over_run_a_provider_that_counts_anywhere_in_flight() {
    let prefix = unique_prefix("shared-four");
    let clients = processes(&prefix, 4).await;
    let rate = Rate::new(10, Duration::from_secs(2));
    let limits = [SharedLimit {
        label: "budget.0",
        rate,
    }];
    let mut rng = Rng::new(42);
    let mut now = T0;
    // (process, id, answered at)
    let mut in_flight: Vec<(usize, String, Timestamp)> = Vec::new();
    let mut counted = Vec::new();
    let mut next_id = 0u64;
    let end = T0 + Duration::from_secs(60);
    while now < end {
        let (due, later): (Vec<_>, Vec<_>) =
            in_flight.into_iter().partition(|(_, _, at)| *at <= now);
        in_flight = later;
        for (process, id, answered) in due {
            clients[process]
                .done_at(&id, &limits, answered)
                .await
                .unwrap();
        }
        let process = rng.below(4) as usize;
        let id = format!("{process}-{next_id}");
        next_id += 1;
        if clients[process]
            .take_at(&id, &limits, TIMEOUT, now)
            .await
            .unwrap()
            .is_none()
        {
            let latency = ms(rng.below(300));
            let counted_at = now + ms(rng.below(latency.as_millis() as u64 + 1));
            counted.push(counted_at);
            in_flight.push((process, id, now + latency));
        }
        now = now + ms(1 + rng.below(20));
    }
    counted.sort();
    let worst = (0..counted.len())
        .map(|i| {
            counted[i..]
                .iter()
                .take_while(|t| **t < counted[i] + rate.window())
                .count()
        })
        .max()
        .unwrap();
    assert!(worst <= 10, "{worst} counted within one window");
    // 60 s at 10 per 2 s is 300; the slot held past each answer costs a little.
    assert!(counted.len() >= 250, "only {} sent in 60 s", counted.len());
    cleanup(&prefix).await;
}

#[tokio::test]
async fn work_claimed_by_one_process_is_not_claimed_by_another_until_released_or_expired() {
    let prefix = unique_prefix("shared-claim");
    let [a, b] = <[SharedSlots; 2]>::try_from(processes(&prefix, 2).await).unwrap();
    let ttl = Duration::from_secs(60);
    assert!(a.claim("properties/", "a", ttl).await.unwrap());
    assert!(!b.claim("properties/", "b", ttl).await.unwrap());
    // The owner extends it; the other cannot.
    assert!(a.claim("properties/", "a", ttl).await.unwrap());
    assert!(!b.renew("properties/", "b", ttl).await.unwrap());
    // Another's release changes nothing; the owner's frees it.
    b.release("properties/", "b").await.unwrap();
    assert!(!b.claim("properties/", "b", ttl).await.unwrap());
    a.release("properties/", "a").await.unwrap();
    assert!(b.claim("properties/", "b", ttl).await.unwrap());
    // A claim whose owner died expires.
    assert!(
        a.claim("tenancies/", "a", Duration::from_millis(50))
            .await
            .unwrap()
    );
    tokio::time::sleep(Duration::from_millis(120)).await;
    assert!(b.claim("tenancies/", "b", ttl).await.unwrap());
    cleanup(&prefix).await;
}
