//! Importing: page after page, paced, checkpointed, resumable after a crash.

mod bulk;
mod claim;
pub mod context;
pub mod fetch;
pub mod page;
pub mod run;

pub use claim::CLAIM_TTL;
pub use context::{SourceContext, SourceStats};
pub use run::{ImportError, Imported, import_resource};

#[cfg(test)]
mod tests;
