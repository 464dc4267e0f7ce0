//! Policies bind limits to requests: per key, per key and endpoint, per endpoint.

use smallvec::SmallVec;

use crate::decision::LimitId;
use crate::quota::Quota;
use crate::store::Charge;
use crate::tier::Tier;

/// Whose budget a policy counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Each API key has its own budget ("50 per rolling 60 s per key").
    PerKey,
    /// Each API key has its own budget on each endpoint.
    PerKeyEndpoint,
    /// All keys share one budget per endpoint ("20/s for the user-list query").
    PerEndpoint,
}

impl Scope {
    /// The name used in configuration and headers.
    pub const fn name(&self) -> &'static str {
        match self {
            Scope::PerKey => "per-key",
            Scope::PerKeyEndpoint => "per-key-endpoint",
            Scope::PerEndpoint => "per-endpoint",
        }
    }
}

/// Which endpoints a policy applies to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Endpoints {
    /// Every request.
    #[default]
    All,
    /// Only requests to these endpoints (ids the caller assigns, e.g. route indexes).
    Only(Vec<u32>),
}

impl Endpoints {
    fn contains(&self, endpoint: Option<u32>) -> bool {
        match self {
            Endpoints::All => true,
            Endpoints::Only(ids) => endpoint.is_some_and(|e| ids.contains(&e)),
        }
    }
}

/// One named limit and what it applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// The name clients see in `RateLimit-Policy` and in problem bodies.
    pub name: String,
    /// Whose budget it counts.
    pub scope: Scope,
    /// What it allows (the base count, before a key's increments).
    pub quota: Quota,
    /// The requests it applies to.
    pub endpoints: Endpoints,
    /// When set, a key's paid increments raise this limit by `step` each.
    /// Meaningless for [`Scope::PerEndpoint`], where no single key owns the budget.
    pub tier_step: Option<u32>,
}

impl Policy {
    /// The quota for a key with `increments` paid increments.
    pub fn quota_for(&self, increments: u32) -> Quota {
        match (self.tier_step, self.scope) {
            (Some(step), Scope::PerKey | Scope::PerKeyEndpoint) => {
                let tier = Tier {
                    base: self.quota.rate.count(),
                    step,
                };
                self.quota.with_count(tier.limit(increments))
            }
            _ => self.quota,
        }
    }
}

/// The request as policies see it: which key, which endpoint, and the key's tier.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Subject {
    /// The API key's id (not its secret).
    pub key: u32,
    /// The endpoint (route) id, if the request matched one.
    pub endpoint: Option<u32>,
    /// The key's paid increments.
    pub increments: u32,
}

/// The policies of one gateway or one simulation, each with the [`LimitId`] its
/// state is kept under.
///
/// ```
/// use tollgate_core::{Endpoints, Policy, PolicySet, Quota, Rate, Scope, Subject};
///
/// let policies = PolicySet::new(vec![
///     Policy { name: "per-key".into(), scope: Scope::PerKey,
///              quota: Quota::rolling(Rate::per_minute(50)), endpoints: Endpoints::All,
///              tier_step: Some(50) },
///     Policy { name: "user-list".into(), scope: Scope::PerEndpoint,
///              quota: Quota::fixed(Rate::per_second(20)), endpoints: Endpoints::Only(vec![3]),
///              tier_step: None },
/// ]);
/// let charges = policies.charges(&Subject { key: 9, endpoint: Some(3), increments: 1 });
/// assert_eq!(charges.len(), 2);
/// assert_eq!(charges[0].quota.rate.count(), 100); // 50 + 1 × 50
/// assert_eq!(policies.charges(&Subject { key: 9, endpoint: Some(4), increments: 0 }).len(), 1);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PolicySet {
    /// Each policy with the id its state is kept under.
    entries: Vec<(LimitId, Policy)>,
    /// The id the next new policy gets: ids are never reused, so a removed
    /// policy's leftover state can never be mistaken for a new one's.
    next_id: u32,
}

impl PolicySet {
    /// Policies in the order given; the first gets `LimitId(0)`.
    pub fn new(policies: Vec<Policy>) -> Self {
        Self::default().reload(policies)
    }

    /// The policies of a new configuration, keeping the id (and so the state:
    /// the slots used, the counts) of every policy whose name is unchanged.
    /// New names get fresh ids.
    pub fn reload(&self, policies: Vec<Policy>) -> Self {
        let mut next_id = self.next_id;
        let entries = policies
            .into_iter()
            .map(|policy| {
                let id = self.id_of(&policy.name).unwrap_or_else(|| {
                    next_id += 1;
                    LimitId(next_id - 1)
                });
                (id, policy)
            })
            .collect();
        Self { entries, next_id }
    }

    /// The id of the policy named `name`.
    pub fn id_of(&self, name: &str) -> Option<LimitId> {
        self.entries
            .iter()
            .find(|(_, p)| p.name == name)
            .map(|(id, _)| *id)
    }

    /// Every policy with its id, in configuration order.
    pub fn iter(&self) -> impl Iterator<Item = (LimitId, &Policy)> {
        self.entries.iter().map(|(id, p)| (*id, p))
    }

    /// Every policy, in configuration order.
    pub fn policies(&self) -> impl Iterator<Item = &Policy> {
        self.entries.iter().map(|(_, p)| p)
    }

    /// How many policies.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when there is no policy.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The policy with this id.
    pub fn get(&self, limit: LimitId) -> Option<&Policy> {
        self.entries
            .iter()
            .find(|(id, _)| *id == limit)
            .map(|(_, p)| p)
    }

    /// The charges for one request: one per policy that applies, keyed so that
    /// each scope counts the right budget.
    pub fn charges(&self, subject: &Subject) -> SmallVec<[Charge<u64>; 4]> {
        self.entries
            .iter()
            .filter(|(_, p)| p.endpoints.contains(subject.endpoint))
            .filter_map(|(id, p)| {
                let key = bucket_key(p.scope, subject)?;
                Some(Charge {
                    limit: *id,
                    key,
                    quota: p.quota_for(subject.increments),
                })
            })
            .collect()
    }
}

/// The budget within a limit that a request counts against. Each limit keeps its
/// own table, so the same number in two limits never collides.
fn bucket_key(scope: Scope, subject: &Subject) -> Option<u64> {
    let key = u64::from(subject.key);
    match scope {
        Scope::PerKey => Some(key),
        Scope::PerKeyEndpoint => subject.endpoint.map(|e| key << 32 | u64::from(e)),
        Scope::PerEndpoint => subject.endpoint.map(u64::from),
    }
}
