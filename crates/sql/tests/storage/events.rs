//! The webhook events already applied: a replay is refused, after a restart
//! too, and only for as long as the tolerance window needs.

use tollgate_sql::EventClaim;

use crate::support::TestDb;

fn event<'a>(source: &'a str, id: &'a str, signed_at_ms: i64) -> EventClaim<'a> {
    EventClaim {
        source,
        id,
        signed_at_ms,
        received_at_ms: signed_at_ms + 20,
    }
}

pub async fn a_claimed_event_is_refused_again_even_after_reopening(db: TestDb) {
    let storage = db.connect().await;
    assert!(
        storage
            .claim_event(event("crm", "evt_1", 1_000), 0)
            .await
            .unwrap()
    );
    assert!(
        !storage
            .claim_event(event("crm", "evt_1", 1_500), 0)
            .await
            .unwrap(),
        "the same id, even re-signed later, is a replay"
    );
    assert!(
        storage
            .claim_event(event("billing", "evt_1", 1_000), 0)
            .await
            .unwrap(),
        "ids are per source"
    );
    drop(storage);

    let storage = db.connect().await;
    assert!(storage.event_seen("crm", "evt_1").await.unwrap());
    assert!(
        !storage
            .claim_event(event("crm", "evt_1", 1_000), 0)
            .await
            .unwrap()
    );
    assert!(!storage.event_seen("crm", "evt_2").await.unwrap());
}

pub async fn old_events_are_forgotten_and_a_released_one_is_claimed_again(db: TestDb) {
    let storage = db.connect().await;
    assert!(
        storage
            .claim_event(event("crm", "old", 1_000), 0)
            .await
            .unwrap()
    );
    assert!(
        storage
            .claim_event(event("other", "old", 1_000), 0)
            .await
            .unwrap()
    );
    assert!(
        storage
            .claim_event(event("crm", "new", 5_000), 2_000)
            .await
            .unwrap()
    );
    assert!(
        !storage.event_seen("crm", "old").await.unwrap(),
        "signed before the window: a copy would be stale"
    );
    assert!(
        storage.event_seen("other", "old").await.unwrap(),
        "another source's window is its own"
    );
    assert!(storage.event_seen("crm", "new").await.unwrap());

    // Applying `new` failed: its next delivery must be applied.
    storage.release_event("crm", "new").await.unwrap();
    assert!(!storage.event_seen("crm", "new").await.unwrap());
    assert!(
        storage
            .claim_event(event("crm", "new", 5_100), 2_000)
            .await
            .unwrap()
    );
}

pub async fn of_concurrent_claims_of_one_event_exactly_one_wins(db: TestDb) {
    let storage = db.connect().await;
    let claims = (0..8).map(|_| {
        let storage = storage.clone();
        tokio::spawn(async move { storage.claim_event(event("crm", "evt_9", 1_000), 0).await })
    });
    let mut won = 0;
    for claim in claims {
        if claim.await.unwrap().unwrap() {
            won += 1;
        }
    }
    assert_eq!(won, 1);
}
