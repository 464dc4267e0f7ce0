//! The outbox against the strict example provider on 127.0.0.1: submissions
//! accepted by the daemon's API are delivered exactly once, inside the budget
//! the running imports share, urgent ones first, and after an outage.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::oneshot;
use tollgate_core::{Clock, Quota, Rate, SystemClock};
use tollgate_sql::{Storage, SubmissionState};
use tollgate_sync::api::{ApiState, router};
use tollgate_sync::config::SyncConfig;
use tollgate_sync::daemon::Daemon;
use tollgate_testkit::{
    ExampleApi, HeaderStyle, Limits, Resource, RunningApi, WriteOutcome, scratch_dir,
    sync_resources_toml,
};

const KEY: &str = "sync-outbox-key-0123456789";
/// The provider's budget, scaled down from 50/60s so a thousand submissions
/// take seconds.
const BUDGET: u32 = 100;
const WINDOW: Duration = Duration::from_secs(1);

struct Daemonised {
    api: RunningApi,
    dir: PathBuf,
    storage: Storage,
    daemon: Arc<Daemon>,
    /// The daemon's API.
    base: String,
    http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    running: Option<tokio::task::JoinHandle<()>>,
}

impl Daemonised {
    /// The provider, the daemon's API serving; the daemon (imports and
    /// outbox) not yet running.
    async fn new(name: &str) -> Self {
        Self::with_budgets(name, BUDGET, BUDGET).await
    }

