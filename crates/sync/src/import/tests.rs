use std::time::Duration;

use serde_json::json;

use super::page::*;
use crate::config::{Incremental, Pagination, Resource};

fn resource(pagination: Pagination) -> Resource {
    Resource {
        name: "things".into(),
        path: "/v1/things".into(),
        query: vec![("per_page".into(), "2".into())],
        records: "/data".into(),
        id: "id".into(),
        pagination,
        incremental: Some(Incremental {
            field: "updated_at".into(),
            param: "updated_since".into(),
        }),
        every: Duration::from_secs(60),
        limit: None,
        for_each: None,
    }
}

/// Reads a page of a plain (not fan-out) resource.
fn read(r: &Resource, p: &Position, h: &http::HeaderMap, b: &[u8]) -> Result<Page, PageError> {
    super::page::read(r, p, h, b, None)
}

fn body(value: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&value).unwrap()
}

#[test]
fn page_numbers_advance_until_a_short_page() {
    let r = resource(Pagination::Page {
        param: "page".into(),
        size: Some(("per_page".into(), 2)),
        start: 1,
    });
    let url = url(
        "http://h",
        &r,
        "/v1/things",
        &Position::Start,
        Some("2026-01-01T00:00:00Z"),
    );
    assert_eq!(
        url,
        "http://h/v1/things?per_page=2&page=1&per_page=2&updated_since=2026-01-01T00%3A00%3A00Z"
    );
    let full = read(
        &r,
        &Position::Start,
        &Default::default(),
        &body(json!({"data":[{"id":1},{"id":"b"}]})),
    )
    .unwrap();
    assert_eq!(full.records[0].0, "1");
    assert_eq!(full.next, Some(Position::Number(2)));
    let short = read(
        &r,
        &Position::Number(2),
        &Default::default(),
        &body(json!({"data":[{"id":3}]})),
    )
    .unwrap();
    assert_eq!(short.next, None);
}

#[test]
fn cursors_come_from_the_body_and_links_from_the_header() {
    let r = resource(Pagination::Cursor {
        param: "cursor".into(),
        next: "/next_cursor".into(),
    });
    let page = read(
        &r,
        &Position::Start,
        &Default::default(),
        &body(json!({"data":[{"id":1}],"next_cursor":"abc"})),
    )
    .unwrap();
    assert_eq!(page.next, Some(Position::Cursor("abc".into())));
    assert!(url("http://h", &r, "/v1/things", &page.next.unwrap(), None).ends_with("cursor=abc"));
    let last = read(
        &r,
        &Position::Start,
        &Default::default(),
        &body(json!({"data":[],"next_cursor":null})),
    )
    .unwrap();
    assert_eq!(last.next, None);

    let r = resource(Pagination::Link);
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::LINK,
        "<http://h/v1/things?page=1>; rel=\"prev\", <http://h/v1/things?page=3>; rel=\"next\""
            .parse()
            .unwrap(),
    );
    let page = read(
        &r,
        &Position::Start,
        &headers,
        &body(json!({"data":[{"id":1}]})),
    )
    .unwrap();
    assert_eq!(
        page.next,
        Some(Position::Url("http://h/v1/things?page=3".into()))
    );
}

#[test]
fn bodies_that_cannot_be_used_are_refused_whole() {
    let r = resource(Pagination::None);
    assert!(matches!(
        read(&r, &Position::Start, &Default::default(), b"<html>oops"),
        Err(PageError::NotJson(_))
    ));
    assert_eq!(
        read(
            &r,
            &Position::Start,
            &Default::default(),
            &body(json!({"items":[]}))
        ),
        Err(PageError::NoRecords("/data".into()))
    );
    assert_eq!(
        read(
            &r,
            &Position::Start,
            &Default::default(),
            &body(json!({"data":[{"id":1},{"name":"x"}]}))
        ),
        Err(PageError::NoId("id".into()))
    );
}

