//! A budget outlives its process and is shared between processes: a restarted
//! import counts what the previous one sent and waits out its `429`, and two
//! imports on one key through one Redis server keep to the key's limit
//! together — against the strict example provider on 127.0.0.1.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tollgate_core::{Clock, Quota, Rate, SystemClock, Timestamp};
use tollgate_sql::Storage;
use tollgate_sync::config::SyncConfig;
use tollgate_sync::runner::{SourceSummary, run_once};
use tollgate_testkit::{ExampleApi, Limits, Resource, RunningApi, sync_resources_toml};

const KEY: &str = "sync-restart-key-0123456789";
const BUDGET: u32 = 10;
const WINDOW: Duration = Duration::from_secs(2);

fn redis_url() -> String {
    std::env::var("TOLLGATE_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn temp_dir(name: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let dir = std::env::temp_dir().join(format!(
        "tollgate-sync-{name}-{}-{nanos}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
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
    let redis = redis.map_or(String::new(), |url| format!("redis = \"{url}\"\n"));
    let text = format!(
        r#"
store = "sqlite://sync.db"
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
        resources = sync_resources_toml(&[Resource::Properties], 5),
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