    /// The same, the provider allowing `allowed` per second and the source
    /// configured with `budget` per second. A source configured looser than
    /// its provider announces nothing, or the pacer would keep to what it
    /// announces.
    async fn with_budgets(name: &str, allowed: u32, budget: u32) -> Self {
        let headers = if budget > allowed {
            HeaderStyle::None
        } else {
            HeaderStyle::Ietf
        };
        let api = ExampleApi::builder()
            .channels(20)
            .properties(60)
            .tenancies(40)
            .key(KEY)
            .strict(true)
            .headers(headers)
            .limits(Limits::per_key(Quota::rolling(Rate::new(allowed, WINDOW))))
            .build()
            .spawn()
            .await
            .unwrap();
        let dir = scratch_dir(&format!("outbox-{name}"));
        std::fs::write(dir.join("key"), KEY).unwrap();
        let text = format!(
            r#"
store = "sqlite://sync.db"

[[sources]]
name = "example"
base_url = "http://{addr}"
key = {{ header = "X-Api-Key", file = "{key}" }}
limits = ["{budget}/1s"]
timeout = "2s"
concurrency = 4

[sources.submit]
idempotency_header = "Idempotency-Key"
{resources}
"#,
            addr = api.addr,
            budget = budget,
            key = dir.join("key").display(),
            resources = sync_resources_toml(
                &[
                    Resource::Properties,
                    Resource::Tenancies,
                    Resource::Channels,
                    Resource::ChannelUsers
                ],
                5
            ),
        );
        let config = SyncConfig::parse(&text, &dir.join("sync.toml")).unwrap();
        let storage = Storage::connect(&config.store).await.unwrap();
        let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
        let daemon = Arc::new(
            Daemon::connect(&config, &storage, Arc::clone(&clock))
                .await
                .unwrap(),
        );
        let state = ApiState {
            storage: storage.clone(),
            daemon: Arc::clone(&daemon),
            clock,
            resources: Arc::new(Vec::new()),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router(state)).await });
        Self {
            api,
            dir,
            storage,
            daemon,
            base,
            http: reqwest::Client::new(),
            stop: None,
            running: None,
        }
    }

    /// Runs the daemon: every import on its schedule, and the outbox.
    fn run(&mut self) {
        let (stop, stopped) = oneshot::channel();
        let daemon = Arc::clone(&self.daemon);
        self.running = Some(tokio::spawn(async move {
            daemon
                .run(async {
                    let _ = stopped.await;
                })
                .await;
        }));
        self.stop = Some(stop);
    }

    /// Submits an appointment; the `202`'s body.
    async fn submit(&self, key: &str, priority: &str) -> Value {
        let body = json!({ "applicant": key, "slot": "2026-12-01T10:00:00Z" });
        self.submit_raw(key, priority, "application/json", body.to_string())
            .await
    }

    /// Submits `body` as an appointment; the `202`'s body.
    async fn submit_raw(
        &self,
        key: &str,
        priority: &str,
        content_type: &str,
        body: String,
    ) -> Value {
        let response = self
            .http
            .post(format!(
                "{}/v1/sources/example/submit/v1/appointments?priority={priority}",
                self.base
            ))
            .header("Idempotency-Key", key)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202, "{key}");
        let location = response.headers()["location"].to_str().unwrap().to_owned();
        let body: Value = response.json().await.unwrap();
        assert_eq!(location, format!("/v1/outbox/{}", body["id"]));
        body
    }

    async fn status(&self, id: &Value) -> Value {
        let url = format!("{}/v1/outbox/{id}", self.base);
        self.http
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Waits until `n` submissions are delivered.
    async fn delivered(&self, n: u64, within: Duration) {
        let started = Instant::now();
        loop {
            let counts = self.storage.outbox_counts("example").await.unwrap();
            let delivered = counts
                .iter()
                .find(|(s, _)| *s == SubmissionState::Delivered)
                .map_or(0, |(_, n)| *n);
            if delivered >= n {
                return;
            }
            assert!(
                started.elapsed() < within,
                "{delivered} of {n} delivered after {within:?}: {counts:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(running) = self.running.take() {
            running.await.unwrap();
        }
        self.storage.close().await;
        let _ = std::fs::remove_dir_all(&self.dir);
        self.api.shutdown().await;
    }

    /// The budget and strict mode were kept: no `429`, no block, never more
    /// than the budget in any window.
    fn assert_within_budget(&self) {
        let handle = &self.api.handle;
        assert_eq!(
            handle.stats(KEY).limited,
            0,
            "429s: {:?}",
            handle.stats(KEY)
        );
        assert!(handle.blocked_keys().is_empty());
        let most = handle.max_in_any_window(KEY, WINDOW);
        assert!(most <= BUDGET as usize, "{most} requests in one window");
    }
}

/// Per idempotency key, how many times the provider created a record.
fn created_per_key(api: &RunningApi) -> HashMap<String, usize> {
    let mut created = HashMap::new();
    for write in api.handle.writes() {
        let key = write
            .idempotency_key
            .clone()
            .expect("every write carries its key");
        if matches!(write.outcome, WriteOutcome::Created { .. }) {
            *created.entry(key).or_default() += 1;
        }
    }
    created
}

/// A thousand submissions from eight clients while the imports run: each
/// created exactly once by the provider, with zero `429`s, never more than
/// the budget in a window, and the imports went on in between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_submissions_mixed_with_an_import_are_delivered_exactly_once_inside_the_budget()
{
    let mut d = Daemonised::new("thousand").await;
    d.run();
    let started = Instant::now();
    let d = Arc::new(d);
    let clients: Vec<_> = (0..8)
        .map(|client| {
            let d = Arc::clone(&d);
            tokio::spawn(async move {
                for i in 0..125 {
                    d.submit(&format!("c{client}-{i:03}"), "normal").await;
                }
            })
        })
        .collect();
    for client in clients {
        client.await.unwrap();
    }
    d.delivered(1_000, Duration::from_secs(60)).await;
    let elapsed = started.elapsed();
    let created = created_per_key(&d.api);
    assert_eq!(created.len(), 1_000);
    assert!(
        created.values().all(|n| *n == 1),
        "a submission was created twice"
    );
    let log = d.api.handle.log();
    let writes: Vec<_> = log
        .iter()
        .filter(|e| e.method == http::Method::POST)
        .collect();
    let (first, last) = (writes[0].at, writes[writes.len() - 1].at);
    let reads_between = log
        .iter()
        .filter(|e| e.method == http::Method::GET && e.at > first && e.at < last)
        .count();
    // Submissions go first, so the imports take only the slots no waiting
    // submission wants: how many depends on how fast the clients submit
    // (17 to 80 seen); none at all would mean they stood still.
    assert!(
        reads_between >= 10,
        "the imports stood still: {reads_between} reads"
    );
    d.assert_within_budget();
    println!(
        "1000 submissions delivered in {elapsed:?}; {} requests in all, {} imports' among them; at most {} in a window of {WINDOW:?}; {} 429s",
        log.len(),
        log.len() - writes.len(),
        d.api.handle.max_in_any_window(KEY, WINDOW),
        d.api.handle.stats(KEY).limited,
    );
    Arc::into_inner(d).unwrap().stop().await;
}

/// Thirty normal submissions queued first, ten urgent ones after: the urgent
/// ones reach the provider first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn urgent_submissions_go_before_normal_ones_queued_earlier() {
    let mut d = Daemonised::new("urgent").await;
    for i in 0..30 {
        d.submit(&format!("normal-{i:02}"), "normal").await;
    }
    for i in 0..10 {
        d.submit(&format!("urgent-{i:02}"), "urgent").await;
    }
    d.submit("bulk-00", "bulk").await;
    d.run();
    d.delivered(41, Duration::from_secs(30)).await;
    let order: Vec<String> = d
        .api
        .handle
        .writes()
        .into_iter()
        .map(|w| w.idempotency_key.unwrap())
        .collect();
    let urgent: BTreeSet<&str> = order[..10].iter().map(String::as_str).collect();
    assert!(
        urgent.iter().all(|k| k.starts_with("urgent-")),
        "the first ten delivered: {urgent:?}"
    );
    assert!(order[10..40].iter().all(|k| k.starts_with("normal-")));
    assert_eq!(order[40], "bulk-00");
    d.assert_within_budget();
    d.stop().await;
}

