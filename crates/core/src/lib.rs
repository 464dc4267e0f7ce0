//! Exact rate-limit decisions, with no I/O.
//!
//! `tollgate-core` is the part of tollgate that both sides share: the gateway
//! enforces with it, and the sync daemon plans against it, so the two can never
//! disagree about what a limit means. It holds limits and their algorithms, the
//! [`Decision`] a request gets, an in-memory [`MemoryStore`], abuse escalation,
//! tiers and the budget [planner](plan).
//!
//! It does no I/O and starts no threads: time is a [`Clock`] the caller passes in
//! (a [`ManualClock`] in tests), and a store that lives elsewhere (Redis)
//! implements the same [`Store`] trait. It is not an HTTP middleware nor a client
//! pacer; those live in the gateway and sync crates, on top of this one.
//!
//! ```
//! use tollgate_core::{Charge, LimitId, ManualClock, MemoryStore, Quota, Timestamp};
//!
//! // The seeds' default: 50 requests per rolling 60 s per key.
//! let quota = Quota::rolling("50/60s".parse().unwrap());
//! let store = MemoryStore::new(ManualClock::new(Timestamp::from_secs(0)));
//! let charge = Charge { limit: LimitId(0), key: "key-12345", quota };
//! let decision = store.decide_now(&[charge]);
//! assert!(decision.is_admitted());
//! assert_eq!(decision.verdicts()[0].remaining, 49);
//! ```

pub mod abuse;
pub mod algorithm;
mod clock;
mod decision;
pub mod enforce;
pub mod plan;
mod policy;
mod quota;
mod store;
mod tier;

pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use decision::{Decision, LimitId, Verdict, retry_after_secs};
pub use policy::{Endpoints, Policy, PolicySet, Scope, Subject};
pub use quota::{Algorithm, ParseRateError, Quota, Rate, parse_duration};
pub use store::{Charge, MemoryStore, Store, StoreError};
pub use tier::Tier;
