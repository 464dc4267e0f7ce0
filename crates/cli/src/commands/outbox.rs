//! `tollgate outbox`: the submissions the sync daemon accepted for its
//! providers, read and changed in the storage layer (the daemon need not run).

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use tollgate_core::{Clock, SystemClock};
use tollgate_sql::{Storage, Submission, SubmissionFilter, SubmissionState};
use tollgate_sync::config::SyncConfig;

/// Arguments of `tollgate outbox`.
#[derive(Debug, Args)]
pub struct OutboxArgs {
    /// The sync configuration whose storage layer holds the outbox (its
    /// `store`).
    #[arg(long, short, value_name = "FILE", env = "TOLLGATE_SYNC_CONFIG")]
    config: Option<PathBuf>,
    /// The storage layer, overriding the file's `store` (or instead of a
    /// file): `sqlite://file.db` or `postgres://user@host/db`.
    #[arg(long, value_name = "URL", env = "TOLLGATE_STORE")]
    store: Option<String>,
    #[command(subcommand)]
    action: OutboxAction,
}

/// What to do with the outbox.
#[derive(Debug, Subcommand)]
enum OutboxAction {
    /// The submissions, newest first: id, source, priority, state, attempts,
    /// age, path, and the provider's status or the last error.
    ///
    /// Example: the ones that failed, to look at and retry:
    ///
    ///     tollgate outbox --config sync.toml list --state failed
    List {
        /// Only those in this state: queued, in_flight, delivered, failed,
        /// cancelled.
        #[arg(long, value_parser = state)]
        state: Option<SubmissionState>,
        /// Only this source's.
        #[arg(long)]
        source: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..=10_000))]
        limit: u32,
    },
    /// One submission in full: what was sent (with its idempotency key), when
    /// it was accepted and last changed, when it goes next if queued, and the
    /// provider's answer or why it failed.
    ///
    ///     tollgate outbox --config sync.toml show 42
    Show {
        /// The submission's id (from `list`, or the `Location` of its 202).
        id: i64,
    },
    /// Queue a failed or cancelled submission again (or a queued one waiting
    /// for a later attempt): the running daemon sends it within a second, with
    /// the same idempotency key, so a provider that honours it never acts
    /// twice.
    ///
    ///     tollgate outbox --config sync.toml retry 42
    Retry {
        /// The submission's id.
        id: i64,
    },
    /// Cancel a queued submission: it will not be sent. One in flight or
    /// already answered cannot be called back.
    ///
    ///     tollgate outbox --config sync.toml cancel 42
    Cancel {
        /// The submission's id.
        id: i64,
    },
}

fn state(text: &str) -> Result<SubmissionState, String> {
    text.parse()
}

/// Runs `tollgate outbox`.
pub fn run(args: &OutboxArgs) -> anyhow::Result<()> {
    let store = match (&args.store, &args.config) {
        (Some(store), _) => store.clone(),
        (None, Some(config)) => SyncConfig::load(config)?.store,
        (None, None) => bail!(
            "name the storage layer: --config sync.toml (its `store`) or --store sqlite://tollgate-sync.db"
        ),
    };
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let storage = Storage::connect(&store)
            .await
            .with_context(|| format!("cannot open the store `{store}`"))?;
        let result = act(&storage, &args.action).await;
        storage.close().await;
        result
    })
}

fn now_ms() -> i64 {
    i64::try_from(SystemClock::new().now().as_millis()).unwrap_or(i64::MAX)
}

async fn act(storage: &Storage, action: &OutboxAction) -> anyhow::Result<()> {
    match action {
        OutboxAction::List {
            state,
            source,
            limit,
        } => {
            let filter = SubmissionFilter {
                source: source.clone(),
                state: *state,
                before_id: None,
                limit: *limit,
            };
            list(&storage.submissions(&filter).await?);
        }
        OutboxAction::Show { id } => show(&found(storage, *id).await?),
        OutboxAction::Retry { id } => {
            if storage.retry_submission(*id, now_ms()).await? {
                println!(
                    "submission {id} is queued again: the running sync daemon sends it within a second, with the same idempotency key"
                );
            } else {
                let submission = found(storage, *id).await?;
                bail!(
                    "submission {id} is {}: only a failed, cancelled or queued one can be retried",
                    submission.state
                );
            }
        }
        OutboxAction::Cancel { id } => {
            if storage.cancel_submission(*id, now_ms()).await? {
                println!("submission {id} is cancelled: it will not be sent");
            } else {
                let submission = found(storage, *id).await?;
                bail!(
                    "submission {id} is {}: only a queued one can be cancelled",
                    submission.state
                );
            }
        }
    }
    Ok(())
}

async fn found(storage: &Storage, id: i64) -> anyhow::Result<Submission> {
    storage
        .submission(id)
        .await?
        .with_context(|| format!("no submission {id}: `tollgate outbox list` shows the ids"))
}

fn ago(at_ms: i64) -> String {
    let s = (now_ms() - at_ms).max(0) / 1000;
    match s {
        0..120 => format!("{s} s"),
        120..7_200 => format!("{} min", s / 60),
        _ => format!("{} h", s / 3_600),
    }
}

fn outcome(submission: &Submission) -> String {
    match (&submission.answer, &submission.error) {
        (Some(answer), _) if submission.state == SubmissionState::Delivered => {
            format!("{}", answer.status)
        }
        (_, Some(error)) => error.clone(),
        (Some(answer), None) => format!("{}", answer.status),
        (None, None) => String::new(),
    }
}

fn list(submissions: &[Submission]) {
    println!(
        "{:>7} {:<14} {:<7} {:<10} {:>8} {:>7}  {:<28} result",
        "id", "source", "prio", "state", "attempts", "age", "path"
    );
    for s in submissions {
        println!(
            "{:>7} {:<14} {:<7} {:<10} {:>8} {:>7}  {:<28} {}",
            s.id,
            s.source,
            s.priority.as_str(),
            s.state.as_str(),
            s.attempts,
            ago(s.created_at_ms),
            s.path,
            outcome(s)
        );
    }
    if submissions.is_empty() {
        println!("(none)");
    }
}

fn show(s: &Submission) {
    println!("submission {}", s.id);
    println!("  source           {}", s.source);
    println!("  request          {} {}", s.method, s.path);
    println!(
        "  content type     {}",
        s.content_type.as_deref().unwrap_or("-")
    );
    println!("  idempotency key  {}", s.idempotency_key);
    println!("  priority         {}", s.priority);
    println!("  state            {}", s.state);
    println!("  attempts         {}", s.attempts);
    println!("  accepted         {} ago", ago(s.created_at_ms));
    println!("  last change      {} ago", ago(s.updated_at_ms));
    if s.state == SubmissionState::Queued {
        let wait = (s.next_attempt_ms - now_ms()).max(0);
        println!("  next attempt     in {:.1} s", wait as f64 / 1000.0);
    }
    if let Some(error) = &s.error {
        println!("  last error       {error}");
    }
    println!("  body             {}", String::from_utf8_lossy(&s.body));
    if let Some(answer) = &s.answer {
        println!(
            "  provider answer  {} {}",
            answer.status,
            answer.content_type.as_deref().unwrap_or("")
        );
        println!("  {}", String::from_utf8_lossy(&answer.body));
    }
}