/// A submission made while the provider is down is retried with backoff and
/// delivered once it is back: once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submission_during_an_outage_is_delivered_after_it() {
    let mut d = Daemonised::new("outage").await;
    d.api.handle.set_outage(true);
    d.run();
    let accepted = d.submit("during-the-outage", "urgent").await;
    let started = Instant::now();
    let status = loop {
        let status = d.status(&accepted["id"]).await;
        if status["attempts"].as_u64() >= Some(2) && status["state"] == "queued" {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        status["error"].as_str().unwrap().contains("503"),
        "{status}"
    );
    assert!(d.api.handle.writes().is_empty());
    d.api.handle.set_outage(false);
    d.delivered(1, Duration::from_secs(20)).await;
    let status = d.status(&accepted["id"]).await;
    assert_eq!(status["state"], "delivered", "{status}");
    assert_eq!(status["response"]["status"], 201);
    assert_eq!(status["response"]["body"]["applicant"], "during-the-outage");
    assert_eq!(created_per_key(&d.api)["during-the-outage"], 1);
    // The same submission again is the same one, not a second.
    let again = d.submit("during-the-outage", "urgent").await;
    assert_eq!(again["id"], accepted["id"]);
    assert_eq!(again["state"], "delivered");
    d.assert_within_budget();
    d.stop().await;
}

/// The source is configured with twice the provider's budget: `429`s come,
/// each pauses the whole source until its retry instant, the submissions go
/// again then, and the strict provider never sees an early request.
///
/// The budgets are small (10 and 20 a second) so that any machine outruns
/// the provider, and the 50 ms between two requests leaves each `429` time to
/// come back before the next request goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_pauses_the_source_and_the_submission_goes_again_at_the_retry_instant() {
    const ALLOWED: u32 = 10;
    const SUBMISSIONS: usize = 60;
    let mut d = Daemonised::with_budgets("too-much", ALLOWED, ALLOWED * 2).await;
    // Queued before the daemon starts, so the source sends at its own (too
    // fast) pace however slowly this machine accepts submissions.
    for i in 0..SUBMISSIONS {
        d.submit(&format!("k-{i:03}"), "normal").await;
    }
    d.run();
    d.delivered(SUBMISSIONS as u64, Duration::from_secs(60))
        .await;
    let stats = d.api.handle.stats(KEY);
    assert!(stats.limited > 0, "the provider never said 429: {stats:?}");
    assert_eq!(stats.early, 0, "{stats:?}");
    assert!(d.api.handle.blocked_keys().is_empty());
    let created = created_per_key(&d.api);
    assert_eq!(created.len(), SUBMISSIONS);
    assert!(created.values().all(|n| *n == 1));
    d.stop().await;
}

/// A `4xx` other than `429` is final: the submission fails at once, with the
/// provider's answer kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_is_final_and_reported_with_the_providers_answer() {
    let mut d = Daemonised::new("refused").await;
    d.run();
    let accepted = d
        .submit_raw("not-json", "normal", "text/plain", "a note".into())
        .await;
    let started = Instant::now();
    let status = loop {
        let status = d.status(&accepted["id"]).await;
        if status["state"] == "failed" {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{status}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(status["attempts"], 1, "{status}");
    assert_eq!(status["response"]["status"], 400, "{status}");
    assert!(
        status["error"].as_str().unwrap().contains("400"),
        "{status}"
    );
    assert_eq!(
        status["response"]["body"]["error"],
        "the body must be a JSON object"
    );
    d.stop().await;
}
