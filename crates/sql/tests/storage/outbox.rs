//! The outbox: submissions stored before they are accepted, claimed by one
//! worker at a time, and queued again after a crash.

use std::collections::HashSet;

use tollgate_sql::{
    Attempt, NewSubmission, Priority, ProviderAnswer, SubmissionFilter, SubmissionState,
};

use crate::support::TestDb;

fn new(key: &str, priority: Priority, at_ms: i64) -> NewSubmission {
    NewSubmission {
        source: "crm".into(),
        idempotency_key: key.into(),
        method: "POST".into(),
        path: "/v1/appointments".into(),
        content_type: Some("application/json".into()),
        body: format!("{{\"key\":\"{key}\"}}").into_bytes(),
        priority,
        at_ms,
    }
}

pub async fn a_submission_is_stored_once_per_idempotency_key(db: TestDb) {
    let storage = db.connect().await;
    let first = storage
        .submit(&new("k1", Priority::Normal, 1_000))
        .await
        .unwrap();
    assert!(first.created);
    assert_eq!(first.submission.state, SubmissionState::Queued);
    assert_eq!(first.submission.body, b"{\"key\":\"k1\"}");
    let again = storage
        .submit(&new("k1", Priority::Urgent, 2_000))
        .await
        .unwrap();
    assert!(!again.created);
    assert_eq!(
        again.submission, first.submission,
        "the first one, unchanged"
    );
    let other_source = NewSubmission {
        source: "other".into(),
        ..new("k1", Priority::Normal, 2_000)
    };
    assert!(storage.submit(&other_source).await.unwrap().created);
    drop(storage);
    // Stored before the answer: a new process reads it back.
    let storage = db.connect().await;
    let stored = storage.submission(first.submission.id).await.unwrap();
    assert_eq!(stored, Some(first.submission));
}

pub async fn claims_go_by_priority_then_age_and_never_twice(db: TestDb) {
    let storage = db.connect().await;
    for (i, priority) in [
        Priority::Bulk,
        Priority::Normal,
        Priority::Normal,
        Priority::Urgent,
    ]
    .into_iter()
    .enumerate()
    {
        storage
            .submit(&new(&format!("k{i}"), priority, 1_000 + i as i64))
            .await
            .unwrap();
    }
    // Not due yet.
    assert_eq!(storage.claim_submission("crm", 999).await.unwrap(), None);
    let mut order = Vec::new();
    while let Some(claimed) = storage.claim_submission("crm", 5_000).await.unwrap() {
        assert_eq!(claimed.state, SubmissionState::InFlight);
        assert_eq!(claimed.attempts, 1);
        order.push(claimed.idempotency_key);
    }
    assert_eq!(order, ["k3", "k1", "k2", "k0"]);
    assert_eq!(
        storage.claim_submission("other", 5_000).await.unwrap(),
        None
    );
}

