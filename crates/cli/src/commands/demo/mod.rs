//! `tollgate demo`: both sides in one process on 127.0.0.1, in about a minute.
//!
//! An example provider API (channels and their users; properties and
//! tenancies), `tollgate serve` in front of it with the seeds' limits scaled
//! down by `--speed`, a naive client that retries at once on 429 (and gets its
//! key blocked), `tollgate sync` importing everything through the same gateway
//! (zero 429s), and the `tollgate report` for the sync key. With `--keep`
//! everything goes on running ([`keep`]).

mod keep;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use tokio::net::TcpListener;
use tollgate_core::{Clock, SystemClock};
use tollgate_gateway::Gateway;
use tollgate_gateway::config::GatewayConfig;
use tollgate_gateway::keys::Keys;
use tollgate_sql::Storage;
use tollgate_sync::config::SyncConfig;
use tollgate_sync::daemon::Daemon;
use tollgate_sync::report::report;
use tollgate_testkit::{ExampleApi, Limits, Resource, sync_resources_toml};

use super::once::import_once;
use super::progress::Expected;

/// Arguments of `tollgate demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// How much faster than the real limits: the seeds' 50 per rolling 60 s
    /// becomes 50 per 60/SPEED s. A number, or `max` (50 per second).
    #[arg(long, default_value = "6")]
    speed: String,
    /// Keep everything running afterwards and print the URLs to explore: the
    /// gateway and its admin API, and the sync daemon importing on schedule
    /// through it, with its read API and status page. Ctrl-C stops it all.
    #[arg(long)]
    keep: bool,
}

const NAIVE_KEY: &str = "tg_demo_naive_client_00001";
const SYNC_KEY: &str = "tg_demo_sync_daemon_000002";
const ADMIN_TOKEN: &str = "demo-admin-token";

/// What the demo showed, for the summary (and the test that checks it).
struct Summary {
    naive_ok: u64,
    naive_429: u64,
    naive_blocked: bool,
    sync_requests: u64,
    sync_429: u64,
    sync_records: u64,
    expected_records: u64,
    sync_seconds: f64,
}

fn window(speed: &str) -> anyhow::Result<Duration> {
    if speed == "max" {
        return Ok(Duration::from_secs(1));
    }
    let factor: f64 = speed.parse().ok().filter(|f: &f64| *f >= 1.0 && f.is_finite()).with_context(|| {
        format!("--speed `{speed}` is not a factor: write a number of at least 1 (6 makes the 60 s window 10 s), or `max`")
    })?;
    Ok(Duration::from_secs_f64((60.0 / factor).max(1.0)))
}

/// Runs the demo.
pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let window = window(&args.speed)?;
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(demo(window, args.keep))
}

fn step(text: &str) {
    println!("\n\u{25b6} {text}");
}

