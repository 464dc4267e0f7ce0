//! The part of a budget several processes share, in Redis.
//!
//! A request first takes its slots in its own process's logs, then the same
//! slots in Redis ([`SharedSlots`]), where every process on the key sees every
//! other's: the budget holds across processes exactly as it does across the
//! workers of one. When Redis cannot be reached, nothing is sent: the sync waits
//! and asks again, because a request sent on a guess could be the one that
//! gets the key blocked — an import that waits loses only time.

use std::time::Duration;

use tollgate_core::Rate;
use tollgate_redis::{SharedLimit, SharedSlots};

use super::{Pacer, Permit};

/// The longest a request waits before asking Redis again: a slot held by a
/// request in flight elsewhere is counted until its longest possible answer,
/// and usually returns much earlier.
const POLL: Duration = Duration::from_millis(100);

/// How long to wait before asking again when Redis does not answer.
const UNREACHABLE_WAIT: Duration = Duration::from_secs(1);

pub(super) struct Shared {
    pub(super) slots: SharedSlots,
    /// The longest an answer can take (the source's timeout).
    pub(super) timeout: Duration,
}

fn id(permit: &Permit) -> String {
    format!("{:016x}", permit.id)
}

/// The limits as the shared slots take them, borrowing `labelled`'s labels.
fn shared(labelled: &[(String, Rate)]) -> Vec<SharedLimit<'_>> {
    labelled
        .iter()
        .map(|(label, rate)| SharedLimit { label, rate: *rate })
        .collect()
}

impl Shared {
    /// Takes `permit`'s slots in Redis, waiting until they are free.
    pub(super) async fn take(&self, pacer: &Pacer, permit: &Permit) {
        let id = id(permit);
        // The limits as they were when the permit was taken here: the same
        // ones the local logs charged, however long Redis makes it wait.
        let labelled = pacer.labelled(permit);
        let limits = shared(&labelled);
        let mut warned = false;
        loop {
            match self.slots.take(&id, &limits, self.timeout).await {
                Ok(None) => return,
                Ok(Some(wait)) => tokio::time::sleep(wait.min(POLL)).await,
                Err(err) => {
                    if !warned {
                        tracing::warn!(%err, "the shared budget in Redis cannot be reached; nothing is sent until it can");
                        warned = true;
                    }
                    tokio::time::sleep(UNREACHABLE_WAIT).await;
                }
            }
        }
    }

    /// Returns `permit`'s slots in Redis one window from now, and pauses the
    /// whole budget for `pause` after a `429`.
    pub(super) async fn done(&self, pacer: &Pacer, permit: &Permit, pause: Option<Duration>) {
        let labelled = pacer.labelled(permit);
        if let Err(err) = self.slots.done(&id(permit), &shared(&labelled)).await {
            // The slot stays held until its provisional end: late, never early.
            tracing::warn!(%err, "cannot return a slot of the shared budget; it returns a little later");
        }
        let Some(pause) = pause else { return };
        for attempt in 1..=3 {
            match self.slots.pause(pause).await {
                Ok(_) => return,
                Err(err) => {
                    tracing::error!(%err, attempt, "cannot pause the shared budget after a 429: other processes may call before the retry instant");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    }
}
