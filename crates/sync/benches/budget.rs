//! How much of a provider's budget a full import uses: one long import through
//! the pacer against the example provider on 127.0.0.1, at a scaled-down budget
//! (50 requests per rolling 2 s per key), timed against the theoretical
//! minimum `R × W / N` for the `R` requests the data needs.
//!
//! ```sh
//! cargo bench -p tollgate-sync --bench budget                       # all three scenarios, about 1.5 min
//! cargo bench -p tollgate-sync --bench budget -- --only discover    # one of them
//! cargo bench -p tollgate-sync --bench budget -- --channels 900 --concurrency 16
//! cargo bench -p tollgate-sync --bench budget -- --limit 3/6s --channels 10 --only discover
//! ```
//!
//! Scenarios: `known` (`limits = ["50/2s"]`, the provider sends no RateLimit
//! headers), `discover` (`limits = "discover"`, the provider advertises the
//! IETF `RateLimit-Policy`/`RateLimit` fields) and `gateway` (`known`, through
//! `tollgate serve` — the gateway, in this process — enforcing the budget in
//! front of a provider without limits of its own, as a real deployment has it).
//! The provider is not strict (a block would end the measurement); requests
//! that came before a retry instant are counted all the same (`early`). The
//! figures and the targets are in docs/benchmarks-sync.md.
//!
//! Not a criterion bench: one measurement is one import of half a minute.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tollgate_core::{Quota, Rate, SystemClock};
use tollgate_gateway::Gateway;
use tollgate_gateway::config::GatewayConfig;
use tollgate_gateway::keys::Keys;
use tollgate_sql::Storage;
use tollgate_sync::config::SyncConfig;
use tollgate_sync::runner::run_once;
use tollgate_testkit::{ExampleApi, HeaderStyle, Limits};

const KEY: &str = "sync-budget-bench-key-01";
/// The provider's budget by default: 50 per rolling 2 s, per key.
const BUDGET: Rate = Rate::new(50, Duration::from_secs(2));
/// The channel list's page size (the provider's maximum).
const LIST_PAGE: usize = 500;

struct Options {
    /// The provider's budget per key: N per rolling W.
    budget: Rate,
    channels: usize,
    concurrency: u32,
    only: Option<String>,
}

fn options() -> Options {
    let mut options = Options {
        budget: BUDGET,
        channels: 600,
        concurrency: 4,
        only: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| panic!("{name} needs a value"))
        };
        match arg.as_str() {
            "--limit" => options.budget = value("--limit").parse().expect("a limit like 50/2s"),
            "--channels" => options.channels = value("--channels").parse().expect("a count"),
            "--concurrency" => {
                options.concurrency = value("--concurrency").parse().expect("a count")
            }
            "--only" => options.only = Some(value("--only")),
            // `cargo bench` passes `--bench`; filters and others are ignored.
            _ => {}
        }
    }
    options
}

/// What one import measured.
struct Measured {
    scenario: &'static str,
    budget: Rate,
    /// Requests the data needs: the channel list's pages and one per channel.
    needed: u64,
    /// Requests the provider received.
    sent: u64,
    rejected: u64,
    early: u64,
    /// `run_once` from its call to its return.
    elapsed: Duration,
    /// From the first request's arrival to the last one's.
    span: Duration,
    most_in_window: usize,
    /// Gaps between consecutive arrivals, sorted.
    gaps: Vec<Duration>,
    errors: Vec<String>,
    /// The `429`s the sync counted (the provider's count is `rejected`).
    sync_rejected: u64,
}

impl Measured {
    /// `R × W / N`.
    fn minimum(&self) -> Duration {
        let (n, w) = (self.budget.count(), self.budget.window());
        w.mul_f64(self.needed as f64 / f64::from(n))
    }

    fn ratio(&self) -> f64 {
        self.elapsed.as_secs_f64() / self.minimum().as_secs_f64()
    }

    /// Requests sent over what the budget allowed in the elapsed time.
    fn budget_used(&self) -> f64 {
        let (n, w) = (self.budget.count(), self.budget.window());
        self.sent as f64 / (self.elapsed.as_secs_f64() * f64::from(n) / w.as_secs_f64())
    }
}

