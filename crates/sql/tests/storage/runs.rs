//! Import runs: checkpoints, the watermark, errors, reopening.

use serde_json::json;
use tollgate_sql::{Checkpoint, RunOutcome};

use crate::support::{TestDb, page, record};

fn checkpoint(cursor: &str, pages_done: u64, records_done: u64) -> Checkpoint {
    Checkpoint {
        cursor: cursor.into(),
        pages_done,
        records_done,
        started_at_ms: 100,
    }
}

pub async fn a_checkpoint_is_saved_with_its_page(db: TestDb) {
    let storage = db.connect().await;
    storage.ensure_resource("items").await.unwrap();
    assert_eq!(storage.checkpoint("items", "").await.unwrap(), None);
    storage
        .save_page(
            "items",
            "",
            &page(0, 100, 1),
            Some(&checkpoint("2", 1, 100)),
        )
        .await
        .unwrap();
    storage
        .save_page(
            "items",
            "",
            &page(100, 100, 2),
            Some(&checkpoint("3", 2, 200)),
        )
        .await
        .unwrap();
    drop(storage); // a crash: the run never finishes

    let storage = db.connect().await;
    let resume = storage.checkpoint("items", "").await.unwrap();
    assert_eq!(resume, Some(checkpoint("3", 2, 200)));
    assert_eq!(storage.count("items").await.unwrap(), 200);

    // A run resumed from an older position saves page 2 again: no duplicates.
    let stats = storage
        .save_page(
            "items",
            "",
            &page(100, 100, 3),
            Some(&checkpoint("3", 2, 200)),
        )
        .await
        .unwrap();
    assert_eq!((stats.inserted, stats.unchanged), (0, 100));
    assert_eq!(storage.count("items").await.unwrap(), 200);
}

pub async fn finish_run_clears_the_checkpoint_and_keeps_the_watermark(db: TestDb) {
    let storage = db.connect().await;
    storage.ensure_resource("tickets").await.unwrap();
    let page1 = [
        record("t1", json!(1), 10).updated_at("1714564800005"),
        record("t2", json!(2), 10).updated_at("1714564800012"),
    ];
    storage
        .save_page("tickets", "", &page1, Some(&checkpoint("p2", 1, 2)))
        .await
        .unwrap();
    let state = storage
        .resource_state("tickets", "")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        state.watermark, None,
        "a run in progress does not move the watermark"
    );

    let last = [record("t3", json!(3), 20).updated_at("1714564800009")];
    storage.save_page("tickets", "", &last, None).await.unwrap();
    let outcome = RunOutcome {
        finished_at_ms: 30,
        duration_ms: 25,
        pages: 2,
        records: 3,
        list_etag: Some("W/\"list-1\"".into()),
        list_last_modified: None,
    };
    storage.finish_run("tickets", "", &outcome).await.unwrap();
    assert_eq!(storage.checkpoint("tickets", "").await.unwrap(), None);
    let state = storage
        .resource_state("tickets", "")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state.watermark.as_deref(), Some("1714564800012"));
    assert_eq!(state.last_success_ms, Some(30));
    assert_eq!(state.last_duration_ms, Some(25));
    assert_eq!((state.last_pages, state.last_records), (Some(2), Some(3)));
    assert_eq!(state.list_etag.as_deref(), Some("W/\"list-1\""));

    // An incremental run that saw only older values never moves it back;
    // one that saw nothing keeps it.
    let older = [record("t1", json!(1), 40).updated_at("999")];
    storage
        .save_page("tickets", "", &older, None)
        .await
        .unwrap();
    storage
        .finish_run(
            "tickets",
            "",
            &RunOutcome {
                finished_at_ms: 50,
                ..outcome.clone()
            },
        )
        .await
        .unwrap();
    storage
        .finish_run(
            "tickets",
            "",
            &RunOutcome {
                finished_at_ms: 60,
                ..outcome
            },
        )
        .await
        .unwrap();
    let state = storage
        .resource_state("tickets", "")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state.watermark.as_deref(), Some("1714564800012"));
    assert_eq!(state.last_success_ms, Some(60));
}

pub async fn fan_out_scopes_are_independent(db: TestDb) {
    let storage = db.connect().await;
    storage.ensure_resource("channel_users").await.unwrap();
    let general =
        [record("u1", json!({"channel": "general"}), 1).updated_at("2024-05-01T00:00:00Z")];
    let random = [record("u2", json!({"channel": "random"}), 1).updated_at("2024-06-01T00:00:00Z")];
    storage
        .save_page(
            "channel_users",
            "general",
            &general,
            Some(&checkpoint("g2", 1, 1)),
        )
        .await
        .unwrap();
    storage
        .save_page(
            "channel_users",
            "random",
            &random,
            Some(&checkpoint("r2", 1, 1)),
        )
        .await
        .unwrap();
    storage
        .finish_run("channel_users", "general", &RunOutcome::default())
        .await
        .unwrap();

    assert_eq!(
        storage
            .checkpoint("channel_users", "general")
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        storage.checkpoint("channel_users", "random").await.unwrap(),
        Some(checkpoint("r2", 1, 1))
    );
    let general = storage
        .resource_state("channel_users", "general")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(general.watermark.as_deref(), Some("2024-05-01T00:00:00Z"));
    let random = storage
        .resource_state("channel_users", "random")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(random.watermark, None, "its run is not finished");

    let scopes: Vec<_> = storage
        .resource_states()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.scope)
        .collect();
    assert_eq!(scopes, ["", "general", "random"]);
}

