//! A fan-out with a bulk endpoint reads its children in batches, against the
//! strict example provider on 127.0.0.1: every record stored, one request per
//! batch of parents and none per parent, zero 429s, and an interrupted read
//! resumes after its last stored batch.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tollgate_core::{Quota, Rate, SystemClock};
use tollgate_sql::{ListQuery, Storage};
use tollgate_sync::config::SyncConfig;
use tollgate_sync::import::{SourceContext, import_resource};
use tollgate_sync::runner::run_once;
use tollgate_testkit::{Endpoint, ExampleApi, Limits, Resource, RunningApi, scratch_dir};

const KEY: &str = "sync-bulk-key-0123456789";
/// The provider's budget, scaled down so an import takes seconds.
const BUDGET: u32 = 50;
const WINDOW: Duration = Duration::from_secs(2);
const PROPERTIES: usize = 250;
/// Ids a bulk request asks for: 250 properties take 7 requests.
const MAX: usize = 40;

struct Scenario {
    api: RunningApi,
    dir: PathBuf,
    config: SyncConfig,
}

impl Scenario {
    async fn new(name: &str) -> Self {
        let api = ExampleApi::builder()
            .channels(0)
            .properties(PROPERTIES)
            .tenancies(0)
            .applicants(0)
            .key(KEY)
            .strict(true)
            .limits(Limits::per_key(Quota::rolling(Rate::new(BUDGET, WINDOW))))
            .build()
            .spawn()
            .await
            .unwrap();
        let dir = scratch_dir(&format!("sync-bulk-{name}"));
        std::fs::write(dir.join("key"), KEY).unwrap();
        let text = format!(
            r#"
store = "sqlite://sync.db"

[[sources]]
name = "example"
base_url = "http://{addr}"
key = {{ header = "X-Api-Key", file = "{key}" }}
limits = ["{BUDGET}/2s"]
timeout = "2s"
concurrency = 4

[[sources.resources]]
name = "properties"
path = "/v1/properties"
records = "/data"
pagination = {{ style = "page", param = "page", size_param = "per_page", size = 25 }}
every = "15min"

[[sources.resources]]
name = "property_details"
path = "/v1/properties/{{id}}"
records = ""
id = "id"
for_each = {{ resource = "properties", fields = {{ id = "id" }} }}
bulk = {{ path = "/v1/properties/bulk", param = "ids", max = {MAX}, records = "/data" }}
every = "15min"
"#,
            addr = api.addr,
            key = dir.join("key").display(),
        );
        let config = SyncConfig::parse(&text, &dir.join("sync.toml")).unwrap();
        Self { api, dir, config }
    }

    /// The ids each bulk request asked for, in the order they were sent.
    fn bulk_requests(&self) -> Vec<Vec<String>> {
        self.api
            .handle
            .log()
            .iter()
            .filter(|e| e.endpoint == Some(Endpoint::PropertiesBulk))
            .map(|e| {
                let (_, query) = e.path.split_once("ids=").expect("ids in the query");
                let ids = query.split('&').next().unwrap();
                ids.split(',').map(str::to_owned).collect()
            })
            .collect()
    }

    /// Requests for one property at a time: there must be none.
    fn single_requests(&self) -> usize {
        self.api
            .handle
            .log()
            .iter()
            .filter(|e| e.endpoint == Some(Endpoint::Property))
            .count()
    }

    fn assert_never_limited(&self) {
        let log = self.api.handle.log();
        let limited: Vec<_> = log.iter().filter(|e| e.status == Some(429)).collect();
        assert!(limited.is_empty(), "429s: {limited:?}");
        assert!(
            self.api.handle.blocked_keys().is_empty(),
            "blocked: {:?}",
            self.api.handle.block_events()
        );
        assert!(self.api.handle.max_in_any_window(KEY, WINDOW) <= BUDGET as usize);
    }

    /// Every property is stored as a detail, as the provider serves it.
    async fn assert_every_detail_stored(&self, storage: &Storage) {
        let expected = self.api.handle.expected_records(Resource::Properties);
        assert_eq!(expected.len(), PROPERTIES);
        assert_eq!(
            storage.count("property_details").await.unwrap(),
            PROPERTIES as u64
        );
        let mut stored = Vec::new();
        let mut query = ListQuery::first(1000);
        loop {
            let page = storage.list("property_details", &query).await.unwrap();
            let Some(last) = page.last() else { break };
            query.after = Some(last.id.clone());
            stored.extend(page);
        }
        for (record, want) in stored.iter().zip(&expected) {
            assert_eq!(Some(record.id.as_str()), want["id"].as_str());
            assert_eq!(&record.body, want, "{}", record.id);
        }
    }