#[test]
fn positions_survive_a_checkpoint_and_paths_are_filled_safely() {
    for position in [
        Position::Start,
        Position::Number(7),
        Position::Cursor("a:b".into()),
        Position::Url("http://h/x?p=2".into()),
    ] {
        assert_eq!(Position::decode(&position.encode()), position);
    }
    assert_eq!(
        fill_path(
            "/users/{app}/{channel}",
            &[
                ("app".into(), "demo".into()),
                ("channel".into(), "lobby 1/2".into())
            ]
        ),
        "/users/demo/lobby%201%2F2"
    );
}

#[test]
fn a_fan_out_answer_without_a_key_is_stored_under_its_parent() {
    let r = resource(Pagination::None);
    let answer = body(json!({"data":{"total":2,"users":[1,2]}}));
    let page = super::page::read(
        &r,
        &Position::Start,
        &Default::default(),
        &answer,
        Some("lobby"),
    );
    assert_eq!(page.unwrap().records[0].0, "lobby");
    assert!(read(&r, &Position::Start, &Default::default(), &answer).is_err());
}

// --- Resuming after an interruption, against the example provider.

mod resume {
    use std::collections::BTreeSet;
    use std::path::PathBuf;
    use std::sync::Arc;
    use std::time::Duration;

    use tollgate_core::SystemClock;
    use tollgate_sql::{Checkpoint, RunOutcome, Storage};
    use tollgate_testkit::{ExampleApi, Limits, RunningApi};

    use crate::config::{Resource, SyncConfig};
    use crate::import::{Imported, SourceContext, import_resource};

    const CHANNELS: usize = 40;
    const PROPERTIES: usize = 100;
    const CHANNEL_USERS: &str = "/dev/v1/channel/user/demo-app/";

    struct Scenario {
        api: RunningApi,
        dir: PathBuf,
        ctx: SourceContext,
    }