pub async fn record_error_keeps_the_checkpoint(db: TestDb) {
    let storage = db.connect().await;
    storage.ensure_resource("items").await.unwrap();
    storage
        .save_page("items", "", &page(0, 10, 1), Some(&checkpoint("2", 1, 10)))
        .await
        .unwrap();
    storage
        .record_error("items", "", "HTTP 503 from /items?page=2", 500)
        .await
        .unwrap();
    let state = storage.resource_state("items", "").await.unwrap().unwrap();
    assert_eq!(
        state.last_error.as_deref(),
        Some("HTTP 503 from /items?page=2")
    );
    assert_eq!(state.last_error_ms, Some(500));
    assert_eq!(state.last_success_ms, None);
    assert_eq!(
        storage.checkpoint("items", "").await.unwrap(),
        Some(checkpoint("2", 1, 10))
    );
}

pub async fn reopening_keeps_everything(db: TestDb) {
    let storage = db.connect().await;
    storage.ensure_resource("items").await.unwrap();
    storage
        .save_page(
            "items",
            "",
            &page(0, 3, 1)
                .into_iter()
                .map(|r| r.updated_at("7"))
                .collect::<Vec<_>>(),
            None,
        )
        .await
        .unwrap();
    storage
        .finish_run(
            "items",
            "",
            &RunOutcome {
                finished_at_ms: 9,
                ..RunOutcome::default()
            },
        )
        .await
        .unwrap();
    storage.record_429("api", 1, 2).await.unwrap();
    storage.close().await;

    let storage = db.connect().await; // migrations run again: a no-op
    storage.ensure_resource("items").await.unwrap();
    assert_eq!(storage.count("items").await.unwrap(), 3);
    assert_eq!(
        storage.get("items", "000001").await.unwrap().unwrap().body["n"],
        1
    );
    let state = storage.resource_state("items", "").await.unwrap().unwrap();
    assert_eq!(
        (state.last_success_ms, state.watermark.as_deref()),
        (Some(9), Some("7"))
    );
    assert_eq!(storage.rate_limit_log("api").await.unwrap().len(), 1);
}

/// A child of a fan-out finished at `at_ms`.
fn finished_at(at_ms: i64) -> RunOutcome {
    RunOutcome {
        finished_at_ms: at_ms,
        duration_ms: 5,
        pages: 1,
        records: 1,
        ..RunOutcome::default()
    }
}

pub async fn a_fan_out_keeps_its_start_until_cleared_and_finds_its_finished_children(db: TestDb) {
    let storage = db.connect().await;
    storage.ensure_resource("channel_users").await.unwrap();
    // The fan-out as a whole starts at 1 000: its own checkpoint, scope "".
    let whole = Checkpoint {
        cursor: String::new(),
        pages_done: 0,
        records_done: 0,
        started_at_ms: 1_000,
    };
    storage
        .save_checkpoint("channel_users", "", &whole)
        .await
        .unwrap();
    // A child finished by the fan-out before this one, one at its very start,
    // two after it, one in progress.
    for (scope, at) in [("general", 900), ("lobby", 1_000), ("random", 1_500)] {
        storage
            .finish_run("channel_users", scope, &finished_at(at))
            .await
            .unwrap();
    }
    storage
        .save_page(
            "channel_users",
            "music",
            &[record("music", json!({"users": []}), 1_600)],
            Some(&checkpoint("n:2", 1, 1)),
        )
        .await
        .unwrap();
    storage
        .finish_run("channel_users", "Zebra", &finished_at(1_700))
        .await
        .unwrap();
    storage.close().await; // a crash: the fan-out never finished

    let storage = db.connect().await;
    assert_eq!(
        storage.checkpoint("channel_users", "").await.unwrap(),
        Some(whole.clone())
    );
    // Ids in byte order, on both backends.
    assert_eq!(
        storage
            .scopes_finished_after("channel_users", 1_000)
            .await
            .unwrap(),
        ["Zebra", "random"]
    );
    assert_eq!(
        storage
            .scopes_finished_after("channel_users", 0)
            .await
            .unwrap(),
        ["Zebra", "general", "lobby", "random"]
    );
    assert_eq!(
        storage.checkpoint("channel_users", "music").await.unwrap(),
        Some(checkpoint("n:2", 1, 1)),
        "a child's checkpoint is its own"
    );

    // Saved again, it replaces the start; cleared, it is gone and the
    // children's runs stay as they were.
    let later = Checkpoint {
        started_at_ms: 2_000,
        ..whole
    };
    storage
        .save_checkpoint("channel_users", "", &later)
        .await
        .unwrap();
    assert_eq!(
        storage.checkpoint("channel_users", "").await.unwrap(),
        Some(later)
    );
    storage.clear_checkpoint("channel_users", "").await.unwrap();
    storage.clear_checkpoint("channel_users", "").await.unwrap();
    assert_eq!(storage.checkpoint("channel_users", "").await.unwrap(), None);
    assert!(
        storage
            .checkpoint("channel_users", "music")
            .await
            .unwrap()
            .is_some()
    );
    let random = storage
        .resource_state("channel_users", "random")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(random.last_success_ms, Some(1_500));

    // The resource's own row ("") is never one of its children.
    storage
        .finish_run("channel_users", "", &finished_at(3_000))
        .await
        .unwrap();
    assert_eq!(
        storage
            .scopes_finished_after("channel_users", 1_600)
            .await
            .unwrap(),
        ["Zebra"]
    );
    assert!(
        storage
            .save_checkpoint("Bad-Name", "", &checkpoint("", 0, 0))
            .await
            .is_err()
    );
}
