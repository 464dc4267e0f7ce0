//! Running imports: once (`tollgate sync --once`), or for ever on schedule.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tollgate_core::Clock;
use tollgate_sql::Storage;

use crate::config::SyncConfig;
use crate::import::{ImportError, SourceContext, import_resource};

/// What a run did for one source.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SourceSummary {
    /// The source.
    pub name: String,
    /// Requests sent.
    pub requests: u64,
    /// `429`s received, each waited out.
    pub rejected_429: u64,
    /// Failed attempts that were retried.
    pub failures: u64,
    /// Pages stored.
    pub pages: u64,
    /// Answers `304 Not Modified` (nothing changed, nothing stored).
    pub unchanged: u64,
    /// Records stored.
    pub records: u64,
    /// True when the provider answered `403` and the source was stopped.
    pub forbidden: bool,
    /// Resources that did not finish, and why.
    pub errors: Vec<String>,
    /// How long it took.
    pub elapsed: Duration,
}

impl SourceSummary {
    fn of(ctx: &SourceContext, errors: Vec<String>, elapsed: Duration) -> Self {
        let stats = &ctx.stats;
        Self {
            name: ctx.source.name.clone(),
            requests: stats.requests.load(Ordering::Relaxed),
            rejected_429: stats.rejected_429.load(Ordering::Relaxed),
            failures: stats.failures.load(Ordering::Relaxed),
            pages: stats.pages.load(Ordering::Relaxed),
            unchanged: stats.unchanged.load(Ordering::Relaxed),
            records: stats.records.load(Ordering::Relaxed),
            forbidden: stats.forbidden.load(Ordering::Relaxed),
            errors,
            elapsed,
        }
    }
}

/// Why a run could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A source's key or client.
    #[error(transparent)]
    Context(#[from] crate::import::context::ContextError),
    /// The Redis server that shares the budgets cannot be reached.
    #[error(
        "cannot reach the Redis server that shares the budgets ({0}): start it, or remove `redis` from the configuration (and `--redis`) to keep each budget in this process"
    )]
    Redis(String),
}

/// Connects to the Redis server of `config`, if it names one, and shares each
/// source's budget there with every other process on the same key.
pub(crate) async fn share_budgets(
    config: &SyncConfig,
    contexts: &[impl std::ops::Deref<Target = SourceContext>],
) -> Result<(), RunError> {
    let Some(url) = &config.redis else {
        return Ok(());
    };
    let connected = if config.redis_cluster {
        tollgate_redis::RedisStore::connect_cluster(std::slice::from_ref(url)).await
    } else {
        tollgate_redis::RedisStore::connect(url).await
    };
    let store = connected.map_err(|e| RunError::Redis(e.to_string()))?;
    for ctx in contexts {
        let budget = ctx.budget_name();
        tracing::info!(source = %ctx.source.name, %budget, "the budget is shared in Redis");
        let slots = store.shared_slots(&budget);
        ctx.pacer.share(slots.clone(), ctx.source.timeout);
        // A SQLite file is one process's: each needs every record. Processes
        // on one PostgreSQL database fill the same tables and divide the work.
        if config.store.starts_with("postgres") {
            ctx.divide_work(slots, &config.store);
        }
    }
    Ok(())
}

/// Imports every resource of every source once, in the order written (a
/// fan-out after its parent). A resource that fails is reported and the others
/// go on; a `403` stops its whole source.
pub async fn run_once(
    config: &SyncConfig,
    storage: &Storage,
    clock: Arc<dyn Clock>,
) -> Result<Vec<SourceSummary>, RunError> {
    let contexts = config
        .sources
        .iter()
        .map(|s| SourceContext::new(s.clone(), storage.clone(), Arc::clone(&clock)))
        .collect::<Result<Vec<_>, _>>()?;
    let contexts: Vec<&SourceContext> = contexts.iter().collect();
    share_budgets(config, &contexts).await?;
    for ctx in &contexts {
        ctx.restore().await;
    }
    let runs = contexts.iter().map(|ctx| run_source(ctx));
    Ok(futures_util::future::join_all(runs).await)
}

/// Imports every resource of one source once, in the order written (a fan-out
/// after its parent): what [`run_once`] does per source, for a caller that
/// keeps the contexts (to watch their counters, or to hand them to the daemon
/// afterwards). A resource that fails is recorded and the others go on; a
/// `403` stops the source.
pub async fn run_source(ctx: &SourceContext) -> SourceSummary {
    let source = &ctx.source;
    let started = Instant::now();
    let mut errors = Vec::new();
    for resource in &source.resources {
        match import_resource(ctx, resource).await {
            Ok(done) => {
                tracing::info!(source = %source.name, resource = %resource.name, pages = done.pages, records = done.records, elsewhere = done.elsewhere, "imported")
            }
            Err(err) => {
                report(ctx, &err).await;
                let forbidden = err.is_forbidden();
                errors.push(err.to_string());
                if forbidden {
                    break;
                }
            }
        }
    }
    SourceSummary::of(ctx, errors, started.elapsed())
}

async fn report(ctx: &SourceContext, err: &ImportError) {
    tracing::error!(source = %ctx.source.name, %err, "import failed");
    let resource = match err {
        ImportError::Fetch { resource, .. }
        | ImportError::Unusable { resource, .. }
        | ImportError::Storage { resource, .. } => resource,
    };
    if let Err(store) = ctx
        .storage
        .record_error(resource, "", &err.to_string(), ctx.now_ms())
        .await
    {
        tracing::warn!(%store, "cannot record the error");
    }
}
