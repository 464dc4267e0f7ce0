//! Abuse escalation: from `429` to `403` for keys that keep hammering.
//!
//! Providers block keys that send "repeated requests without delays after
//! receiving 429 errors". Here that is a pure state machine per key
//! ([`Escalation`]) and a concurrent map of them ([`AbuseTracker`]):
//!
//! * a `429` tells the key when its request would be admitted (the retry instant);
//! * a request from that key that comes *before* that instant, and is rejected
//!   again, is a **strike** (an admitted request clears the instant: the key's
//!   limit may have been raised meanwhile);
//! * `strikes` strikes within `strike_window` **block** the key for `first_block`,
//!   doubling (up to `max_block`) on every repeat offence;
//! * a blocked key is refused outright (the gateway answers `403`) until the block
//!   ends or an admin lifts it.
//!
//! A client that waits the advertised `Retry-After` (whole seconds, rounded up, so
//! never earlier than the instant) is never struck.

mod tracker;

use std::time::Duration;

pub use tracker::AbuseTracker;

use crate::clock::Timestamp;

/// When hammering becomes a block, and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EscalationPolicy {
    /// Strikes within `strike_window` that block a key.
    pub strikes: u32,
    /// How long strikes are remembered.
    pub strike_window: Duration,
    /// The first block's length.
    pub first_block: Duration,
    /// The longest block; each repeat offence doubles the last, up to this.
    pub max_block: Duration,
    /// A key with no block for this long starts again at `first_block`.
    pub forget_offences_after: Duration,
}

impl Default for EscalationPolicy {
    fn default() -> Self {
        Self {
            strikes: 10,
            strike_window: Duration::from_secs(60),
            first_block: Duration::from_secs(60),
            max_block: Duration::from_secs(3_600),
            forget_offences_after: Duration::from_secs(86_400),
        }
    }
}

impl EscalationPolicy {
    /// The block for the `offence`-th offence (0-based): doubling, capped.
    pub fn block_for(&self, offence: u32) -> Duration {
        let factor = 1u32.checked_shl(offence.min(31)).unwrap_or(u32::MAX);
        self.first_block
            .checked_mul(factor)
            .unwrap_or(self.max_block)
            .min(self.max_block)
    }
}

/// What the escalation state says about a request, before any limit is asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Let the limits decide.
    Pass,
    /// The key is blocked until `until`; refuse without asking the limits.
    Blocked {
        /// When the block ends.
        until: Timestamp,
    },
}

/// What a rejection means for the key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Escalated {
    /// A `429`. `struck` is true when the request came before the key's retry
    /// instant, and counted as a strike.
    Limited {
        /// Whether this request was a strike.
        struck: bool,
    },
    /// This strike crossed the threshold: the key is blocked until `until`.
    Blocked {
        /// When the block ends.
        until: Timestamp,
    },
}

/// Where a caller keeps one key's [`Escalation`] when it keeps it beside its
/// own per-key data, for [`Enforcer::check_in`](crate::enforce::Enforcer::check_in):
/// gives exclusive access for the length of one call.
pub trait EscalationCell {
    /// Runs `f` on the key's state, with no other update in between.
    fn update<R>(&self, f: impl FnOnce(&mut Escalation) -> R) -> R;
}

/// The escalation state of one key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Escalation {
    /// The key's last advertised retry instant; rejected requests before it are
    /// strikes.
    retry_at: Timestamp,
    strikes: u32,
    first_strike_at: Timestamp,
    blocked_until: Timestamp,
    /// Blocks so far (for the doubling), and when the last one began.
    offences: u32,
    last_block_at: Timestamp,
}

impl Escalation {
    /// Whether a request at `now` may go on to the limits.
    pub fn on_request(&self, now: Timestamp) -> Gate {
        match self.blocked_until(now) {
            Some(until) => Gate::Blocked { until },
            None => Gate::Pass,
        }
    }

    /// Records a `429` at `now` that told the client to wait `retry_after`. The
    /// request is a strike if it came before the previous retry instant; enough
    /// strikes within the strike window block the key.
    pub fn on_rejection(
        &mut self,
        policy: &EscalationPolicy,
        now: Timestamp,
        retry_after: Duration,
    ) -> Escalated {
        let struck = now < self.retry_at;
        self.retry_at = self.retry_at.max(now + retry_after);
        if !struck {
            return Escalated::Limited { struck: false };
        }
        if self.strikes == 0 || now.saturating_since(self.first_strike_at) >= policy.strike_window {
            self.strikes = 0;
            self.first_strike_at = now;
        }
        self.strikes += 1;
        if self.strikes < policy.strikes {
            return Escalated::Limited { struck: true };
        }
        if self.offences > 0
            && now.saturating_since(self.last_block_at) >= policy.forget_offences_after
        {
            self.offences = 0;
        }
        self.blocked_until = now + policy.block_for(self.offences);
        self.offences += 1;
        self.last_block_at = now;
        self.strikes = 0;
        self.retry_at = Timestamp::EPOCH;
        Escalated::Blocked {
            until: self.blocked_until,
        }
    }

    /// Records an admitted request: whatever retry instant was advertised no
    /// longer applies (the slot came back, or the key's limit was raised).
    pub fn on_admission(&mut self) {
        self.retry_at = Timestamp::EPOCH;
    }

    /// Lifts a block and forgets strikes (an admin's decision). Past offences still
    /// count toward the next block's length.
    pub fn unblock(&mut self) {
        self.blocked_until = Timestamp::EPOCH;
        self.strikes = 0;
        self.retry_at = Timestamp::EPOCH;
    }

    /// When the key is blocked until, if it is blocked at `now`.
    pub fn blocked_until(&self, now: Timestamp) -> Option<Timestamp> {
        (now < self.blocked_until).then_some(self.blocked_until)
    }

    /// Strikes counted in the current strike window.
    pub fn strikes(&self) -> u32 {
        self.strikes
    }

    /// True when forgetting this state changes nothing that matters any more.
    pub fn is_idle(&self, policy: &EscalationPolicy, now: Timestamp) -> bool {
        now >= self.blocked_until
            && now >= self.retry_at
            && (self.strikes == 0
                || now.saturating_since(self.first_strike_at) >= policy.strike_window)
            && (self.offences == 0
                || now.saturating_since(self.last_block_at) >= policy.forget_offences_after)
    }
}

#[cfg(test)]
mod tests;