pub async fn two_workers_never_claim_the_same_submission(db: TestDb) {
    let storage = db.connect().await;
    for i in 0..60 {
        storage
            .submit(&new(&format!("k{i}"), Priority::Normal, i))
            .await
            .unwrap();
    }
    let worker = |storage: tollgate_sql::Storage| async move {
        let mut mine = Vec::new();
        while let Some(claimed) = storage.claim_submission("crm", 1_000).await.unwrap() {
            mine.push(claimed.id);
        }
        mine
    };
    let (a, b) = tokio::join!(
        tokio::spawn(worker(db.connect().await)),
        tokio::spawn(worker(db.connect().await))
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    let all: HashSet<i64> = a.iter().chain(&b).copied().collect();
    assert_eq!(a.len() + b.len(), 60, "{} + {}", a.len(), b.len());
    assert_eq!(all.len(), 60, "a submission was claimed twice");
}

pub async fn attempts_end_delivered_failed_or_queued_again(db: TestDb) {
    let storage = db.connect().await;
    for key in ["ok", "refused", "later"] {
        storage
            .submit(&new(key, Priority::Normal, 1_000))
            .await
            .unwrap();
    }
    let ok = storage
        .claim_submission("crm", 1_000)
        .await
        .unwrap()
        .unwrap();
    let answer = ProviderAnswer {
        status: 201,
        content_type: Some("application/json".into()),
        body: b"{\"id\":\"appt-1\"}".to_vec(),
    };
    let delivered = Attempt::Delivered(answer.clone());
    assert!(
        storage
            .record_attempt(ok.id, &delivered, 1_100)
            .await
            .unwrap()
    );
    // Only an in-flight submission takes an outcome.
    assert!(
        !storage
            .record_attempt(ok.id, &delivered, 1_100)
            .await
            .unwrap()
    );
    let ok = storage.submission(ok.id).await.unwrap().unwrap();
    assert_eq!(ok.state, SubmissionState::Delivered);
    assert_eq!(ok.answer, Some(answer));

    let refused = storage
        .claim_submission("crm", 1_000)
        .await
        .unwrap()
        .unwrap();
    let failed = Attempt::Failed {
        error: "422".into(),
        answer: None,
    };
    storage
        .record_attempt(refused.id, &failed, 1_200)
        .await
        .unwrap();
    let later = storage
        .claim_submission("crm", 1_000)
        .await
        .unwrap()
        .unwrap();
    let retry = Attempt::Retry {
        error: "503 Service Unavailable".into(),
        at_ms: 3_000,
    };
    storage
        .record_attempt(later.id, &retry, 1_300)
        .await
        .unwrap();
    assert_eq!(storage.claim_submission("crm", 2_999).await.unwrap(), None);
    assert_eq!(
        storage.next_submission_at("crm").await.unwrap(),
        Some(3_000)
    );
    let again = storage
        .claim_submission("crm", 3_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((again.id, again.attempts), (later.id, 2));
    assert_eq!(again.error.as_deref(), Some("503 Service Unavailable"));

    let failed = storage
        .submissions(&SubmissionFilter {
            state: Some(SubmissionState::Failed),
            limit: 10,
            ..SubmissionFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].error.as_deref(), Some("422"));
    let counts = storage.outbox_counts("crm").await.unwrap();
    assert_eq!(
        counts,
        [
            (SubmissionState::InFlight, 1),
            (SubmissionState::Delivered, 1),
            (SubmissionState::Failed, 1)
        ]
    );
}

pub async fn in_flight_ones_are_queued_again_after_a_crash(db: TestDb) {
    let storage = db.connect().await;
    storage
        .submit(&new("k1", Priority::Normal, 1_000))
        .await
        .unwrap();
    let claimed = storage
        .claim_submission("crm", 1_000)
        .await
        .unwrap()
        .unwrap();
    drop(storage);
    let storage = db.connect().await;
    assert_eq!(storage.requeue_in_flight("crm", 5_000).await.unwrap(), 1);
    let again = storage
        .claim_submission("crm", 5_000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.id, claimed.id);
    assert_eq!(again.idempotency_key, "k1", "the same key goes again");
    assert_eq!(again.attempts, 2);
}

pub async fn cancel_and_retry_by_hand(db: TestDb) {
    let storage = db.connect().await;
    let a = storage
        .submit(&new("a", Priority::Normal, 1_000))
        .await
        .unwrap()
        .submission;
    assert!(storage.cancel_submission(a.id, 1_100).await.unwrap());
    assert!(!storage.cancel_submission(a.id, 1_100).await.unwrap());
    assert_eq!(storage.claim_submission("crm", 9_000).await.unwrap(), None);
    assert!(storage.retry_submission(a.id, 2_000).await.unwrap());
    let claimed = storage
        .claim_submission("crm", 2_000)
        .await
        .unwrap()
        .unwrap();
    assert!(
        !storage.cancel_submission(a.id, 2_100).await.unwrap(),
        "in flight: too late to cancel"
    );
    assert!(!storage.retry_submission(a.id, 2_100).await.unwrap());
    assert!(!storage.retry_submission(999, 2_100).await.unwrap());
    assert_eq!(claimed.id, a.id);
}
