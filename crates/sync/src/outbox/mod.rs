//! The outbox: requests meant for a provider — tenancy applications,
//! appointments — that your application hands to the sync daemon instead of
//! calling the provider itself. The seeds allow direct calls "for data
//! submission" and ask integrators to "use queuing for non-urgent requests";
//! the outbox is that queue, and it spends the same budget as the imports.
//!
//! * A submission is stored (`tollgate_sql::Storage::submit`) before the API
//!   answers `202 Accepted`, so a crash loses none; a second submission with
//!   the same idempotency key is the first one.
//! * One worker per source ([`deliver_forever`]) claims the most urgent
//!   submission due, waits for a slot of the source's pacer with its
//!   [`Priority`] — urgent and normal ones take the next slot before any
//!   waiting import, bulk ones go along with the imports — and sends it with
//!   the source's key, and its idempotency key when the provider honours one
//!   (`[sources.submit] idempotency_header`).
//! * `2xx`: delivered, the answer kept. A `429` pauses the whole source until
//!   its retry instant (the pacer) and the submission waits for it; server
//!   errors, timeouts and broken connections are retried with jittered
//!   exponential backoff; any other `4xx` is final and reported.
//! * A submission left in flight by a crash is queued again at start-up and
//!   sent with the same idempotency key.
//!
//! Not a general message queue: one worker per source sends one submission at
//! a time, in priority order, as fast as the budget allows.

mod deliver;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
pub use tollgate_sql::Priority;

use crate::daemon::FORBIDDEN_REST;
use crate::import::SourceContext;

pub use deliver::{MAX_ATTEMPTS, backoff, deliver};

/// How often an idle worker looks at the storage layer anyway: another
/// process (`tollgate outbox retry`) may have queued something.
pub const POLL: Duration = Duration::from_secs(1);

/// Wakes each source's worker when a submission is accepted.
#[derive(Debug, Default)]
pub struct Outbox {
    wake: HashMap<String, Arc<Notify>>,
}

impl Outbox {
    /// One wake-up per source.
    pub fn new(sources: &[Arc<SourceContext>]) -> Self {
        let wake = sources
            .iter()
            .map(|ctx| (ctx.source.name.clone(), Arc::new(Notify::new())))
            .collect();
        Self { wake }
    }

    /// Tells `source`'s worker a submission is waiting.
    pub fn wake(&self, source: &str) {
        if let Some(notify) = self.wake.get(source) {
            notify.notify_one();
        }
    }

    /// The wake-up of `source`'s worker.
    pub fn waker(&self, source: &str) -> Arc<Notify> {
        self.wake.get(source).cloned().unwrap_or_default()
    }
}

/// The pacer's priority for a submission's.
pub fn pacer_priority(priority: Priority) -> crate::pacer::Priority {
    match priority {
        Priority::Urgent => crate::pacer::Priority::Urgent,
        Priority::Normal => crate::pacer::Priority::Normal,
        Priority::Bulk => crate::pacer::Priority::Import,
    }
}

/// Delivers `ctx`'s submissions for ever: first queues again those a stopped
/// process left in flight, then claims and sends the next one due, one at a
/// time, sleeping until the next is due, `wake` is notified, or [`POLL`].
pub async fn deliver_forever(ctx: Arc<SourceContext>, wake: Arc<Notify>) {
    let name = ctx.source.name.clone();
    match ctx.storage.requeue_in_flight(&name, ctx.now_ms()).await {
        Ok(0) => {}
        Ok(n) => {
            tracing::info!(source = %name, submissions = n, "submissions in flight when the last process stopped go again, with the same idempotency keys")
        }
        Err(err) => {
            tracing::warn!(source = %name, %err, "cannot queue again the submissions the last process left in flight")
        }
    }
    // A `403` stops every request to the source for FORBIDDEN_REST, as it
    // stops the imports; the worker lifts the stop itself when the source has
    // no import to do it.
    let mut resting_until = None;
    loop {
        let woken = wake.notified();
        if ctx.stats.forbidden.load(Ordering::SeqCst) {
            let until = *resting_until.get_or_insert_with(|| Instant::now() + FORBIDDEN_REST);
            if Instant::now() < until {
                tokio::time::sleep(POLL).await;
                continue;
            }
            ctx.stats.forbidden.store(false, Ordering::SeqCst);
        }
        resting_until = None;
        match ctx.storage.claim_submission(&name, ctx.now_ms()).await {
            Ok(Some(submission)) => {
                let attempt = deliver(&ctx, &submission).await;
                record(&ctx, submission.id, &attempt).await;
                continue;
            }
            Ok(None) => {}
            Err(err) => {
                tracing::warn!(source = %name, %err, "cannot read the outbox; trying again");
                tokio::time::sleep(POLL).await;
                continue;
            }
        }
        let next = ctx.storage.next_submission_at(&name).await.ok().flatten();
        let wait = next.map_or(POLL, |at| {
            Duration::from_millis(u64::try_from(at - ctx.now_ms()).unwrap_or(0)).min(POLL)
        });
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = woken => {}
        }
    }
}

/// Records how an attempt ended, trying again while the storage layer fails:
/// a submission whose outcome is never recorded stays in flight, and goes
/// again (with its key) after a restart.
async fn record(ctx: &SourceContext, id: i64, attempt: &tollgate_sql::Attempt) {
    for tries in 1..=5 {
        match ctx.storage.record_attempt(id, attempt, ctx.now_ms()).await {
            Ok(_) => return,
            Err(err) => {
                tracing::warn!(source = %ctx.source.name, id, %err, tries, "cannot record how a submission's delivery ended");
                tokio::time::sleep(POLL).await;
            }
        }
    }
    tracing::error!(source = %ctx.source.name, id, "the outcome of this submission is not recorded: it stays in flight until the next start, which sends it again with the same idempotency key");
}