    impl Scenario {
        /// The example provider (no limits) and a source importing its
        /// properties (10 a page), channels and each channel's users, paced at
        /// 100/s so that an import can be interrupted half-way.
        async fn new(name: &str) -> Self {
            let api = ExampleApi::builder()
                .properties(PROPERTIES)
                .channels(CHANNELS)
                .tenancies(0)
                .applicants(0)
                .limits(Limits::none())
                .build()
                .spawn()
                .await
                .unwrap();
            let dir =
                std::env::temp_dir().join(format!("tollgate-import-{name}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("key"), "import-test-key").unwrap();
            let text = format!(
                r#"store = "sqlite::memory:"

[[sources]]
name = "example"
base_url = "http://{addr}"
key = {{ header = "X-Api-Key", file = "{key}" }}
limits = ["100/1s"]
timeout = "5s"
concurrency = 4

[[sources.resources]]
name = "properties"
path = "/v1/properties"
records = "/data"
pagination = {{ style = "page", param = "page", size_param = "per_page", size = 10 }}
every = "1min"

[[sources.resources]]
name = "channels"
path = "/dev/v1/channel/demo-app"
records = "/data/channels"
id = "channel_name"
pagination = {{ style = "page", param = "page_no", start = 0, size_param = "page_size", size = 100 }}
every = "1min"

[[sources.resources]]
name = "channel_users"
path = "/dev/v1/channel/user/demo-app/{{channel_name}}"
records = "/data"
for_each = {{ resource = "channels", fields = {{ channel_name = "channel_name" }} }}
every = "1min"
"#,
                addr = api.addr,
                key = dir.join("key").display(),
            );
            let config = SyncConfig::parse(&text, &dir.join("sync.toml")).unwrap();
            let storage = Storage::connect(&config.store).await.unwrap();
            let source = config.sources.into_iter().next().unwrap();
            let ctx = SourceContext::new(source, storage, Arc::new(SystemClock::new())).unwrap();
            Self { api, dir, ctx }
        }

        fn resource(&self, name: &str) -> &Resource {
            self.ctx
                .source
                .resources
                .iter()
                .find(|r| r.name == name)
                .unwrap()
        }

        async fn import(&self, name: &str) -> Imported {
            import_resource(&self.ctx, self.resource(name))
                .await
                .unwrap()
        }

        /// Imports `name` until `table` holds `records` records, then drops
        /// the import as a crash would: the pages stored stay, nothing else.
        async fn interrupt(&self, name: &str, table: &str, records: u64) {
            let import = import_resource(&self.ctx, self.resource(name));
            let stored = async {
                // The table is created by the import itself.
                while self.ctx.storage.count(table).await.unwrap_or(0) < records {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            };
            tokio::select! {
                done = import => panic!("{name} finished before it was interrupted: {done:?}"),
                () = stored => {}
            }
            // Requests already sent reach the provider's log before the next run.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        /// Paths of the requests the provider saw from `from` on, and their count.
        fn requests_since(&self, from: usize) -> Vec<String> {
            let log = self.api.handle.log();
            log[from..].iter().map(|e| e.path.clone()).collect()
        }

        fn log_len(&self) -> usize {
            self.api.handle.log().len()
        }

        /// The channels whose user list a request in `paths` asked for.
        fn channels_asked(paths: &[String]) -> Vec<String> {
            paths
                .iter()
                .filter_map(|p| p.strip_prefix(CHANNEL_USERS))
                .map(|c| c.split('?').next().unwrap().to_owned())
                .collect()
        }

        async fn finished_children(&self) -> BTreeSet<String> {
            self.ctx
                .storage
                .scopes_finished_after("channel_users", 0)
                .await
                .unwrap()
                .into_iter()
                .collect()
        }

        async fn finish(self) {
            self.ctx.storage.close().await;
            self.api.shutdown().await;
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn page_number(path: &str) -> Option<u64> {
        let query = path.strip_prefix("/v1/properties?")?;
        query
            .split('&')
            .find_map(|p| p.strip_prefix("page="))
            .and_then(|n| n.parse().ok())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fan_out_resumed_after_a_crash_does_not_ask_again_for_the_children_it_finished() {
        let scenario = Scenario::new("fan-out").await;
        scenario.import("channels").await;
        scenario
            .interrupt("channel_users", "channel_users", 12)
            .await;
        let finished = scenario.finished_children().await;
        assert!(
            finished.len() >= 4 && finished.len() < CHANNELS,
            "interrupted half-way: {finished:?}"
        );
        assert!(
            scenario
                .ctx
                .storage
                .checkpoint("channel_users", "")
                .await
                .unwrap()
                .is_some(),
            "the fan-out as a whole is unfinished"
        );

        let mark = scenario.log_len();
        let resumed = scenario.import("channel_users").await;
        let asked = Scenario::channels_asked(&scenario.requests_since(mark));
        let again: Vec<&String> = asked.iter().filter(|c| finished.contains(*c)).collect();
        assert!(
            again.is_empty(),
            "asked again for {} children finished before the crash: {again:?}",
            again.len()
        );
        assert_eq!(resumed.skipped, finished.len() as u64, "{resumed:?}");
        assert_eq!(resumed.scopes + resumed.skipped, CHANNELS as u64);
        assert_eq!(asked.len() as u64, resumed.scopes, "each child asked once");
        assert_eq!(
            scenario.ctx.storage.count("channel_users").await.unwrap(),
            CHANNELS as u64
        );
        assert_eq!(
            scenario
                .ctx
                .storage
                .checkpoint("channel_users", "")
                .await
                .unwrap(),
            None,
            "a finished fan-out leaves no checkpoint"
        );

        // The next run is a new fan-out: every child is asked again (freshness).
        let mark = scenario.log_len();
        let next = scenario.import("channel_users").await;
        let asked = Scenario::channels_asked(&scenario.requests_since(mark));
        assert_eq!((next.scopes, next.skipped), (CHANNELS as u64, 0));
        assert_eq!(
            asked.iter().collect::<BTreeSet<_>>().len(),
            CHANNELS,
            "{asked:?}"
        );
        scenario.finish().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_resumed_fan_out_asks_again_for_a_child_older_than_its_period() {
        let scenario = Scenario::new("stale").await;
        scenario.import("channels").await;
        let storage = &scenario.ctx.storage;
        let now = scenario.ctx.now_ms();
        let minute = 60_000;
        // A fan-out unfinished for ten minutes (a child that kept failing):
        // `fresh` finished 10 s ago, `stale` 5 min ago, `before` before the
        // fan-out started.
        let channels = storage
            .list("channels", &tollgate_sql::ListQuery::first(3))
            .await
            .unwrap();
        let [fresh, stale, before] = [0, 1, 2].map(|i| channels[i].id.clone());
        storage
            .save_checkpoint(
                "channel_users",
                "",
                &Checkpoint {
                    cursor: String::new(),
                    pages_done: 0,
                    records_done: 0,
                    started_at_ms: now - 10 * minute,
                },
            )
            .await
            .unwrap();
        for (scope, at) in [
            (&fresh, now - 10_000),
            (&stale, now - 5 * minute),
            (&before, now - 11 * minute),
        ] {
            let outcome = RunOutcome {
                finished_at_ms: at,
                ..RunOutcome::default()
            };
            storage
                .finish_run("channel_users", scope, &outcome)
                .await
                .unwrap();
        }

        let mark = scenario.log_len();
        let resumed = scenario.import("channel_users").await;
        let asked = Scenario::channels_asked(&scenario.requests_since(mark));
        assert!(!asked.contains(&fresh), "{asked:?}");
        assert!(asked.contains(&stale), "{asked:?}");
        assert!(asked.contains(&before), "{asked:?}");
        assert_eq!((resumed.scopes, resumed.skipped), (CHANNELS as u64 - 1, 1));
        scenario.finish().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_paginated_resource_resumes_from_its_checkpoint_and_a_finished_one_starts_over() {
        let scenario = Scenario::new("pages").await;
        scenario.interrupt("properties", "properties", 30).await;
        let checkpoint = scenario
            .ctx
            .storage
            .checkpoint("properties", "")
            .await
            .unwrap()
            .expect("an unfinished import keeps its checkpoint");
        let resume_at: u64 = checkpoint
            .cursor
            .strip_prefix("n:")
            .unwrap()
            .parse()
            .unwrap();
        assert!(resume_at >= 4, "{checkpoint:?}");

        let mark = scenario.log_len();
        let resumed = scenario.import("properties").await;
        let pages: Vec<u64> = scenario
            .requests_since(mark)
            .iter()
            .filter_map(|p| page_number(p))
            .collect();
        // Pages 1 to 10 hold the 100 properties; page 11 is empty and ends it.
        let expected: Vec<u64> = (resume_at..=11).collect();
        assert_eq!(pages, expected, "resumed at page {resume_at}");
        assert_eq!(resumed.pages, 11, "pages of the whole run: {resumed:?}");
        assert_eq!(
            scenario.ctx.storage.count("properties").await.unwrap(),
            PROPERTIES as u64
        );
        assert_eq!(
            scenario
                .ctx
                .storage
                .checkpoint("properties", "")
                .await
                .unwrap(),
            None
        );

        // Finished in full, the next run imports it again from the first page.
        let mark = scenario.log_len();
        scenario.import("properties").await;
        let pages: Vec<u64> = scenario
            .requests_since(mark)
            .iter()
            .filter_map(|p| page_number(p))
            .collect();
        assert_eq!(pages, (1..=11).collect::<Vec<_>>());
        scenario.finish().await;
    }
}
