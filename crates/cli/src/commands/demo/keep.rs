//! `tollgate demo --keep`: after the summary, everything goes on running — the
//! provider, the gateway, and the sync daemon importing on its planned schedule
//! through the gateway, with its read API and status page — until Ctrl-C or
//! SIGTERM, then everything stops cleanly.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tollgate_core::Clock;
use tollgate_sql::Storage;
use tollgate_sync::config::SyncConfig;
use tollgate_sync::daemon::Daemon;
use tollgate_sync::schedule::schedule;

use super::{ADMIN_TOKEN, SYNC_KEY};

/// How long open connections to the read API (a status page left open) may
/// hold up the exit.
const DRAIN: Duration = Duration::from_secs(5);

/// Where the demo's servers listen.
pub struct Urls {
    /// The example provider API.
    pub provider: String,
    /// The gateway in front of it.
    pub gateway: String,
    /// The gateway's admin API (and metrics).
    pub admin: String,
}

/// Starts the read API and the daemon's imports on schedule, prints every URL,
/// and runs until Ctrl-C or SIGTERM.
pub async fn keep_running(
    urls: &Urls,
    config: &SyncConfig,
    storage: &Storage,
    daemon: &Arc<Daemon>,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<()> {
    // From here on a signal is caught, even one sent as soon as a URL shows.
    let shutdown = crate::commands::shutdown_signal();
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let read = format!("http://{}", listener.local_addr()?);
    let router = crate::commands::sync::read_api(config, storage, daemon, clock);
    let (stop, stopped) = watch::channel(false);
    let api = tokio::spawn({
        let stopped = stopped.clone();
        async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(until(stopped))
                .await
        }
    });
    let importing = tokio::spawn({
        let daemon = Arc::clone(daemon);
        async move { daemon.run(until(stopped)).await }
    });
    print_urls(urls, &read, config, storage).await;

    shutdown.await;
    println!("\nStopping…");
    let _ = stop.send(true);
    let _ = importing.await;
    let abort = api.abort_handle();
    if tokio::time::timeout(DRAIN, api).await.is_err() {
        abort.abort();
    }
    Ok(())
}

async fn until(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

async fn print_urls(urls: &Urls, read: &str, config: &SyncConfig, storage: &Storage) {
    let resources: Vec<&str> = config
        .sources
        .iter()
        .flat_map(|s| s.resources.iter().map(|r| r.name.as_str()))
        .collect();
    println!("\nStill running (Ctrl-C to stop):");
    println!("  provider     {}/v1/properties?page=1", urls.provider);
    println!(
        "  gateway      {}/v1/properties   (X-Api-Key: {SYNC_KEY})",
        urls.gateway
    );
    println!(
        "  admin API    {}/admin/keys   (Authorization: Bearer {ADMIN_TOKEN})",
        urls.admin
    );
    println!("  metrics      {}/metrics", urls.admin);
    println!(
        "  read API     {read}/v1/{}   (also {})",
        resources.first().copied().unwrap_or_default(),
        resources
            .iter()
            .skip(1)
            .map(|r| format!("/v1/{r}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!("  status page  {read}/   (as JSON: {read}/status)");
    println!("  store        {}", config.store);
    for source in &config.sources {
        let plan = schedule(source, storage).await;
        let periods: Vec<String> = plan
            .periods
            .iter()
            .map(|(resource, every)| format!("{resource} every {}", period(*every)))
            .collect();
        println!(
            "  sync daemon  imports on schedule through the gateway: {}",
            periods.join(", ")
        );
    }
}

/// `15 min`, `63.9 min`, `5 s`, `2.5 s`.
fn period(every: Duration) -> String {
    let secs = every.as_secs_f64();
    let whole = every.subsec_millis() == 0;
    if whole && every.as_secs() >= 60 && every.as_secs() % 60 == 0 {
        format!("{} min", every.as_secs() / 60)
    } else if secs >= 60.0 {
        format!("{:.1} min", secs / 60.0)
    } else if whole {
        format!("{} s", every.as_secs())
    } else {
        format!("{secs:.1} s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_read_as_people_write_them() {
        assert_eq!(period(Duration::from_secs(900)), "15 min");
        assert_eq!(period(Duration::from_secs(5)), "5 s");
        assert_eq!(period(Duration::from_secs(90)), "1.5 min");
        assert_eq!(period(Duration::from_millis(3_832_500)), "63.9 min");
        assert_eq!(period(Duration::from_millis(2_500)), "2.5 s");
    }
}
