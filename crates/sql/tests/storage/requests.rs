//! The recent requests a restarted sync process reads back.

use tollgate_sql::SentRequest;

use crate::support::TestDb;

fn sent(endpoint: Option<&str>, sent_at_ms: i64, answered_at_ms: Option<i64>) -> SentRequest {
    SentRequest {
        endpoint: endpoint.map(str::to_owned),
        sent_at_ms,
        answered_at_ms,
    }
}

pub async fn recent_requests_survive_a_restart_and_old_ones_are_forgotten(db: TestDb) {
    let storage = db.connect().await;
    storage
        .record_request_sent("crm", 1, None, 1_000)
        .await
        .unwrap();
    storage
        .record_request_answered("crm", 1, 1_050, 0)
        .await
        .unwrap();
    storage
        .record_request_sent("crm", -7, Some("users"), 2_000)
        .await
        .unwrap();
    storage
        .record_request_answered("crm", -7, 2_040, 0)
        .await
        .unwrap();
    // In flight when the process stopped.
    storage
        .record_request_sent("crm", 3, None, 3_000)
        .await
        .unwrap();
    storage
        .record_request_sent("other", 1, None, 3_000)
        .await
        .unwrap();
    drop(storage);

    let storage = db.connect().await;
    assert_eq!(
        storage.recent_requests("crm", 1_500, 5_000).await.unwrap(),
        [
            sent(Some("users"), 2_000, Some(2_040)),
            sent(None, 3_000, None)
        ],
        "the one answered before 1 500 is past every window; the one in flight is kept"
    );
    // The one in flight now counts as answered when the restart read it.
    assert_eq!(
        storage.recent_requests("crm", 1_500, 9_000).await.unwrap(),
        [
            sent(Some("users"), 2_000, Some(2_040)),
            sent(None, 3_000, Some(5_000))
        ]
    );
    // An answer forgets what is past the longest window.
    storage
        .record_request_sent("crm", 4, None, 6_000)
        .await
        .unwrap();
    storage
        .record_request_answered("crm", 4, 6_010, 4_000)
        .await
        .unwrap();
    assert_eq!(
        storage.recent_requests("crm", 0, 9_000).await.unwrap(),
        [
            sent(None, 3_000, Some(5_000)),
            sent(None, 6_000, Some(6_010))
        ]
    );
    assert_eq!(
        storage.recent_requests("other", 0, 9_000).await.unwrap(),
        [sent(None, 3_000, None)]
    );
}

pub async fn the_latest_retry_instant_is_read_back(db: TestDb) {
    let storage = db.connect().await;
    assert_eq!(storage.latest_retry_at("crm").await.unwrap(), None);
    storage.record_429("crm", 1_000, 61_000).await.unwrap();
    storage.record_429("crm", 2_000, 5_000).await.unwrap();
    storage.record_429("other", 2_000, 99_000).await.unwrap();
    assert_eq!(storage.latest_retry_at("crm").await.unwrap(), Some(61_000));
}
