//! What a store answers: one verdict per matching limit, and the sum of them.

use std::time::Duration;

use smallvec::SmallVec;

/// Identifies one limit (one policy) in a store: its state lives apart from every
/// other limit's, so one key can be counted by several limits at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LimitId(pub u32);

/// What one limit said about one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The limit that decided.
    pub limit: LimitId,
    /// Whether this limit, on its own, admits the request.
    pub admitted: bool,
    /// The quota's count (after tiers) this verdict was made against.
    pub quota: u32,
    /// Requests this limit still allows now: after this request when the whole
    /// decision admitted it; as it was when the request was rejected (nothing is
    /// charged then); 0 for a limit that rejected it.
    pub remaining: u32,
    /// When this limit rejected the request: how long until it would admit one.
    pub retry_after: Duration,
    /// How long until the next used slot returns (RateLimit's `t`).
    pub reset_after: Duration,
}

/// The store's answer for one request: admitted only if every matching limit
/// admitted it, and then every one of them was charged; otherwise none was.
///
/// A rejection is a value, not an error: it says exactly when to retry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    verdicts: SmallVec<[Verdict; 4]>,
}

impl Decision {
    /// A decision from its verdicts, in the order the limits were given.
    pub fn new(verdicts: impl IntoIterator<Item = Verdict>) -> Self {
        Self {
            verdicts: verdicts.into_iter().collect(),
        }
    }

    /// A decision of verdicts already collected.
    #[inline]
    pub(crate) fn from_verdicts(verdicts: SmallVec<[Verdict; 4]>) -> Self {
        Self { verdicts }
    }

    /// A decision with one verdict: the common case, built in place.
    #[inline]
    pub(crate) fn single(verdict: Verdict) -> Self {
        let mut verdicts = SmallVec::new();
        verdicts.push(verdict);
        Self { verdicts }
    }

    /// True when every matching limit admitted the request (and so each was charged).
    pub fn is_admitted(&self) -> bool {
        self.verdicts.iter().all(|v| v.admitted)
    }

    /// One verdict per limit, in the order the limits were given.
    pub fn verdicts(&self) -> &[Verdict] {
        &self.verdicts
    }

    /// The verdicts of the limits that rejected the request.
    pub fn rejections(&self) -> impl Iterator<Item = &Verdict> {
        self.verdicts.iter().filter(|v| !v.admitted)
    }

    /// When rejected: the wait until every limit that rejected would admit (the
    /// latest of their retry times). `None` when admitted.
    pub fn retry_after(&self) -> Option<Duration> {
        self.rejections().map(|v| v.retry_after).max()
    }

    /// The verdict with the fewest requests left (the one to show a client that
    /// can show only one).
    pub fn tightest(&self) -> Option<&Verdict> {
        self.verdicts
            .iter()
            .min_by_key(|v| (v.admitted, v.remaining))
    }
}

/// Whole seconds, rounded up, as `Retry-After` needs: a client that waits this
/// long is never early.
///
/// ```
/// use std::time::Duration;
/// use tollgate_core::retry_after_secs;
/// assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
/// assert_eq!(retry_after_secs(Duration::from_millis(2000)), 2);
/// assert_eq!(retry_after_secs(Duration::from_millis(2001)), 3);
/// ```
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_nanos().div_ceil(1_000_000_000) as u64
}
