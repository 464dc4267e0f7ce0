//! The 429 log.

use tollgate_sql::RateLimitEvent;

use crate::support::TestDb;

fn event(at_ms: i64, retry_at_ms: i64, next_call_ms: Option<i64>) -> RateLimitEvent {
    RateLimitEvent {
        source: "crm".into(),
        at_ms,
        retry_at_ms,
        next_call_ms,
        honoured: next_call_ms.map(|next| next >= retry_at_ms),
    }
}

pub async fn each_429_is_marked_honoured_or_not(db: TestDb) {
    let storage = db.connect().await;
    // A call before any 429 marks nothing.
    assert_eq!(storage.record_next_call("crm", 500).await.unwrap(), 0);

    storage.record_429("crm", 1_000, 61_000).await.unwrap();
    storage.record_429("other", 1_000, 2_000).await.unwrap();
    assert_eq!(
        storage.rate_limit_log("crm").await.unwrap(),
        [event(1_000, 61_000, None)]
    );
    // Waited it out, to the millisecond.
    assert_eq!(storage.record_next_call("crm", 61_000).await.unwrap(), 1);
    // Later calls do not rewrite it.
    assert_eq!(storage.record_next_call("crm", 62_000).await.unwrap(), 0);

    // Two 429s in flight, then a call too early: both not honoured.
    storage.record_429("crm", 70_000, 130_000).await.unwrap();
    storage.record_429("crm", 70_010, 130_010).await.unwrap();
    assert_eq!(storage.record_next_call("crm", 100_000).await.unwrap(), 2);
    // A 429 received after a call is not answered by it.
    storage.record_429("crm", 200_000, 260_000).await.unwrap();
    assert_eq!(storage.record_next_call("crm", 199_999).await.unwrap(), 0);

    let log = storage.rate_limit_log("crm").await.unwrap();
    assert_eq!(
        log,
        [
            event(1_000, 61_000, Some(61_000)),
            event(70_000, 130_000, Some(100_000)),
            event(70_010, 130_010, Some(100_000)),
            event(200_000, 260_000, None),
        ]
    );
    assert_eq!(log[1].honoured, Some(false));
    let other = storage.rate_limit_log("other").await.unwrap();
    assert_eq!(other.len(), 1);
    assert_eq!(
        other[0].next_call_ms, None,
        "another source's call does not count"
    );
}