async fn demo(window: Duration, keep: bool) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("tollgate-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock::new());
    let secs = window.as_secs();

    step(
        "Starting an example provider API (100 channels with users; 260 properties, 180 tenancies)",
    );
    let api = ExampleApi::builder()
        .limits(Limits::none())
        .build()
        .spawn()
        .await?;
    println!("  provider  http://{}", api.addr);

    step(&format!(
        "Starting the gateway in front of it: 50 requests per rolling {secs} s per key, 20/s on the user list"
    ));
    let gateway_toml = format!(
        r#"
listen = "127.0.0.1:0"
[escalation]
strikes = 5
strike_window = "{secs}s"
first_block = "{block}s"
[[upstreams]]
name = "api"
url = "http://{upstream}"
[[routes]]
name = "user-list"
method = "GET"
path = "/dev/v1/channel/user/{{appid}}/{{channel}}"
[[routes]]
name = "everything-else"
path = "/{{*rest}}"
[[limits]]
name = "per-key"
rate = "50/{secs}s"
[[limits]]
name = "user-list"
scope = "per-route"
routes = ["user-list"]
rate = "20/s"
algorithm = "fixed"
"#,
        block = secs * 2,
        upstream = api.addr,
    );
    let config = GatewayConfig::parse(&gateway_toml, &dir.join("gateway.toml"))?;
    let keys = Keys::open_in_memory().await?;
    keys.create_with_secret("naive client", NAIVE_KEY, "demo")
        .await?;
    keys.create_with_secret("sync daemon", SYNC_KEY, "demo")
        .await?;
    let gateway = Gateway::new(config, keys, Arc::clone(&clock), Some(ADMIN_TOKEN.into()));
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let admin = TcpListener::bind("127.0.0.1:0").await?;
    let gateway_url = format!("http://{}", listener.local_addr()?);
    let admin_url = format!("http://{}", admin.local_addr()?);
    let (stop_gateway, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(gateway.serve(listener, Some(admin), async move {
        let _ = stopped.await;
    }));
    println!("  gateway   {gateway_url}   admin {admin_url}");

    step("1. A naive client that retries at once on every 429");
    let (naive_ok, naive_429, naive_blocked) = naive_client(&gateway_url).await?;

    step("2. tollgate sync imports everything through the same gateway, paced inside the budget");
    let key_file = dir.join("sync.key");
    std::fs::write(&key_file, SYNC_KEY)?;
    let sync_config = sync_config(&dir, &gateway_url, &key_file, secs)?;
    let storage = Storage::connect(&sync_config.store).await?;
    // The daemon's contexts (pacers and counters) serve the import here and,
    // with --keep, the imports on schedule after it: one budget throughout.
    let daemon = Arc::new(Daemon::connect(&sync_config, &storage, Arc::clone(&clock)).await?);
    let expected: u64 = [
        Resource::Channels,
        Resource::ChannelUsers,
        Resource::Properties,
        Resource::Tenancies,
    ]
    .into_iter()
    .map(|r| api.handle.expected_records(r).len() as u64)
    .sum();
    let started = Instant::now();
    let summaries = import_once(&daemon.sources, &[Expected::Records(expected)]).await;
    let sync = &summaries[0];
    let mut stored = 0;
    for table in ["channels", "channel_users", "properties", "tenancies"] {
        stored += storage.count(table).await?;
    }
    println!(
        "  done: {} requests, {stored} records stored in SQLite, {} 429s",
        sync.requests, sync.rejected_429
    );

    step("3. tollgate report for the sync key: what a limit-increase request asks for");
    print!(
        "{}",
        report(&sync_config.sources[0], &storage).await?.to_text()
    );

    let summary = Summary {
        naive_ok,
        naive_429,
        naive_blocked,
        sync_requests: sync.requests,
        sync_429: sync.rejected_429,
        sync_records: stored,
        expected_records: expected,
        sync_seconds: started.elapsed().as_secs_f64(),
    };
    print_summary(&summary);

    if keep {
        let urls = keep::Urls {
            provider: format!("http://{}", api.addr),
            gateway: gateway_url,
            admin: admin_url,
        };
        keep::keep_running(&urls, &sync_config, &storage, &daemon, clock).await?;
    }
    let _ = stop_gateway.send(());
    let _ = served.await;
    storage.close().await;
    api.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    if !summary.naive_blocked
        || summary.sync_429 > 0
        || summary.sync_records != summary.expected_records
    {
        anyhow::bail!("the demo did not show what it should; see the summary above");
    }
    Ok(())
}

/// Sends requests as fast as answers come, whatever the answer, until the key
/// is blocked: the client providers warn about.
async fn naive_client(gateway: &str) -> anyhow::Result<(u64, u64, bool)> {
    let client = reqwest::Client::new();
    let (mut ok, mut limited) = (0u64, 0u64);
    for _ in 0..10_000 {
        let response = client
            .get(format!("{gateway}/v1/properties?page=1"))
            .header("x-api-key", NAIVE_KEY)
            .send()
            .await?;
        match response.status().as_u16() {
            200 => ok += 1,
            429 => {
                limited += 1;
                if limited == 1 {
                    let wait = response
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("?")
                        .to_owned();
                    println!(
                        "  after {ok} × 200: 429 Too Many Requests, Retry-After: {wait} s — the client retries at once…"
                    );
                }
            }
            403 => {
                let body: serde_json::Value = response.json().await.unwrap_or_default();
                println!(
                    "  … {limited} × 429 later: 403 Forbidden, {} — blocked until {}",
                    body["type"]
                        .as_str()
                        .unwrap_or("")
                        .rsplit('/')
                        .next()
                        .unwrap_or(""),
                    body["blocked_until"].as_str().unwrap_or("?")
                );
                return Ok((ok, limited, true));
            }
            other => {
                let body = response.text().await.unwrap_or_default();
                anyhow::bail!("the gateway answered {other} to the naive client: {body}")
            }
        }
    }
    Ok((ok, limited, false))
}

fn sync_config(
    dir: &Path,
    gateway: &str,
    key_file: &Path,
    secs: u64,
) -> anyhow::Result<SyncConfig> {
    let text = format!(
        r#"
store = "sqlite://demo-sync.db"
[[sources]]
name = "example"
base_url = "{gateway}"
key = {{ header = "X-Api-Key", file = "{key}" }}
limits = ["50/{secs}s"]
concurrency = 4
{resources}
"#,
        key = key_file.display(),
        resources = sync_resources_toml(
            &[
                Resource::Properties,
                Resource::Tenancies,
                Resource::Channels,
                Resource::ChannelUsers
            ],
            100
        ),
    );
    Ok(SyncConfig::parse(&text, &dir.join("sync.toml"))?)
}

fn print_summary(s: &Summary) {
    println!("\nSummary");
    println!(
        "  {:<14} {:>8} {:>8} {:>9} {:>10}",
        "client", "200s", "429s", "blocked", "records"
    );
    println!(
        "  {:<14} {:>8} {:>8} {:>9} {:>10}",
        "naive",
        s.naive_ok,
        s.naive_429,
        if s.naive_blocked { "yes (403)" } else { "no" },
        "-"
    );
    println!(
        "  {:<14} {:>8} {:>8} {:>9} {:>10}",
        "tollgate sync",
        s.sync_requests - s.sync_429,
        s.sync_429,
        "no",
        format!("{}/{}", s.sync_records, s.expected_records)
    );
    println!(
        "  the sync took {:.1} s for {} requests: the budget, used evenly.",
        s.sync_seconds, s.sync_requests
    );
}
