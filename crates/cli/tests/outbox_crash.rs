//! The outbox survives `kill -9`: the `tollgate sync` daemon is killed with
//! SIGKILL at random points while submissions flow into its API, again and
//! again, and restarted each time as a supervisor would; then the provider's
//! own log of writes proves that every submission answered `202 Accepted` was
//! created exactly once, none lost, each sent with its idempotency key.
//!
//! The runs: the strict example provider in this process (100 requests per
//! rolling second per key, `Idempotency-Key` honoured), a sync configuration
//! with an import of 60 properties, `[sources.submit] idempotency_header`, the
//! read API on a fixed port and a SQLite store in a temporary folder; a client
//! submitting appointments one after another, each with its own key, sending
//! the same request again (same key, same body) until it gets a `202` — as a
//! client of a restarting service does; `tollgate sync` run `KILLS` times and
//! killed at a seeded random instant of its life, then once more until the
//! outbox is empty.
//!
//! A submission is stored before its `202` and marked in flight before it is
//! sent; one a kill left in flight is sent again at the restart with the same
//! key, and the provider answers it with the first result (`Replayed` in its
//! log) instead of creating a second record. Run it alone, with the figures:
//!
//! ```sh
//! cargo test -p tollgate --test outbox_crash -- --nocapture
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tollgate_core::{Quota, Rate};
use tollgate_sql::{Storage, SubmissionState};
use tollgate_testkit::{ExampleApi, Limits, Rng, WriteOutcome};

const KEY: &str = "outbox-crash-key-0123456789";
const BUDGET: u32 = 100;
const WINDOW: Duration = Duration::from_secs(1);
/// Daemons killed with SIGKILL before the one that empties the outbox.
const KILLS: usize = 24;
/// Each killed daemon lives a random span in this range after its spawn: some
/// die starting up, most while delivering.
const LIFE: (Duration, Duration) = (Duration::from_millis(60), Duration::from_millis(1_200));
const SEED: u64 = 0x0B0C_5EED;

