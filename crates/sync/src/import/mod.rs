//! Importing: page after page, paced, checkpointed, resumable after a crash.

pub mod context;
pub mod fetch;
pub mod page;
pub mod run;

pub use context::{SourceContext, SourceStats};
pub use run::{ImportError, Imported, import_resource};

#[cfg(test)]
mod tests;
