//! Reading records back: keyset pages and the field filter.

use serde_json::json;
use tollgate_sql::{ListQuery, StorageError};

use crate::support::{TestDb, record};

fn ids(records: &[tollgate_sql::StoredRecord]) -> Vec<&str> {
    records.iter().map(|r| r.id.as_str()).collect()
}

pub async fn list_pages_through_ids_in_byte_order(db: TestDb) {
    let storage = db.connect().await;
    storage.ensure_resource("things").await.unwrap();
    let records: Vec<_> = ["b", "A", "a", "B", "10", "9", "a-1", "a_1", "é"]
        .into_iter()
        .map(|id| record(id, json!({"id": id}), 1))
        .collect();
    storage
        .save_page("things", "", &records, None)
        .await
        .unwrap();

    // By bytes, whatever the database's locale: digits, uppercase, `-`,
    // lowercase, `_` after `a`… and UTF-8 last.
    let expected = ["10", "9", "A", "B", "a", "a-1", "a_1", "b", "é"];
    let mut seen = Vec::new();
    let mut query = ListQuery::first(2);
    loop {
        let got = storage.list("things", &query).await.unwrap();
        let Some(last) = got.last() else { break };
        assert!(got.len() <= 2);
        query = query.after(last.id.clone());
        seen.extend(got.into_iter().map(|r| r.id));
    }
    assert_eq!(seen, expected);
    let all = storage
        .list("things", &ListQuery::first(1000))
        .await
        .unwrap();
    assert_eq!(ids(&all), expected);
    assert_eq!(all[0].body, json!({"id": "10"}));
}

pub async fn list_filters_on_a_top_level_field(db: TestDb) {
    let storage = db.connect().await;
    storage.ensure_resource("tasks").await.unwrap();
    let records = [
        record(
            "1",
            json!({"status": "open", "priority": 2, "urgent": true}),
            1,
        ),
        record(
            "2",
            json!({"status": "done", "priority": 1, "urgent": false}),
            1,
        ),
        record("3", json!({"status": "open", "priority": 1}), 1),
        record(
            "4",
            json!({"status": null, "nested": {"status": "open"}}),
            1,
        ),
        record("5", json!(["not", "an", "object"]), 1),
        record(
            "6",
            json!({"status": "open", "priority": 3, "urgent": true}),
            1,
        ),
    ];
    storage
        .save_page("tasks", "", &records, None)
        .await
        .unwrap();
    let list = |query: ListQuery| {
        let storage = storage.clone();
        async move { storage.list("tasks", &query).await.unwrap() }
    };

    assert_eq!(
        ids(&list(ListQuery::first(10).filter("status", "open")).await),
        ["1", "3", "6"]
    );
    assert_eq!(
        ids(&list(ListQuery::first(10).filter("priority", "1")).await),
        ["2", "3"]
    );
    assert_eq!(
        ids(&list(ListQuery::first(10).filter("urgent", "true")).await),
        ["1", "6"]
    );
    assert_eq!(
        ids(&list(ListQuery::first(10).filter("urgent", "false")).await),
        ["2"]
    );
    assert!(
        list(ListQuery::first(10).filter("missing", "x"))
            .await
            .is_empty()
    );
    // With keyset pagination.
    let page = list(ListQuery::first(1).filter("status", "open").after("1")).await;
    assert_eq!(ids(&page), ["3"]);
    let page = list(ListQuery::first(5).filter("status", "open").after("3")).await;
    assert_eq!(ids(&page), ["6"]);
}

pub async fn list_refuses_bad_limits_and_fields(db: TestDb) {
    let storage = db.connect().await;
    storage.ensure_resource("tasks").await.unwrap();
    for limit in [0, 1001] {
        let error = storage
            .list("tasks", &ListQuery::first(limit))
            .await
            .unwrap_err();
        assert!(
            matches!(error, StorageError::InvalidLimit { .. }),
            "{error}"
        );
        assert!(error.to_string().contains("1 to 1000"), "{error}");
    }
    for field in ["a.b", "a\"b", "", "$", "x' OR '1'='1"] {
        let query = ListQuery::first(10).filter(field, "x");
        let error = storage.list("tasks", &query).await.unwrap_err();
        assert!(
            matches!(error, StorageError::InvalidFilterField { .. }),
            "{field:?}: {error}"
        );
    }
    assert_eq!(
        storage
            .list("tasks", &ListQuery::first(1000))
            .await
            .unwrap(),
        []
    );
}