fn lives() -> Vec<Duration> {
    let mut rng = Rng::new(SEED);
    let (low, high) = LIFE;
    (0..KILLS)
        .map(|_| low + (high - low).mul_f64(rng.unit()))
        .collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn write_config(dir: &Path, provider: std::net::SocketAddr, port: u16) -> (PathBuf, String) {
    std::fs::write(dir.join("key"), format!("{KEY}\n")).unwrap();
    let store = format!("sqlite://{}", dir.join("sync.db").display());
    let text = format!(
        r#"store = "{store}"
listen = "127.0.0.1:{port}"

[[sources]]
name = "example"
base_url = "http://{provider}"
key = {{ header = "X-Api-Key", file = "{key}" }}
limits = ["{BUDGET}/1s"]
timeout = "2s"
concurrency = 2

[sources.submit]
idempotency_header = "Idempotency-Key"

[[sources.resources]]
name = "properties"
path = "/v1/properties"
records = "/data"
pagination = {{ style = "page", param = "page", size_param = "per_page", size = 10 }}
every = "2s"
"#,
        key = dir.join("key").display(),
    );
    let path = dir.join("sync.toml");
    std::fs::write(&path, text).unwrap();
    (path, store)
}

fn spawn_daemon(config: &Path, log: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .args(["sync", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .expect("the tollgate binary runs")
}

fn kill(mut child: Child) {
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
}

/// Submits appointment after appointment, each sent again (same key, same
/// body) until it is answered `202`; returns the numbers accepted. Stops
/// after the one in hand when `stop` is set.
async fn submit_until(url: String, stop: Arc<AtomicBool>) -> (Vec<u64>, u64) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let (mut accepted, mut resent) = (Vec::new(), 0);
    for n in 0u64.. {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let body = serde_json::json!({ "applicant": format!("applicant {n}"), "n": n });
        loop {
            let answer = http
                .post(&url)
                .header("Idempotency-Key", format!("crash-{n:05}"))
                .json(&body)
                .send()
                .await;
            match answer {
                Ok(response) if response.status() == 202 => break,
                Ok(response) => panic!("submission {n} answered {}", response.status()),
                Err(_) => {
                    resent += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
        accepted.push(n);
        tokio::time::sleep(Duration::from_millis(8)).await;
    }
    (accepted, resent)
}

/// How many submissions are queued or in flight.
async fn pending(store: &str) -> u64 {
    let storage = Storage::connect(store).await.unwrap();
    let counts = storage.outbox_counts("example").await.unwrap();
    storage.close().await;
    counts
        .iter()
        .filter(|(s, _)| matches!(s, SubmissionState::Queued | SubmissionState::InFlight))
        .map(|(_, n)| n)
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_accepted_submission_is_delivered_exactly_once_through_kill_9() {
    let api = ExampleApi::builder()
        .channels(0)
        .properties(60)
        .key(KEY)
        .strict(true)
        .strict_block(Duration::from_secs(2))
        .limits(Limits::per_key(Quota::rolling(Rate::new(BUDGET, WINDOW))))
        .build()
        .spawn()
        .await
        .unwrap();
    let dir = std::env::temp_dir().join(format!(
        "tollgate-outbox-crash-{}-{}",
        std::process::id(),
        free_port()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    let (config, store) = write_config(&dir, api.addr, port);
    let stop = Arc::new(AtomicBool::new(false));
    let url = format!("http://127.0.0.1:{port}/v1/sources/example/submit/v1/appointments");
    let submitter = tokio::spawn(submit_until(url, Arc::clone(&stop)));
    let started = Instant::now();
    let mut killed_at = Vec::new();
    for (run, life) in lives().into_iter().enumerate() {
        let child = spawn_daemon(&config, &dir.join(format!("run-{run:02}.log")));
        tokio::time::sleep(life).await;
        kill(child);
        killed_at.push(life);
    }
    stop.store(true, Ordering::SeqCst);
    let last = spawn_daemon(&config, &dir.join("run-last.log"));
    let (accepted, resent) = tokio::time::timeout(Duration::from_secs(20), submitter)
        .await
        .expect("the last submission is accepted by the last daemon")
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while pending(&store).await > 0 {
        assert!(Instant::now() < deadline, "the outbox did not empty");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    kill(last);
    let elapsed = started.elapsed();

    let handle = &api.handle;
    let writes = handle.writes();
    let mut created: BTreeMap<String, usize> = BTreeMap::new();
    let mut replayed = 0;
    for write in &writes {
        let key = write
            .idempotency_key
            .clone()
            .expect("every write carries its idempotency key");
        match write.outcome {
            WriteOutcome::Created { .. } => *created.entry(key).or_default() += 1,
            WriteOutcome::Replayed { .. } => replayed += 1,
            ref other => panic!("{key}: {other:?}"),
        }
    }
    let accepted_keys: BTreeSet<String> =
        accepted.iter().map(|n| format!("crash-{n:05}")).collect();
    let lost: Vec<_> = accepted_keys
        .iter()
        .filter(|k| !created.contains_key(*k))
        .collect();
    let twice: Vec<_> = created.iter().filter(|(_, n)| **n > 1).collect();
    let unasked: Vec<_> = created
        .keys()
        .filter(|k| !accepted_keys.contains(*k))
        .collect();
    let stats = handle.stats(KEY);
    println!(
        "{KILLS} kills (lives {:?} .. {:?}) in {elapsed:?}: {} submissions accepted ({resent} sends refused while no daemon listened), {} created, {replayed} sent again after a kill and replayed by the key; {} requests, {} 429s, at most {} in a window of {WINDOW:?}",
        killed_at.iter().min().unwrap(),
        killed_at.iter().max().unwrap(),
        accepted.len(),
        created.len(),
        stats.requests,
        stats.limited,
        handle.max_in_any_window(KEY, WINDOW),
    );
    assert!(lost.is_empty(), "accepted and never created: {lost:?}");
    assert!(twice.is_empty(), "created more than once: {twice:?}");
    assert!(
        unasked.is_empty(),
        "created but never accepted: {unasked:?}"
    );
    assert!(
        accepted.len() > 200,
        "too few submissions flowed: {}",
        accepted.len()
    );
    assert!(
        handle.blocked_keys().is_empty(),
        "{:?}",
        handle.block_events()
    );
    assert_eq!(stats.limited, 0, "{stats:?}");
    assert!(handle.max_in_any_window(KEY, WINDOW) <= BUDGET as usize);
    api.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
