//! The provider's push notifications (webhook events) already applied: what
//! refuses a replayed event, in this process and after a restart.
//!
//! A provider signs each event with its timestamp, and the receiver refuses
//! events whose timestamp is too far from now; inside that window, a copy of a
//! genuine event would pass the signature check. So each event id is claimed
//! here before its change is applied ([`Storage::claim_event`]): a second
//! claim of the same id fails, whoever makes it. Ids are forgotten once their
//! timestamp is older than the window, since a copy of them would be refused
//! as stale anyway; the table stays as small as the events of one window.

use crate::StorageError;
use crate::storage::Storage;

/// An event to claim: its source, its id and when the provider signed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventClaim<'a> {
    /// The source that sent it.
    pub source: &'a str,
    /// The provider's event id, unique per source.
    pub id: &'a str,
    /// The timestamp the provider signed with it.
    pub signed_at_ms: i64,
    /// When it was received.
    pub received_at_ms: i64,
}

impl Storage {
    /// Claims `event` for applying: `true` if its id was not seen yet (it is
    /// now), `false` if it was (a replay: apply nothing). First forgets the
    /// events of the same source signed before `forget_signed_before_ms`.
    ///
    /// Atomic: of two concurrent claims of one id, exactly one gets `true`.
    pub async fn claim_event(
        &self,
        event: EventClaim<'_>,
        forget_signed_before_ms: i64,
    ) -> Result<bool, StorageError> {
        let fail = StorageError::query(self.backend());
        on_pool!(self, pool => {
            sqlx::query("DELETE FROM sync_events WHERE source = $1 AND signed_at_ms < $2")
                .bind(event.source)
                .bind(forget_signed_before_ms)
                .execute(pool)
                .await
                .map_err(&fail)?;
            let done = sqlx::query(
                "INSERT INTO sync_events (source, id, signed_at_ms, received_at_ms) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (source, id) DO NOTHING",
            )
            .bind(event.source)
            .bind(event.id)
            .bind(event.signed_at_ms)
            .bind(event.received_at_ms)
            .execute(pool)
            .await
            .map_err(&fail)?;
            Ok(done.rows_affected() == 1)
        })
    }

    /// Gives back the claim on event `id` of `source` when its change could
    /// not be applied, so the provider's next delivery of it is applied.
    pub async fn release_event(&self, source: &str, id: &str) -> Result<(), StorageError> {
        let fail = StorageError::query(self.backend());
        on_pool!(self, pool => {
            sqlx::query("DELETE FROM sync_events WHERE source = $1 AND id = $2")
                .bind(source)
                .bind(id)
                .execute(pool)
                .await
                .map_err(&fail)?;
        });
        Ok(())
    }

    /// Whether event `id` of `source` was claimed and not forgotten since.
    pub async fn event_seen(&self, source: &str, id: &str) -> Result<bool, StorageError> {
        let fail = StorageError::query(self.backend());
        on_pool!(self, pool => {
            let row = sqlx::query("SELECT 1 FROM sync_events WHERE source = $1 AND id = $2")
                .bind(source)
                .bind(id)
                .fetch_optional(pool)
                .await
                .map_err(&fail)?;
            Ok(row.is_some())
        })
    }
}
