//! `tollgate serve`: the gateway.

use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use tollgate_core::SystemClock;
use tollgate_gateway::config::GatewayConfig;
use tollgate_gateway::workers::WorkerListeners;
use tollgate_gateway::{Gateway, bind};

/// Arguments of `tollgate serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The gateway configuration (see examples/gateway.toml and docs/gateway.md).
    #[arg(long, short, value_name = "FILE", env = "TOLLGATE_CONFIG")]
    config: PathBuf,
    /// Check the configuration and exit: 0 when it is valid.
    #[arg(long)]
    check: bool,
    /// Keep limit state in this Redis (`redis://host:port`), shared by every
    /// gateway that names it, instead of in this process; overrides `[redis]`.
    #[arg(long, value_name = "URL", env = "TOLLGATE_REDIS")]
    redis: Option<String>,
    /// Serve clients on this many worker threads, each with its own runtime
    /// and listener; overrides `workers` (default: one per core).
    #[arg(long, value_name = "N", env = "TOLLGATE_WORKERS", value_parser = worker_count)]
    workers: Option<NonZeroUsize>,
    /// How long a worker may hold its core before it calls sched_yield, so
    /// that other threads waiting for the core (an upstream or sidecar on the
    /// same host) run within about that time, not at the kernel's next tick: a
    /// duration like `1ms`, or `off`; overrides `yield_after` (default: 1ms).
    #[arg(long, value_name = "DURATION|off", env = "TOLLGATE_YIELD_AFTER", value_parser = yield_after)]
    yield_after: Option<YieldAfter>,
}

/// `--yield-after`: a duration, or `off` (`None`).
#[derive(Clone, Copy, Debug)]
struct YieldAfter(Option<std::time::Duration>);

fn yield_after(text: &str) -> Result<YieldAfter, String> {
    tollgate_gateway::config::parse_yield_after(text).map(YieldAfter)
}

/// `--workers`: a whole number from 1.
fn worker_count(text: &str) -> Result<NonZeroUsize, String> {
    let count = text
        .parse::<usize>()
        .map_err(|_| format!("`{text}` is not a number of threads: write 1 or more"))?;
    NonZeroUsize::new(count).ok_or_else(|| {
        "the gateway needs at least one worker thread: write 1 or more, or leave --workers out for one per core".into()
    })
}

/// Loads the configuration, then serves until SIGTERM or Ctrl-C; SIGHUP reloads.
pub fn run(args: &ServeArgs) -> anyhow::Result<()> {
    let mut config = GatewayConfig::load(&args.config)?;
    if let Some(url) = &args.redis {
        let shared = config.redis.take();
        config.redis = Some(tollgate_gateway::config::RedisConfig {
            url: url.clone(),
            fail_open: shared.as_ref().is_none_or(|r| r.fail_open),
            instances: shared.as_ref().map_or(1, |r| r.instances),
            per_limit_fail: shared
                .as_ref()
                .map_or_else(Vec::new, |r| r.per_limit_fail.clone()),
            cluster: shared.as_ref().is_some_and(|r| r.cluster),
            prefix: shared.map_or_else(|| "tollgate".into(), |r| r.prefix),
        });
    }
    if args.check {
        println!(
            "{}: ok ({} upstreams, {} routes, {} limits)",
            args.config.display(),
            config.upstreams.len(),
            config.routes.len(),
            config.policies.len()
        );
        return Ok(());
    }
    if let Some(workers) = args.workers {
        config.workers = Some(workers);
    }
    if let Some(YieldAfter(after)) = args.yield_after {
        config.yield_after = after;
    }
    // This thread's runtime keeps the admin API, signals, the key database and
    // Redis; clients are served on the worker threads, each with its own.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(config))
}

async fn serve(config: GatewayConfig) -> anyhow::Result<()> {
    let (listen, yield_after) = (config.listen, config.yield_after);
    let workers = config
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN));
    let admin_listen = config
        .admin
        .as_ref()
        .map(|a| (a.listen, a.token_env.clone()));
    let gateway = Gateway::open(config, Arc::new(SystemClock::new())).await?;
    let listeners = WorkerListeners::bind(listen, workers)?;
    let admin = match &admin_listen {
        Some((address, _)) => Some(bind(*address).await?),
        None => None,
    };
    tracing::info!(%listen, workers, ?yield_after, admin = ?admin_listen.as_ref().map(|a| a.0), "tollgate gateway serving");
    if let Some((_, token_env)) = &admin_listen
        && std::env::var(token_env).map_or(true, |t| t.is_empty())
    {
        tracing::warn!(
            "{token_env} is not set: the admin API answers 503 until it is set and the gateway restarted"
        );
    }
    reload_on_sighup(gateway.clone());
    gateway
        .serve_workers(listeners, admin, super::shutdown_signal())
        .await;
    tracing::info!("tollgate gateway stopped");
    Ok(())
}

/// Reloads the configuration file on every SIGHUP; a bad file is logged and
/// changes nothing.
fn reload_on_sighup(gateway: Gateway) {
    #[cfg(unix)]
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            return;
        };
        while hup.recv().await.is_some() {
            if let Err(err) = gateway.reload_from_file() {
                tracing::error!("configuration not reloaded, nothing changed: {err}");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_must_be_a_whole_number_from_one() {
        assert_eq!(worker_count("3"), Ok(NonZeroUsize::new(3).unwrap()));
        let zero = worker_count("0").unwrap_err();
        assert!(zero.contains("at least one worker thread"), "{zero}");
        assert!(worker_count("two").unwrap_err().contains("`two`"));
    }

    #[test]
    fn yield_after_takes_a_duration_or_off() {
        let after = |text| yield_after(text).map(|y| y.0);
        assert_eq!(after("2ms"), Ok(Some(std::time::Duration::from_millis(2))));
        assert_eq!(after("off"), Ok(None));
        assert!(after("0ms").unwrap_err().contains("`off`"));
    }
}
