//! `tollgate sync`: imports rate-limited APIs into the storage layer.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use tollgate_core::SystemClock;
use tollgate_sql::Storage;
use tollgate_sync::api::ApiState;
use tollgate_sync::config::SyncConfig;
use tollgate_sync::daemon::Daemon;
use tollgate_sync::runner::SourceSummary;

use super::once::{expected_requests, import_once};

/// Arguments of `tollgate sync`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// The sync configuration (see examples/sync.toml and docs/sync.md).
    #[arg(long, short, value_name = "FILE", env = "TOLLGATE_SYNC_CONFIG")]
    config: PathBuf,
    /// Import everything once, then exit (for cron and CI); non-zero if a
    /// resource did not finish. Without it, tollgate sync runs every import on
    /// its planned schedule and serves the read API until SIGTERM.
    #[arg(long)]
    once: bool,
    /// The storage layer, overriding the file's `store`: `sqlite://file.db` or
    /// `postgres://user@host/db`.
    #[arg(long, value_name = "URL", env = "TOLLGATE_STORE")]
    store: Option<String>,
    /// Share each key's budget with every other sync process that names the
    /// same Redis server (`redis://host:port`), overriding the file's `redis`:
    /// together they keep to the provider's limits exactly, pause together
    /// after a 429, and a restarted process knows what the others sent.
    #[arg(long, value_name = "URL", env = "TOLLGATE_REDIS")]
    redis: Option<String>,
    /// `--redis` (or the file's `redis`) is one node of a Redis Cluster; the
    /// others are discovered from it.
    #[arg(long)]
    redis_cluster: bool,
    /// Check the configuration and exit.
    #[arg(long)]
    check: bool,
    /// `status`: print how fresh each resource is, from the storage layer, and exit.
    #[command(subcommand)]
    action: Option<SyncAction>,
}

/// What `tollgate sync` does besides importing.
#[derive(Debug, clap::Subcommand)]
enum SyncAction {
    /// How fresh each resource is: last success, staleness, duration, records,
    /// last error, and the 429s of each source (read from the storage layer;
    /// the daemon need not run).
    Status,
}

/// Runs the import.
pub fn run(args: &SyncArgs) -> anyhow::Result<()> {
    let mut config = SyncConfig::load(&args.config)?;
    if let Some(store) = &args.store {
        config.store = store.clone();
    }
    if let Some(redis) = &args.redis {
        config.redis = Some(redis.clone());
    }
    if args.redis_cluster {
        anyhow::ensure!(
            config.redis.is_some(),
            "--redis-cluster names no server: add --redis redis://host:port (any node of the cluster)"
        );
        config.redis_cluster = true;
    }
    if args.check {
        let resources: usize = config.sources.iter().map(|s| s.resources.len()).sum();
        println!(
            "{}: ok ({} sources, {resources} resources)",
            args.config.display(),
            config.sources.len()
        );
        for source in &config.sources {
            for line in tollgate_sync::schedule::bulk_reads(source) {
                println!("  {}: {line}", source.name);
            }
        }
        return Ok(());
    }
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let storage = Storage::connect(&config.store)
            .await
            .with_context(|| format!("cannot open the store `{}`", config.store))?;
        if matches!(args.action, Some(SyncAction::Status)) {
            return status(&config, &storage).await;
        }
        if !args.once {
            return daemon(&config, storage).await;
        }
        let summaries = once(&config, &storage).await?;
        let mut failed = false;
        println!(
            "{:<16} {:>9} {:>9} {:>6} {:>9} {:>8}  result",
            "source", "requests", "records", "429s", "retries", "seconds"
        );
        for s in &summaries {
            let result = if s.forbidden {
                "STOPPED: the provider answered 403 (key blocked)".to_owned()
            } else if s.errors.is_empty() {
                "ok".to_owned()
            } else {
                format!(
                    "{} resource(s) failed: {}",
                    s.errors.len(),
                    s.errors.join("; ")
                )
            };
            failed |= s.forbidden || !s.errors.is_empty();
            println!(
                "{:<16} {:>9} {:>9} {:>6} {:>9} {:>8.1}  {result}",
                s.name,
                s.requests,
                s.records,
                s.rejected_429,
                s.failures,
                s.elapsed.as_secs_f64()
            );
        }
        storage.close().await;
        if failed {
            anyhow::bail!(
                "the import did not finish; the next run resumes from the last stored page"
            );
        }
        Ok(())
    })
}

