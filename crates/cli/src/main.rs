//! `tollgate`: the one binary for both sides of a rate-limited API.

mod commands;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// jemalloc rather than glibc's malloc: a proxied request allocates and frees a
/// dozen or so buffers (hyper's read and write buffers, body channels,
/// boxed futures), and jemalloc's per-thread caches serve them with less work
/// than glibc's bins, which fall back to consolidation for the larger ones.
/// Measured side by side against nginx in `bench/gateway/run.sh`: less CPU per
/// request and a lower p99 on both the admitted and the 429 path (see
/// docs/benchmarks-gateway.md).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Both sides of a rate-limited HTTP API: enforce limits exactly as a provider,
/// live within them as an integrator.
#[derive(Debug, Parser)]
#[command(name = "tollgate", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Show both sides in one process, in about a minute: a provider API, the
    /// gateway in front of it, a naive client getting blocked, and tollgate
    /// sync importing everything with zero 429s.
    ///
    /// Example:
    ///
    ///     tollgate demo              # the seeds limits, 6 times faster
    ///
    ///     tollgate demo --speed max  # as fast as the demo can go
    ///
    ///     tollgate demo --keep       # then leave it running to explore
    Demo(commands::demo::DemoArgs),
    /// Plan an even schedule of recurring requests inside a provider's limits.
    ///
    /// Example (the seeds' case: the user lists of 100 channels under 20/s):
    ///
    ///     tollgate plan --limit 20/s --tasks 100 --every 1s
    Plan(commands::plan::PlanArgs),
    /// Replay requests against a limit and count what was admitted, rejected
    /// (429) and blocked (403).
    ///
    /// Examples:
    ///
    ///     tollgate simulate --limit 50/60s --pattern naive --for 5min
    ///
    ///     tollgate simulate --limit 50/60s --trace requests.txt
    Simulate(commands::simulate::SimulateArgs),
    /// Run the gateway: enforce limits in front of an HTTP API.
    ///
    /// Example:
    ///
    ///     TOLLGATE_ADMIN_TOKEN=secret tollgate serve --config examples/gateway.toml
    ///
    /// `--check` validates the configuration without serving. SIGHUP (or
    /// `POST /admin/reload`) reloads it without dropping connections or
    /// resetting windows; SIGTERM finishes in-flight requests, then exits.
    Serve(commands::serve::ServeArgs),
    /// Import rate-limited APIs into your storage layer, inside their budget.
    ///
    /// Example:
    ///
    ///     EXAMPLE_API_KEY=... tollgate sync --config examples/sync.toml --once
    ///
    /// Requests are spread evenly inside every limit; a 429 pauses every
    /// request to its source until its retry instant; a 403 stops the source.
    Sync(commands::sync::SyncArgs),
    /// Print what a limit-increase request asks for, from what the sync daemon
    /// measured: import frequency, storage layer, full-sync duration, budget,
    /// and every 429 with whether it was honoured.
    ///
    /// Example:
    ///
    ///     tollgate report --config examples/sync.toml --json
    Report(commands::report::ReportArgs),
    /// The submissions the sync daemon accepted for its providers (`POST
    /// /v1/sources/{source}/submit/{path}` on its API): list them, show one
    /// with the provider's answer, retry a failed one, cancel a queued one.
    /// Reads and writes the storage layer; the daemon need not run.
    ///
    /// Examples:
    ///
    ///     tollgate outbox --config examples/sync.toml list --state failed
    ///
    ///     tollgate outbox --config examples/sync.toml show 42
    ///
    ///     tollgate outbox --config examples/sync.toml retry 42
    Outbox(commands::outbox::OutboxArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo tells its own story; its parts log only warnings unless asked.
    let default_filter = if matches!(cli.command, Command::Demo(_)) {
        "warn"
    } else {
        "info"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter)),
        )
        // Above the progress bars while an import draws them.
        .with_writer(commands::progress::log_writer)
        .init();
    let result = match cli.command {
        Command::Demo(args) => commands::demo::run(&args),
        Command::Plan(args) => commands::plan::run(&args),
        Command::Simulate(args) => commands::simulate::run(&args),
        Command::Serve(args) => commands::serve::run(&args),
        Command::Sync(args) => commands::sync::run(&args),
        Command::Report(args) => commands::report::run(&args),
        Command::Outbox(args) => commands::outbox::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("tollgate: {err:#}");
            ExitCode::from(2)
        }
    }
}
