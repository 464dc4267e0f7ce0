//! `tollgate sync` against the strict example provider on 127.0.0.1: every
//! record imported, zero 429s when the limits are configured, and never a 403.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tollgate_core::{Quota, Rate, SystemClock};
use tollgate_sql::Storage;
use tollgate_sync::config::SyncConfig;
use tollgate_sync::runner::{SourceSummary, run_once};
use tollgate_testkit::{
    ExampleApi, Faults, HeaderStyle, Limits, Resource, RunningApi, sync_resources_toml,
};

const KEY: &str = "sync-e2e-key-0123456789";
/// The provider's budget, scaled down so a full import takes seconds.
const WINDOW: Duration = Duration::from_secs(2);

struct Scenario {
    dir: PathBuf,
    api: RunningApi,
}

async fn provider(
    configure: impl FnOnce(tollgate_testkit::ExampleApiBuilder) -> tollgate_testkit::ExampleApiBuilder,
) -> Scenario {
    let dir = std::env::temp_dir().join(format!(
        "tollgate-sync-e2e-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("key"), KEY).unwrap();
    let builder = ExampleApi::builder()
        .channels(30)
        .properties(60)
        .tenancies(40)
        .applicants(20)
        .key(KEY)
        .strict(true)
        .limits(Limits::per_key(Quota::rolling(Rate::new(50, WINDOW))));
    let api = configure(builder).build().spawn().await.unwrap();
    Scenario { dir, api }
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        % 1_000_000_007
}

fn config(scenario: &Scenario, limits: &str, concurrency: u32) -> SyncConfig {
    let text = format!(
        r#"
store = "sqlite://sync.db"

[[sources]]
name = "example"
base_url = "http://{addr}"
key = {{ header = "X-Api-Key", file = "{key}" }}
limits = {limits}
timeout = "2s"
concurrency = {concurrency}

{resources}
"#,
        addr = scenario.api.addr,
        key = scenario.dir.join("key").display(),
        resources = sync_resources_toml(
            &[
                Resource::Properties,
                Resource::Tenancies,
                Resource::Applicants,
                Resource::Channels,
                Resource::ChannelUsers
            ],
            25
        ),
    );
    SyncConfig::parse(&text, &scenario.dir.join("sync.toml")).unwrap()
}

async fn import(scenario: &Scenario, limits: &str, concurrency: u32) -> (SourceSummary, Storage) {
    let config = config(scenario, limits, concurrency);
    let storage = Storage::connect(&config.store).await.unwrap();
    let summary = run_once(&config, &storage, Arc::new(SystemClock::new()))
        .await
        .unwrap();
    (summary.into_iter().next().unwrap(), storage)
}

async fn assert_everything_stored(scenario: &Scenario, storage: &Storage) {
    let handle = &scenario.api.handle;
    for (table, resource) in [
        ("properties", Resource::Properties),
        ("tenancies", Resource::Tenancies),
        ("applicants", Resource::Applicants),
        ("channels", Resource::Channels),
        ("channel_users", Resource::ChannelUsers),
    ] {
        let expected = handle.expected_records(resource).len() as u64;
        assert_eq!(storage.count(table).await.unwrap(), expected, "{table}");
    }
}

fn assert_never_over_the_budget(scenario: &Scenario) {
    let handle = &scenario.api.handle;
    assert!(
        handle.blocked_keys().is_empty(),
        "blocked: {:?}",
        handle.block_events()
    );
    assert!(handle.max_in_any_window(KEY, WINDOW) <= 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_import_at_1_4_and_16_workers_stores_everything_with_zero_429s() {
    for workers in [1, 4, 16] {
        let scenario = provider(|b| b).await;
        let (summary, storage) = import(&scenario, "[\"50/2s\"]", workers).await;
        assert_eq!(summary.errors, Vec::<String>::new(), "{workers} workers");
        assert_eq!(summary.rejected_429, 0, "{workers} workers: {summary:?}");
        assert!(!summary.forbidden);
        assert_everything_stored(&scenario, &storage).await;
        assert_never_over_the_budget(&scenario);
        storage.close().await;
        let _ = std::fs::remove_dir_all(&scenario.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_and_garbage_bodies_are_retried_and_never_stored() {
    let scenario = provider(|b| b.faults(Faults::none().internal_errors(0.1).garbage(0.1))).await;
    let (summary, storage) = import(&scenario, "[\"50/2s\"]", 4).await;
    assert_eq!(summary.errors, Vec::<String>::new());
    assert!(
        summary.failures > 0,
        "faults were injected and retried: {summary:?}"
    );
    assert_everything_stored(&scenario, &storage).await;
    assert_never_over_the_budget(&scenario);
    storage.close().await;
    let _ = std::fs::remove_dir_all(&scenario.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discover_learns_the_limits_from_the_headers_and_is_never_blocked() {
    let scenario = provider(|b| b.headers(HeaderStyle::Ietf)).await;
    let (summary, storage) = import(&scenario, "\"discover\"", 4).await;
    assert_eq!(summary.errors, Vec::<String>::new());
    assert!(!summary.forbidden);
    assert_everything_stored(&scenario, &storage).await;
    assert_never_over_the_budget(&scenario);
    storage.close().await;
    let _ = std::fs::remove_dir_all(&scenario.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_from_a_tighter_provider_is_waited_out_and_the_report_shows_it_honoured() {
    // The provider allows 10 per 2 s; the configuration claims 50: the pacer
    // runs into a 429, pauses until its Retry-After, and goes on.
    let scenario = provider(|b| {
        b.limits(Limits::per_key(Quota::rolling(Rate::new(10, WINDOW))))
            .headers(HeaderStyle::None)
    })
    .await;
    let config = config(&scenario, "[\"50/2s\"]", 1);
    let storage = Storage::connect(&config.store).await.unwrap();
    let summary = run_once(&config, &storage, Arc::new(SystemClock::new()))
        .await
        .unwrap();
    let summary = &summary[0];
    assert!(summary.rejected_429 >= 1, "{summary:?}");
    assert_eq!(summary.errors, Vec::<String>::new());
    assert!(
        scenario.api.handle.blocked_keys().is_empty(),
        "never early after a 429"
    );
    assert_everything_stored(&scenario, &storage).await;

    let report = tollgate_sync::report::report(&config.sources[0], &storage)
        .await
        .unwrap();
    assert_eq!(report.rejections.len() as u64, summary.rejected_429);
    assert!(report.all_honoured, "{:?}", report.rejections);
    assert!(report.rejections.iter().all(|r| r.honoured == Some(true)));
    assert_eq!(report.storage_layer, "SQLite");
    assert_eq!(report.key_last5.as_deref(), Some("56789"));
    // A fan-out's last import is its children's, summed.
    let users = report
        .resources
        .iter()
        .find(|r| r.resource == "channel_users")
        .unwrap();
    assert_eq!(users.last_records, Some(users.stored), "{users:?}");
    assert!(users.last_duration_ms.is_some(), "{users:?}");
    let text = report.to_text();
    assert!(
        text.contains("Handles 429:") && text.contains("yes: every 429 was caught"),
        "{text}"
    );
    // Periods read as a person writes them (planned 15 min, 5 s, …).
    assert!(text.contains("channel_users every 5.0 s"), "{text}");
    storage.close().await;
    let _ = std::fs::remove_dir_all(&scenario.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_import_asks_if_anything_changed_and_stores_nothing_for_a_304() {
    let scenario = provider(|b| b).await;
    let (first, storage) = import(&scenario, "[\"50/2s\"]", 4).await;
    assert_eq!(first.unchanged, 0);
    let first_channel = storage
        .list("channel_users", &tollgate_sql::ListQuery::first(1))
        .await
        .unwrap()
        .remove(0);
    let second = run_once(
        &config(&scenario, "[\"50/2s\"]", 4),
        &storage,
        Arc::new(SystemClock::new()),
    )
    .await
    .unwrap()
    .remove(0);
    // Every channel's users (one request each, no pagination) came back 304.
    let channels = scenario
        .api
        .handle
        .expected_records(Resource::Channels)
        .len() as u64;
    assert_eq!(second.unchanged, channels, "{second:?}");
    let not_modified = scenario
        .api
        .handle
        .log()
        .iter()
        .filter(|e| e.status == Some(304))
        .count() as u64;
    assert_eq!(not_modified, channels);
    let after = storage
        .get("channel_users", &first_channel.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.body, first_channel.body);
    assert_everything_stored(&scenario, &storage).await;
    assert_never_over_the_budget(&scenario);
    storage.close().await;
    let _ = std::fs::remove_dir_all(&scenario.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tighter_limit_the_provider_announces_is_kept_to_without_a_429() {
    // The configuration claims 50 per 2 s; the provider allows 10 and says so
    // in its RateLimit fields from the first answer on.
    let scenario = provider(|b| {
        b.limits(Limits::per_key(Quota::rolling(Rate::new(10, WINDOW))))
            .headers(HeaderStyle::Ietf)
    })
    .await;
    let (summary, storage) = import(&scenario, "[\"50/2s\"]", 4).await;
    assert_eq!(summary.errors, Vec::<String>::new());
    assert_eq!(summary.rejected_429, 0, "{summary:?}");
    assert_everything_stored(&scenario, &storage).await;
    assert!(scenario.api.handle.max_in_any_window(KEY, WINDOW) <= 10);
    storage.close().await;
    let _ = std::fs::remove_dir_all(&scenario.dir);
}
