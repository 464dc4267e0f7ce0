//! One module per subcommand.

pub mod demo;
pub mod once;
pub mod outbox;
pub mod plan;
pub mod progress;
pub mod report;
pub mod serve;
pub mod simulate;
pub mod sync;

use std::time::Duration;

use tollgate_core::Rate;

/// Parses a limit for clap, with the core's teaching message on failure.
pub fn rate(text: &str) -> Result<Rate, String> {
    text.parse()
        .map_err(|e: tollgate_core::ParseRateError| e.to_string())
}

/// Parses a duration for clap (`1s`, `250ms`, `5min`).
pub fn duration(text: &str) -> Result<Duration, String> {
    tollgate_core::parse_duration(text)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("`{text}` is not a duration: write it like `1s`, `250ms` or `5min`"))
}

/// Completes on SIGTERM or Ctrl-C. The handlers are in place from the call on
/// (not from the first poll), so a signal sent as soon as a URL is printed is
/// not lost: call it inside the runtime, before announcing anything.
pub fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send {
    #[cfg(unix)]
    let (mut term, mut interrupt) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::terminate()).expect("SIGTERM handler"),
            signal(SignalKind::interrupt()).expect("SIGINT handler"),
        )
    };
    async move {
        #[cfg(unix)]
        tokio::select! {
            _ = term.recv() => {}
            _ = interrupt.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutting down");
    }
}
