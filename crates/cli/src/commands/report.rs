//! `tollgate report`: the facts a limit-increase request asks for.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use tollgate_sql::Storage;
use tollgate_sync::config::SyncConfig;
use tollgate_sync::report::report;

/// Arguments of `tollgate report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The sync configuration whose imports to report on.
    #[arg(long, short, value_name = "FILE", env = "TOLLGATE_SYNC_CONFIG")]
    config: PathBuf,
    /// Only this source.
    #[arg(long)]
    source: Option<String>,
    /// The storage layer, overriding the file's `store`.
    #[arg(long, value_name = "URL", env = "TOLLGATE_STORE")]
    store: Option<String>,
    /// JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Prints the report.
pub fn run(args: &ReportArgs) -> anyhow::Result<()> {
    let mut config = SyncConfig::load(&args.config)?;
    if let Some(store) = &args.store {
        config.store = store.clone();
    }
    let sources: Vec<_> = config
        .sources
        .iter()
        .filter(|s| args.source.as_ref().is_none_or(|n| &s.name == n))
        .collect();
    if sources.is_empty() {
        let names: Vec<_> = config
            .sources
            .iter()
            .map(|s| format!("`{}`", s.name))
            .collect();
        anyhow::bail!(
            "no source is named `{}`; the sources are {}",
            args.source.as_deref().unwrap_or(""),
            names.join(", ")
        );
    }
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let storage = Storage::connect(&config.store)
            .await
            .with_context(|| format!("cannot open the store `{}`", config.store))?;
        let mut reports = Vec::new();
        for source in sources {
            reports.push(report(source, &storage).await?);
        }
        if args.json {
            println!("{}", serde_json::to_string_pretty(&reports)?);
        } else {
            for r in &reports {
                print!("{}", r.to_text());
            }
        }
        storage.close().await;
        Ok(())
    })
}