fn config(
    dir: &std::path::Path,
    addr: std::net::SocketAddr,
    limits: &str,
    concurrency: u32,
) -> SyncConfig {
    let text = format!(
        r#"store = "sqlite://sync.db"

[[sources]]
name = "example"
base_url = "http://{addr}"
key = {{ header = "X-Api-Key", file = "{key}" }}
limits = {limits}
timeout = "10s"
concurrency = {concurrency}

[[sources.resources]]
name = "channels"
path = "/dev/v1/channel/demo-app"
records = "/data/channels"
id = "channel_name"
pagination = {{ style = "page", param = "page_no", start = 0, size_param = "page_size", size = {LIST_PAGE} }}
every = "1h"

[[sources.resources]]
name = "channel_users"
path = "/dev/v1/channel/user/demo-app/{{channel_name}}"
records = "/data"
for_each = {{ resource = "channels", fields = {{ channel_name = "channel_name" }} }}
every = "1h"
"#,
        key = dir.join("key").display(),
    );
    SyncConfig::parse(&text, &dir.join("sync.toml")).expect("the bench's configuration")
}

/// `tollgate serve` in front of `upstream`, enforcing `budget` per key with
/// the rolling log; returns its address and what stops it.
async fn gateway(
    upstream: std::net::SocketAddr,
    budget: Rate,
    dir: &std::path::Path,
) -> (std::net::SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let toml = format!(
        r#"
listen = "127.0.0.1:0"
[[upstreams]]
name = "api"
url = "http://{upstream}"
[[routes]]
name = "everything"
path = "/{{*rest}}"
[[limits]]
name = "per-key"
rate = "{budget}"
"#
    );
    let config = GatewayConfig::parse(&toml, &dir.join("gateway.toml"))
        .expect("the gateway's configuration");
    let keys = Keys::open_in_memory()
        .await
        .expect("an in-memory key store");
    keys.create_with_secret("sync", KEY, "bench")
        .await
        .expect("the key is created");
    let gateway = Gateway::new(config, keys, Arc::new(SystemClock::new()), None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(gateway.serve(listener, None, async move {
        let _ = stopped.await;
    }));
    (addr, stop)
}

async fn measure(scenario: &'static str, options: &Options) -> Measured {
    let (limits, headers) = match scenario {
        "known" | "gateway" => (format!("[\"{}\"]", options.budget), HeaderStyle::None),
        _ => ("\"discover\"".to_owned(), HeaderStyle::Ietf),
    };
    let through_gateway = scenario == "gateway";
    let provider_limits = if through_gateway {
        Limits::none()
    } else {
        Limits::per_key(Quota::rolling(options.budget))
    };
    let mut builder = ExampleApi::builder()
        .channels(options.channels)
        .properties(0)
        .tenancies(0)
        .applicants(0)
        .headers(headers)
        .limits(provider_limits);
    // Behind the gateway the provider sees the gateway's key id, not the key.
    if !through_gateway {
        builder = builder.key(KEY);
    }
    let api = builder
        .build()
        .spawn()
        .await
        .expect("the example provider starts");
    let dir = std::env::temp_dir().join(format!(
        "tollgate-sync-budget-{}-{scenario}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("key"), KEY).unwrap();
    let (target, stop_gateway) = if through_gateway {
        let (addr, stop) = gateway(api.addr, options.budget, &dir).await;
        (addr, Some(stop))
    } else {
        (api.addr, None)
    };
    let config = config(&dir, target, &limits, options.concurrency);
    let storage = Storage::connect(&config.store).await.unwrap();

    let started = Instant::now();
    let summary = run_once(&config, &storage, Arc::new(SystemClock::new()))
        .await
        .unwrap()
        .remove(0);
    let elapsed = started.elapsed();

    let stored = storage.count("channel_users").await.unwrap() as usize;
    assert_eq!(stored, options.channels, "every channel's users stored");
    let handle = &api.handle;
    let log = handle.log();
    let span = match (log.first(), log.last()) {
        (Some(first), Some(last)) => last.at.saturating_since(first.at),
        _ => Duration::ZERO,
    };
    // Behind the gateway the provider knows the key by the gateway's id for it.
    let key = log
        .first()
        .map_or_else(|| KEY.to_owned(), |e| e.key.clone());
    let stats = handle.stats(&key);
    let mut gaps: Vec<Duration> = log
        .windows(2)
        .map(|pair| pair[1].at.saturating_since(pair[0].at))
        .collect();
    gaps.sort_unstable();
    // Through the gateway, the provider sees only what the gateway admitted:
    // the sync's own counts say what was sent and refused.
    let (sent, rejected) = if through_gateway {
        (summary.requests, summary.rejected_429)
    } else {
        (stats.requests, stats.limited)
    };
    let measured = Measured {
        scenario,
        budget: options.budget,
        needed: (options.channels / LIST_PAGE + 1 + options.channels) as u64,
        sent,
        rejected,
        early: stats.early,
        elapsed,
        span,
        most_in_window: handle.max_in_any_window(&key, options.budget.window()),
        gaps,
        errors: summary.errors,
        sync_rejected: summary.rejected_429,
    };
    storage.close().await;
    if let Some(stop) = stop_gateway {
        let _ = stop.send(());
    }
    api.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    measured
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, name)| name.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    format!("{cores} cores, {cpu}")
}

/// The 1-, 5- and 15-minute load averages: on a shared machine, what else ran.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn main() {
    let options = options();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!(
        "sync budget bench: budget {} per key (rolling), {} channels (R = {} requests), \
         concurrency {}; {}; load average {}",
        options.budget,
        options.channels,
        options.channels / LIST_PAGE + 1 + options.channels,
        options.concurrency,
        machine(),
        load_average()
    );
    println!(
        "{:<9} {:>5} {:>5} {:>5} {:>5} {:>9} {:>9} {:>7} {:>8} {:>9} {:>6}  targets",
        "scenario",
        "R",
        "sent",
        "429s",
        "early",
        "elapsed",
        "min R*W/N",
        "ratio",
        "budget",
        "span",
        "max/W"
    );
    for scenario in ["known", "discover", "gateway"] {
        if options.only.as_deref().is_some_and(|only| only != scenario) {
            continue;
        }
        let m = runtime.block_on(measure(scenario, &options));
        let targets = if scenario != "discover" {
            let ok = m.budget_used() >= 0.98 && m.ratio() <= 1.03 && m.rejected == 0;
            format!(
                "{}: budget >= 98%, <= 1.03 x min, zero 429s",
                if ok { "met" } else { "MISSED" }
            )
        } else {
            // One limit to learn (the per-key budget): at most one 429.
            let ok = m.ratio() <= 1.15 && m.rejected <= 1;
            format!(
                "{}: <= 1.15 x min, <= one 429 per limit learned",
                if ok { "met" } else { "MISSED" }
            )
        };
        println!(
            "{:<9} {:>5} {:>5} {:>5} {:>5} {:>8.2}s {:>8.2}s {:>7.4} {:>7.2}% {:>8.2}s {:>6}  {targets}",
            m.scenario,
            m.needed,
            m.sent,
            m.rejected,
            m.early,
            m.elapsed.as_secs_f64(),
            m.minimum().as_secs_f64(),
            m.ratio(),
            m.budget_used() * 100.0,
            m.span.as_secs_f64(),
            m.most_in_window,
        );
        println!("  load average after it: {}", load_average());
        if !m.errors.is_empty() {
            println!("  errors: {:?}", m.errors);
        }
        if !m.gaps.is_empty() {
            let at = |q: f64| m.gaps[((m.gaps.len() - 1) as f64 * q) as usize];
            let mean = m.gaps.iter().sum::<Duration>() / m.gaps.len() as u32;
            println!(
                "  gaps between arrivals (even spacing W/N = {:?}): mean {mean:.2?}, min {:.2?}, \
                 median {:.2?}, p90 {:.2?}, p99 {:.2?}, max {:.2?}",
                m.budget.window() / m.budget.count(),
                at(0.0),
                at(0.5),
                at(0.9),
                at(0.99),
                at(1.0),
            );
        }
        assert_eq!(m.sync_rejected, m.rejected, "the sync counted every 429");
    }
}
