//! The sync daemon: every resource imported on its planned schedule, for ever,
//! until asked to stop.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tollgate_core::Clock;
use tollgate_sql::Storage;

use crate::config::SyncConfig;
use crate::import::{SourceContext, import_resource};
use crate::outbox::Outbox;
use crate::runner::RunError;
use crate::schedule::schedule;

/// How long a source rests after a `403` before it is tried again.
pub const FORBIDDEN_REST: Duration = Duration::from_secs(3_600);

/// The running imports: one context per source (for `/status`).
pub struct Daemon {
    /// Each source's context.
    pub sources: Vec<Arc<SourceContext>>,
    /// Wakes each source's outbox worker when a submission is accepted.
    pub outbox: Outbox,
}

impl Daemon {
    /// Contexts for every source of `config`.
    pub fn new(
        config: &SyncConfig,
        storage: &Storage,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, RunError> {
        let sources = config
            .sources
            .iter()
            .map(|s| {
                SourceContext::new(s.clone(), storage.clone(), Arc::clone(&clock)).map(Arc::new)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let outbox = Outbox::new(&sources);
        Ok(Self { sources, outbox })
    }

    /// Contexts for every source of `config`, each budget shared in Redis when
    /// the configuration names a server, and each starting with what an
    /// earlier process on the same storage left of its budget (see
    /// [`SourceContext::restore`]): what `tollgate sync` runs.
    pub async fn connect(
        config: &SyncConfig,
        storage: &Storage,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, RunError> {
        let daemon = Self::new(config, storage, clock)?;
        crate::runner::share_budgets(config, &daemon.sources).await?;
        for ctx in &daemon.sources {
            ctx.restore().await;
        }
        Ok(daemon)
    }

    /// Imports every resource on its schedule and delivers each source's
    /// submissions (the outbox) until `shutdown` completes. Imports in flight
    /// are dropped; every stored page is committed with its checkpoint, so the
    /// next start resumes where they were, and a submission in flight goes
    /// again with its idempotency key.
    pub async fn run(&self, shutdown: impl Future<Output = ()> + Send) {
        let (stop, stopped) = watch::channel(false);
        let mut tasks = Vec::new();
        for ctx in &self.sources {
            let wake = self.outbox.waker(&ctx.source.name);
            let worker = crate::outbox::deliver_forever(Arc::clone(ctx), wake);
            tasks.push(tokio::spawn(worker));
        }
        for ctx in &self.sources {
            let plan = schedule(&ctx.source, &ctx.storage).await;
            tracing::info!(source = %ctx.source.name, "schedule:\n{}", plan.verdict);
            for (resource, every) in plan.periods {
                let (ctx, mut stopped) = (Arc::clone(ctx), stopped.clone());
                tasks.push(tokio::spawn(async move {
                    let resource = ctx.source.resources.iter().find(|r| r.name == resource).cloned().expect("planned from the source");
                    loop {
                        let started = tokio::time::Instant::now();
                        let rest = match import_resource(&ctx, &resource).await {
                            Ok(_) => every,
                            Err(err) if err.is_forbidden() => {
                                tracing::error!(source = %ctx.source.name, "403: every request to this source stops for {FORBIDDEN_REST:?}; check the key with the provider");
                                FORBIDDEN_REST
                            }
                            Err(err) => {
                                tracing::error!(source = %ctx.source.name, %err, "import failed; next attempt on schedule");
                                let _ = ctx.storage.record_error(&resource.name, "", &err.to_string(), ctx.now_ms()).await;
                                every
                            }
                        };
                        tokio::select! {
                            () = tokio::time::sleep_until(started + rest) => {}
                            _ = stopped.wait_for(|s| *s) => break,
                        }
                        if rest == FORBIDDEN_REST {
                            ctx.stats.forbidden.store(false, std::sync::atomic::Ordering::SeqCst);
                        }
                    }
                }));
            }
        }
        shutdown.await;
        let _ = stop.send(true);
        for task in tasks {
            task.abort();
            let _ = task.await;
        }
    }
}