    async fn finish(self, storage: Storage) {
        storage.close().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fan_out_with_a_bulk_endpoint_asks_once_per_batch_and_never_per_record() {
    let scenario = Scenario::new("whole").await;
    let storage = Storage::connect(&scenario.config.store).await.unwrap();
    let summary = run_once(&scenario.config, &storage, Arc::new(SystemClock::new()))
        .await
        .unwrap();
    let summary = &summary[0];
    assert_eq!(summary.errors, Vec::<String>::new());
    assert_eq!(summary.rejected_429, 0, "{summary:?}");
    scenario.assert_every_detail_stored(&storage).await;
    assert_eq!(scenario.single_requests(), 0, "no request per property");
    let batches = scenario.bulk_requests();
    assert_eq!(batches.len(), PROPERTIES.div_ceil(MAX), "{batches:?}");
    assert!(batches.iter().all(|ids| ids.len() <= MAX));
    let asked: BTreeSet<&String> = batches.iter().flatten().collect();
    assert_eq!(asked.len(), PROPERTIES, "each property asked for once");
    assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), PROPERTIES);
    scenario.assert_never_limited();

    // The schedule counts one request per batch, and says the bulk
    // endpoint is used.
    let plan = tollgate_sync::schedule::schedule(&scenario.config.sources[0], &storage).await;
    assert!(
        plan.verdict.contains(
            "- property_details: read in bulk from /v1/properties/bulk (`ids`, up to 40 a request)"
        ),
        "{}",
        plan.verdict
    );
    assert!(
        plan.verdict.contains("7 request(s) a run for 250 records"),
        "{}",
        plan.verdict
    );

    // Wanted every 2 s, the details take 7 requests (3.5/s under 25/s): they
    // fit. One request per property would take 125/s, and be stretched.
    let mut source = scenario.config.sources[0].clone();
    source.resources[1].every = Duration::from_secs(2);
    let plan = tollgate_sync::schedule::schedule(&source, &storage).await;
    assert!(plan.verdict.starts_with("Fits"), "{}", plan.verdict);
    assert_eq!(plan.periods[1].1, Duration::from_secs(2), "{plan:?}");
    if let Some(for_each) = &mut source.resources[1].for_each {
        for_each.bulk = None;
    }
    let plan = tollgate_sync::schedule::schedule(&source, &storage).await;
    assert!(plan.periods[1].1 >= Duration::from_secs(10), "{plan:?}");

    // The report reads a bulk read's last import from its one run.
    let report = tollgate_sync::report::report(&scenario.config.sources[0], &storage)
        .await
        .unwrap();
    let details = &report.resources[1];
    assert_eq!(details.last_records, Some(PROPERTIES as u64), "{details:?}");
    assert!(details.last_duration_ms.is_some(), "{details:?}");
    scenario.finish(storage).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_bulk_read_resumes_after_its_last_stored_batch() {
    let scenario = Scenario::new("resume").await;
    let storage = Storage::connect(&scenario.config.store).await.unwrap();
    let source = scenario.config.sources[0].clone();
    let ctx = SourceContext::new(source, storage.clone(), Arc::new(SystemClock::new())).unwrap();
    let properties = &ctx.source.resources[0];
    let details = &ctx.source.resources[1];
    import_resource(&ctx, properties).await.unwrap();

    // Batches go one after another: once the second is asked for, the first
    // is stored. Then the import stops, as a crash would stop it.
    let sent = async {
        while scenario.bulk_requests().len() < 2 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    tokio::select! {
        done = import_resource(&ctx, details) => panic!("finished before it was interrupted: {done:?}"),
        () = sent => {}
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A new process: the storage layer opened again, a new context.
    drop(ctx);
    storage.close().await;
    let storage = Storage::connect(&scenario.config.store).await.unwrap();
    let source = scenario.config.sources[0].clone();
    let ctx = SourceContext::new(source, storage.clone(), Arc::new(SystemClock::new())).unwrap();
    let details = &ctx.source.resources[1];
    let before = scenario.bulk_requests();
    let first: BTreeSet<String> = before[0].iter().cloned().collect();
    assert_eq!(first.len(), MAX);

    let resumed = import_resource(&ctx, details).await.unwrap();
    let after = scenario.bulk_requests()[before.len()..].to_vec();
    assert!(
        after.iter().flatten().all(|id| !first.contains(id)),
        "a stored batch was asked for again: {after:?}"
    );
    assert!(
        after.len() < PROPERTIES.div_ceil(MAX),
        "the resumed read asked for {} batches",
        after.len()
    );
    // Only the parents after the stored batches were asked for; the run's
    // records count the batches stored before the interruption too.
    assert_eq!(
        resumed.scopes,
        after.iter().map(Vec::len).sum::<usize>() as u64,
        "{resumed:?}"
    );
    assert!(resumed.scopes < PROPERTIES as u64, "{resumed:?}");
    assert_eq!(resumed.records, PROPERTIES as u64, "{resumed:?}");
    assert_eq!(scenario.single_requests(), 0);
    scenario.assert_every_detail_stored(&storage).await;
    scenario.assert_never_limited();

    // A finished read leaves no checkpoint: the next run asks for every batch.
    let from = scenario.bulk_requests().len();
    let next = import_resource(&ctx, details).await.unwrap();
    assert_eq!(next.records, PROPERTIES as u64, "{next:?}");
    assert_eq!(
        scenario.bulk_requests().len() - from,
        PROPERTIES.div_ceil(MAX)
    );
    drop(ctx);
    scenario.finish(storage).await;
}
