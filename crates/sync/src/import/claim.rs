//! Dividing the work between processes that share a budget and a storage
//! layer.
//!
//! Several `tollgate sync` processes with one Redis server and one PostgreSQL
//! database import into the same tables. Each page run (one resource, or one
//! child of a fan-out) is claimed in Redis before it starts; a run another
//! process holds is left to it, so no page is fetched twice. A claim lasts
//! [`CLAIM_TTL`] and is renewed while its run goes on, so the work of a process
//! that dies is free again a minute later (and resumes from its checkpoint,
//! which is in the shared database). A run that finishes keeps its claim for
//! the resource's period (`every`): the data is as fresh as the configuration
//! asks, and another process that reaches it later leaves it alone instead of
//! fetching it again. A run that fails gives its claim up at once.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;
use tollgate_redis::SharedSlots;

use super::context::SourceContext;

/// How long a claim lasts without renewal.
pub const CLAIM_TTL: Duration = Duration::from_secs(60);

/// What a source needs to divide its work: the shared budget's claims, who
/// this process is, and which storage layer the work fills.
pub(crate) struct Division {
    pub(crate) slots: SharedSlots,
    pub(crate) owner: String,
    /// A digest of the store's URL: processes divide only the work of filling
    /// the same storage layer.
    pub(crate) store: String,
}

impl Division {
    pub(crate) fn new(slots: SharedSlots, store_url: &str) -> Self {
        let digest = Sha256::digest(store_url.as_bytes());
        Self {
            slots,
            owner: format!("{:016x}", rand::random::<u64>()),
            store: digest[..8].iter().map(|b| format!("{b:02x}")).collect(),
        }
    }
}

/// What names a claim in Redis.
struct Held {
    slots: SharedSlots,
    work: String,
    owner: String,
}

/// A page run this process holds; renewed until dropped, then released.
pub(crate) struct Claim {
    held: Option<(Arc<Held>, JoinHandle<()>)>,
}

impl Claim {
    /// The run finished: the claim stays for `fresh_for` (the resource's
    /// period), so no other process fetches the same pages again before the
    /// data is due.
    pub(crate) async fn finish(mut self, fresh_for: std::time::Duration) {
        if let Some((held, renewal)) = self.held.take() {
            renewal.abort();
            let Held { slots, work, owner } = &*held;
            if let Err(err) = slots.renew(work, owner, fresh_for).await {
                tracing::warn!(%err, %work, "cannot keep a finished claim; another process may import it again");
            }
        }
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if let Some((held, renewal)) = self.held.take() {
            renewal.abort();
            tokio::spawn(async move {
                let Held { slots, work, owner } = &*held;
                if let Err(err) = slots.release(work, owner).await {
                    tracing::warn!(%err, %work, "cannot release a claim; it expires by itself");
                }
            });
        }
    }
}

impl SourceContext {
    /// Claims the page run of `resource` and `scope` for this process; `None`
    /// when another process holds it. Without a division (no Redis, or a
    /// storage layer of this process's own) every run is this process's.
    pub(crate) async fn claim(&self, resource: &str, scope: &str) -> Option<Claim> {
        let Some(division) = self.division.get() else {
            return Some(Claim { held: None });
        };
        let work = format!("{}/{resource}/{scope}", division.store);
        match division
            .slots
            .claim(&work, &division.owner, CLAIM_TTL)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!(%resource, %scope, "another process is importing it");
                return None;
            }
            Err(err) => {
                // Fetching a page twice costs budget; leaving it unfetched
                // would lose data. Import it.
                tracing::warn!(%err, %resource, "cannot claim work in Redis; importing it anyway");
                return Some(Claim { held: None });
            }
        }
        let held = Arc::new(Held {
            slots: division.slots.clone(),
            work,
            owner: division.owner.clone(),
        });
        let renewing = Arc::clone(&held);
        let renewal = tokio::spawn(async move {
            let Held { slots, work, owner } = &*renewing;
            loop {
                tokio::time::sleep(CLAIM_TTL / 3).await;
                match slots.renew(work, owner, CLAIM_TTL).await {
                    Ok(true) => {}
                    Ok(false) => {
                        tracing::warn!(%work, "a claim expired while its run went on; another process may import it too");
                        return;
                    }
                    Err(err) => tracing::warn!(%err, %work, "cannot renew a claim"),
                }
            }
        });
        Some(Claim {
            held: Some((held, renewal)),
        })
    }
}