/// Imports every resource once, with a progress bar per source on a terminal.
async fn once(config: &SyncConfig, storage: &Storage) -> anyhow::Result<Vec<SourceSummary>> {
    let daemon = Daemon::connect(config, storage, Arc::new(SystemClock::new())).await?;
    let mut expected = Vec::new();
    for source in &config.sources {
        expected.push(expected_requests(source, storage).await);
    }
    Ok(import_once(&daemon.sources, &expected).await)
}

/// Runs every import on schedule and serves the read API until SIGTERM.
async fn daemon(config: &SyncConfig, storage: Storage) -> anyhow::Result<()> {
    let clock: Arc<dyn tollgate_core::Clock> = Arc::new(SystemClock::new());
    let daemon = Arc::new(Daemon::connect(config, &storage, Arc::clone(&clock)).await?);
    if let Some(listen) = config.listen {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}; is another process using it?"))?;
        let router = read_api(config, &storage, &daemon, clock);
        tracing::info!(%listen, "read API serving");
        tokio::spawn(async move { axum::serve(listener, router).await });
    }
    daemon.run(super::shutdown_signal()).await;
    storage.close().await;
    Ok(())
}

/// The read API and status page of `daemon`'s sources: records per resource
/// under `/v1/{resource}`, `/status`, and the page at `/`.
pub fn read_api(
    config: &SyncConfig,
    storage: &Storage,
    daemon: &Arc<Daemon>,
    clock: Arc<dyn tollgate_core::Clock>,
) -> axum::Router {
    let state = ApiState {
        storage: storage.clone(),
        daemon: Arc::clone(daemon),
        clock,
        resources: Arc::new(
            config
                .sources
                .iter()
                .flat_map(|s| s.resources.iter().map(|r| r.name.clone()))
                .collect(),
        ),
    };
    tollgate_sync::api::router(state)
}

/// Prints each resource's freshness and each source's 429s.
async fn status(config: &SyncConfig, storage: &Storage) -> anyhow::Result<()> {
    let now = i64::try_from(tollgate_core::Clock::now(&SystemClock::new()).as_millis())
        .unwrap_or(i64::MAX);
    let states = storage.resource_states().await?;
    println!(
        "{:<18} {:>9} {:>12} {:>10} {:>9}  last error",
        "resource", "records", "staleness", "duration", "scopes"
    );
    for source in &config.sources {
        for resource in &source.resources {
            let mine: Vec<_> = states
                .iter()
                .filter(|s| s.resource == resource.name)
                .collect();
            let last = mine.iter().filter_map(|s| s.last_success_ms).max();
            let duration = mine.iter().filter_map(|s| s.last_duration_ms).max();
            let error = mine
                .iter()
                .filter(|s| s.last_error_ms > s.last_success_ms)
                .find_map(|s| s.last_error.clone());
            storage.ensure_resource(&resource.name).await?;
            println!(
                "{:<18} {:>9} {:>12} {:>10} {:>9}  {}",
                resource.name,
                storage.count(&resource.name).await?,
                last.map_or("never".into(), |t| format!("{} s", (now - t).max(0) / 1000)),
                duration.map_or("-".into(), |d| format!("{:.1} s", d as f64 / 1000.0)),
                mine.len(),
                error.unwrap_or_default()
            );
        }
        let log = storage.rate_limit_log(&source.name).await?;
        let early = log.iter().filter(|e| e.honoured == Some(false)).count();
        println!(
            "source `{}`: {} 429s received, {early} not honoured",
            source.name,
            log.len()
        );
    }
    Ok(())
}
