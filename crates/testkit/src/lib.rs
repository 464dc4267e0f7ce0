//! An example provider API to run the sync daemon's tests, benchmarks and the
//! demo against: real HTTP on `127.0.0.1`, shaped like the providers in the
//! seeds, and as strict as the strictest of them.
//!
//! * **Data**, deterministic from a seed: channels of a real-time communication
//!   platform (`GET /dev/v1/channel/{appid}`, `GET /dev/v1/channel/user/{appid}/{name}`)
//!   and properties, tenancies and applicants of a property-management platform,
//!   each list paginated its own way (page numbers with `meta`, a cursor in the
//!   body, an RFC 8288 `Link` header), with `updated_since`, `ETag`/`304`, a bulk
//!   read, and idempotent writes.
//! * **Limits** enforced by [`tollgate_core`] against the [`Clock`] given, `429`
//!   with `Retry-After`, the RateLimit headers of a chosen style or none, and
//!   **strict mode**: a key that comes back before it was told is blocked at once.
//! * **Faults**: `500`/`503`, slow answers, garbage bodies, dropped connections and
//!   an outage switch, deterministic by seed and switchable at runtime.
//! * **Evidence**: the log of every request, counters per key, strict-mode blocks
//!   and every write, for tests to prove a client kept to its limits.
//!
//! ```
//! use tollgate_testkit::{ExampleApi, Resource};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let api = ExampleApi::builder().seed(7).properties(30).strict(true).build().spawn().await.unwrap();
//! let page: serde_json::Value = reqwest::Client::new()
//!     .get(api.url("/v1/properties?page=1&per_page=25"))
//!     .header("X-Api-Key", "demo-key-12345")
//!     .send().await.unwrap()
//!     .json().await.unwrap();
//! assert_eq!(page["meta"]["total_pages"], 2);
//! assert_eq!(page["data"][0], api.handle.expected_records(Resource::Properties)[0]);
//! assert!(api.handle.blocked_keys().is_empty());
//! api.shutdown().await;
//! # }
//! ```
//!
//! It is not a gateway (that is `tollgate-gateway`, which enforces limits in
//! front of any API) and not for production: it keeps every request in memory.
//!
//! [`Clock`]: tollgate_core::Clock

mod api;
mod data;
mod endpoint;
mod faults;
mod gate;
mod limits;
mod pipeline;
mod rng;
mod routes;
mod scratch;
mod server;
mod sync_config;
mod writes;

pub use api::{ApiHandle, ExampleApi, ExampleApiBuilder};
pub use endpoint::{Endpoint, Resource};
pub use faults::{Fault, Faults};
pub use gate::{BlockEvent, KeyStats, LogEntry};
pub use limits::{EndpointLimit, HeaderStyle, Limits};
pub use rng::Rng;
pub use scratch::scratch_dir;
pub use server::RunningApi;
pub use sync_config::sync_resources_toml;
pub use writes::{WriteEntry, WriteOutcome};
