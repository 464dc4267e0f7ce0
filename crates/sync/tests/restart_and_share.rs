//! A budget outlives its process and is shared between processes: a restarted
//! import counts what the previous one sent and waits out its `429`; two
//! imports on one key through one Redis server keep to the key's limit
//! together, and, filling one PostgreSQL database, divide the work — against
//! the strict example provider on 127.0.0.1.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tollgate_core::{Clock, Quota, Rate, SystemClock, Timestamp};
use tollgate_sql::Storage;
use tollgate_sync::config::SyncConfig;
use tollgate_sync::runner::{SourceSummary, run_once};
use tollgate_testkit::{
    ExampleApi, Limits, Resource, RunningApi, scratch_dir, sync_resources_toml,
};

const KEY: &str = "sync-restart-key-0123456789";
const BUDGET: u32 = 10;
const WINDOW: Duration = Duration::from_secs(2);

fn redis_url() -> String {
    std::env::var("TOLLGATE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = scratch_dir(&format!("sync-{name}"));
    std::fs::write(dir.join("key"), KEY).unwrap();
    dir
}

/// 60 properties at 5 a page: a first import takes 13 requests, more than the
/// budget; a later one asks only for what changed since (one page).
async fn provider() -> RunningApi {
    ExampleApi::builder()
        .channels(0)
        .properties(60)
        .key(KEY)
        .strict(true)
        .limits(Limits::per_key(Quota::rolling(Rate::new(BUDGET, WINDOW))))
        .build()
        .spawn()
        .await
        .unwrap()
}

fn config(api: &RunningApi, dir: &std::path::Path, redis: Option<&str>) -> SyncConfig {
    config_with(api, dir, redis, "sqlite://sync.db", &[Resource::Properties])
}

fn config_with(
    api: &RunningApi,
    dir: &std::path::Path,
    redis: Option<&str>,
    store: &str,
    resources: &[Resource],
) -> SyncConfig {
    let redis = redis.map_or(String::new(), |url| format!("redis = \"{url}\"\n"));
    let text = format!(
        r#"
store = "{store}"
{redis}
[[sources]]
name = "example"
base_url = "http://{addr}"
key = {{ header = "X-Api-Key", file = "{key}" }}
limits = ["{BUDGET}/2s"]
timeout = "2s"
concurrency = 2

{resources}
"#,
        addr = api.addr,
        key = dir.join("key").display(),
        resources = sync_resources_toml(resources, 5),
    );
    SyncConfig::parse(&text, &dir.join("sync.toml")).unwrap()
}

async fn import(config: &SyncConfig) -> SourceSummary {
    let storage = Storage::connect(&config.store).await.unwrap();
    let summary = run_once(config, &storage, Arc::new(SystemClock::new()))
        .await
        .unwrap();
    storage.close().await;
    summary.into_iter().next().unwrap()
}

fn assert_clean(summary: &SourceSummary) {
    assert_eq!(summary.errors, Vec::<String>::new());
    assert_eq!(summary.rejected_429, 0, "{summary:?}");
    assert!(!summary.forbidden);
}

/// The first import ends with the whole window used; a second one started at
/// once, on the same storage, meets a `429` on its first request unless it
/// counts the first one's sends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_import_counts_what_the_previous_process_sent() {
    let api = provider().await;
    let dir = temp_dir("restart");
    let config = config(&api, &dir, None);
    assert_clean(&import(&config).await);
    assert_clean(&import(&config).await);
    assert_eq!(api.handle.max_in_any_window(KEY, WINDOW), BUDGET as usize);
    assert!(api.handle.blocked_keys().is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A `429` the previous process received names a retry instant; the next
/// process sends nothing before it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_import_waits_for_the_previous_processs_retry_instant() {
    let api = provider().await;
    let dir = temp_dir("retry");
    let config = config(&api, &dir, None);
    let clock = SystemClock::new();
    let retry_at = clock.now() + Duration::from_millis(1_500);
    let storage = Storage::connect(&config.store).await.unwrap();
    let now_ms = clock.now().as_millis() as i64;
    storage
        .record_429("example", now_ms, retry_at.as_millis() as i64)
        .await
        .unwrap();
    storage.close().await;
    assert_clean(&import(&config).await);
    let first = api.handle.log().iter().map(|e| e.at).min().unwrap();
    assert!(
        first >= Timestamp::from_millis(retry_at.as_millis()),
        "the first request came {:?} before the retry instant",
        Timestamp::from_millis(retry_at.as_millis()).saturating_since(first)
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two processes on one key (each its own storage, its own Redis connection)
/// import at the same time: together they never exceed the key's limit, where
/// each alone would spend the whole budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_imports_on_one_key_share_its_budget_through_redis() {
    let api = provider().await;
    let url = redis_url();
    let (a, b) = (temp_dir("share-a"), temp_dir("share-b"));
    let (config_a, config_b) = (config(&api, &a, Some(&url)), config(&api, &b, Some(&url)));
    let (first, second) = tokio::join!(import(&config_a), import(&config_b));
    assert_clean(&first);
    assert_clean(&second);
    assert_eq!(api.handle.max_in_any_window(KEY, WINDOW), BUDGET as usize);
    assert!(api.handle.blocked_keys().is_empty());
    for dir in [a, b] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// A database of its own on the test PostgreSQL server; dropped by the caller.
async fn postgres_database() -> (String, String) {
    use sqlx::Connection;
    let server = std::env::var("TOLLGATE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let mut admin = sqlx::PgConnection::connect(&server)
        .await
        .unwrap_or_else(|e| {
            panic!("PostgreSQL is not reachable at {server} ({e}): scripts/test starts it")
        });
    let name = format!(
        "tollgate_sync_share_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos()
    );
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let base = server.rsplit_once('/').unwrap().0;
    (format!("{base}/{name}"), name)
}

async fn drop_database(name: &str) {
    use sqlx::Connection;
    let server = std::env::var("TOLLGATE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let mut admin = sqlx::PgConnection::connect(&server).await.unwrap();
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await;
}

/// Two processes on one key, one Redis server and one PostgreSQL database
/// import at the same time: each page is fetched once, by one of them, every
/// record is stored, and together they keep to the key's limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_imports_into_one_database_divide_the_work_and_fetch_no_page_twice() {
    let api = ExampleApi::builder()
        .channels(12)
        .properties(60)
        .key(KEY)
        .strict(true)
        .limits(Limits::per_key(Quota::rolling(Rate::new(BUDGET, WINDOW))))
        .build()
        .spawn()
        .await
        .unwrap();
    let url = redis_url();
    let (store, database) = postgres_database().await;
    let resources = [
        Resource::Properties,
        Resource::Channels,
        Resource::ChannelUsers,
    ];
    let (a, b) = (temp_dir("divide-a"), temp_dir("divide-b"));
    let config_a = config_with(&api, &a, Some(&url), &store, &resources);
    let config_b = config_with(&api, &b, Some(&url), &store, &resources);
    let (first, second) = tokio::join!(import(&config_a), import(&config_b));
    assert_clean(&first);
    assert_clean(&second);
    assert!(
        first.requests > 0 && second.requests > 0,
        "both took part: {first:?} {second:?}"
    );

    let mut fetched: Vec<String> = api
        .handle
        .log()
        .iter()
        .filter(|e| e.status.is_some_and(|s| (200..300).contains(&s)))
        .map(|e| e.path.clone())
        .collect();
    let total = fetched.len();
    fetched.sort();
    fetched.dedup();
    assert_eq!(fetched.len(), total, "a page was fetched twice");

    let storage = Storage::connect(&store).await.unwrap();
    for (table, resource) in [
        ("properties", Resource::Properties),
        ("channels", Resource::Channels),
    ] {
        let expected = api.handle.expected_records(resource).len() as u64;
        assert_eq!(storage.count(table).await.unwrap(), expected, "{table}");
    }
    storage.close().await;
    assert_eq!(api.handle.max_in_any_window(KEY, WINDOW), BUDGET as usize);
    drop_database(&database).await;
    for dir in [a, b] {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// `redis_cluster = true` talks to the server as a cluster node: the test
/// server (not in cluster mode) refuses, and the import says so before
/// sending anything.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_node_that_is_no_cluster_stops_the_import_before_any_request() {
    let api = provider().await;
    let dir = temp_dir("cluster");
    let mut config = config(&api, &dir, Some(&redis_url()));
    config.redis_cluster = true;
    let storage = Storage::connect(&config.store).await.unwrap();
    let err = run_once(&config, &storage, Arc::new(SystemClock::new()))
        .await
        .expect_err("a plain server is no cluster node");
    assert!(
        err.to_string().contains("cannot reach the Redis server"),
        "{err}"
    );
    assert!(api.handle.log().is_empty(), "nothing was sent");
    storage.close().await;
    let _ = std::fs::remove_dir_all(&dir);
}
