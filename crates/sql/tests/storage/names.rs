//! Resource names become table names: checked, and explained when wrong.

use serde_json::json;
use tollgate_sql::{ListQuery, StorageError};

use crate::support::{TestDb, record};

pub async fn bad_resource_names_say_what_to_write(db: TestDb) {
    let storage = db.connect().await;
    let injection = "users\"; DROP TABLE sync_resources; --";
    for name in [
        "Users",
        "channel-users",
        "",
        "9lives",
        injection,
        &"x".repeat(49),
    ] {
        let error = storage.ensure_resource(name).await.unwrap_err();
        assert!(
            matches!(error, StorageError::InvalidResource { .. }),
            "{name:?}: {error}"
        );
        let message = error.to_string();
        assert!(
            message.contains("lowercase ASCII letters, digits and `_`"),
            "{message}"
        );
        assert!(!error.is_transient());
        let page = [record("1", json!(1), 1)];
        assert!(storage.save_page(name, "", &page, None).await.is_err());
        assert!(storage.get(name, "1").await.is_err());
        assert!(storage.list(name, &ListQuery::first(1)).await.is_err());
    }
    let message = storage
        .ensure_resource("channel-users")
        .await
        .unwrap_err()
        .to_string();
    assert!(message.contains("`-` at byte 7"), "{message}");
    // Nothing was dropped.
    assert_eq!(storage.resource_states().await.unwrap(), []);
}

pub async fn an_unknown_resource_says_to_ensure_it(db: TestDb) {
    let storage = db.connect().await;
    let error = storage.get("never_ensured", "1").await.unwrap_err();
    assert!(
        matches!(error, StorageError::UnknownResource { .. }),
        "{error}"
    );
    assert!(
        error.to_string().contains("call `ensure_resource` first"),
        "{error}"
    );
    let page = [record("1", json!(1), 1)];
    let error = storage
        .save_page("never_ensured", "", &page, None)
        .await
        .unwrap_err();
    assert!(
        matches!(error, StorageError::UnknownResource { .. }),
        "{error}"
    );

    storage.ensure_resource("now_ensured").await.unwrap();
    storage.ensure_resource("now_ensured").await.unwrap(); // again: a no-op
    storage
        .save_page("now_ensured", "", &page, None)
        .await
        .unwrap();
    storage.ensure_resource("now_ensured").await.unwrap();
    assert_eq!(
        storage.count("now_ensured").await.unwrap(),
        1,
        "ensuring again keeps the records"
    );
}
