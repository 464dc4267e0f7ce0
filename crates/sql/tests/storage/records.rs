//! Storing records: upsert counts, bodies, webhook events, concurrency.

use serde_json::json;
use tollgate_sql::{Change, PageStats};

use crate::support::{TestDb, page, record};

pub async fn save_page_counts_inserted_updated_and_unchanged(db: TestDb) {
    let storage = db.connect().await;
    storage.ensure_resource("users").await.unwrap();
    let first = [
        record("a", json!({"name": "Ada"}), 1_000).updated_at("u1"),
        record("b", json!({"name": "Bob"}), 1_000),
    ];
    let stats = storage.save_page("users", "", &first, None).await.unwrap();
    assert_eq!(
        stats,
        PageStats {
            inserted: 2,
            updated: 0,
            unchanged: 0
        }
    );

    let mut same_a = record("a", json!({"name": "Ada"}), 2_000).updated_at("u2");
    same_a.etag = Some("\"v2\"".into());
    let second = [
        same_a,
        record("b", json!({"name": "Bob", "admin": true}), 2_000).updated_at("2024-05-02"),
        record("c", json!({"name": "Cy"}), 2_000),
    ];
    let stats = storage.save_page("users", "", &second, None).await.unwrap();
    assert_eq!(
        stats,
        PageStats {
            inserted: 1,
            updated: 1,
            unchanged: 1
        }
    );
    assert_eq!(stats.total(), 3);

    let a = storage.get("users", "a").await.unwrap().unwrap();
    assert_eq!(
        (a.fetched_at_ms, a.created_at_ms),
        (2_000, 1_000),
        "an unchanged record is re-fetched"
    );
    assert_eq!(
        a.updated_at.as_deref(),
        Some("u1"),
        "nor its incremental field"
    );
    assert_eq!(
        a.etag.as_deref(),
        Some("\"v2\""),
        "its validators follow the latest fetch"
    );
    let b = storage.get("users", "b").await.unwrap().unwrap();
    assert_eq!(b.body, json!({"name": "Bob", "admin": true}));
    assert_eq!((b.fetched_at_ms, b.created_at_ms), (2_000, 1_000));
    assert_eq!(b.updated_at.as_deref(), Some("2024-05-02"));
    assert_eq!(storage.count("users").await.unwrap(), 3);

    // The same id twice in a page: the later one is stored, counted once.
    let twice = [record("d", json!(1), 3_000), record("d", json!(2), 3_000)];
    let stats = storage.save_page("users", "", &twice, None).await.unwrap();
    assert_eq!(
        stats,
        PageStats {
            inserted: 1,
            updated: 0,
            unchanged: 0
        }
    );
    assert_eq!(
        storage.get("users", "d").await.unwrap().unwrap().body,
        json!(2)
    );
}

pub async fn json_bodies_round_trip(db: TestDb) {
    let storage = db.connect().await;
    storage.ensure_resource("docs").await.unwrap();
    let body = json!({
        "text": "naïve café — 日本語 \"quoted\" \\ back\nslash",
        "nested": {"list": [1, 2.5, null, false, {"deep": []}], "empty": {}},
        "big": 9_007_199_254_740_993_i64,
        "negative": -42,
    });
    storage
        .save_page("docs", "", &[record("1", body.clone(), 5)], None)
        .await
        .unwrap();
    let stored = storage.get("docs", "1").await.unwrap().unwrap();
    assert_eq!(stored.body, body);
    // Stored as it was sent: saving it again changes nothing.
    let stats = storage
        .save_page("docs", "", &[record("1", body, 6)], None)
        .await
        .unwrap();
    assert_eq!(stats.unchanged, 1, "{stats:?}");
    // Any JSON value is a body, not only objects.
    storage
        .upsert_one("docs", &record("2", json!("just a string"), 7))
        .await
        .unwrap();
    assert_eq!(
        storage.get("docs", "2").await.unwrap().unwrap().body,
        json!("just a string")
    );
}

pub async fn upsert_one_and_delete_serve_webhooks(db: TestDb) {
    let storage = db.connect().await;
    storage.ensure_resource("orders").await.unwrap();
    let created = record("o1", json!({"status": "open"}), 10).updated_at("9999");
    assert_eq!(
        storage.upsert_one("orders", &created).await.unwrap(),
        Change::Inserted
    );
    assert_eq!(
        storage.upsert_one("orders", &created).await.unwrap(),
        Change::Unchanged
    );
    let paid = record("o1", json!({"status": "paid"}), 20);
    assert_eq!(
        storage.upsert_one("orders", &paid).await.unwrap(),
        Change::Updated
    );
    let stored = storage.get("orders", "o1").await.unwrap().unwrap();
    assert_eq!(
        (stored.body, stored.created_at_ms),
        (json!({"status": "paid"}), 10)
    );

    // A webhook is not an import run: no watermark, no checkpoint.
    let state = storage.resource_state("orders", "").await.unwrap().unwrap();
    assert_eq!(state.watermark, None);
    assert_eq!(storage.checkpoint("orders", "").await.unwrap(), None);

    assert!(storage.delete("orders", "o1").await.unwrap());
    assert!(
        !storage.delete("orders", "o1").await.unwrap(),
        "already gone"
    );
    assert_eq!(storage.get("orders", "o1").await.unwrap(), None);
}

pub async fn clones_write_concurrently(db: TestDb) {
    let storage = db.connect().await;
    let resources = ["alpha", "beta", "gamma", "delta"];
    let tasks = resources.map(|resource| {
        let storage = storage.clone();
        tokio::spawn(async move {
            // All at once on the same table too: creating it races.
            storage.ensure_resource("shared").await.unwrap();
            let mine: Vec<_> = page(0, 50, 0)
                .into_iter()
                .map(|mut r| {
                    r.id = format!("{resource}-{}", r.id);
                    r
                })
                .collect();
            storage.save_page("shared", "", &mine, None).await.unwrap();
            storage.ensure_resource(resource).await.unwrap();
            for n in 0..10 {
                let records = page(n * 50, 50, i64::from(n));
                storage
                    .save_page(resource, "", &records, None)
                    .await
                    .unwrap();
            }
        })
    });
    for task in tasks {
        task.await.unwrap();
    }
    for resource in resources {
        assert_eq!(storage.count(resource).await.unwrap(), 500, "{resource}");
    }
    assert_eq!(storage.count("shared").await.unwrap(), 200);
}
