//! `tollgate sync` through `tollgate serve`: the gateway, with the seeds' limits
//! (a rolling budget per key, 20/s on the user-list route) and its escalation
//! at its strictest (one request before a retry instant blocks the key), in
//! front of the example provider, all on 127.0.0.1. A full import at 1, 4 and
//! 16 workers stores every record with zero 429s and zero 403s.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tollgate_core::SystemClock;
use tollgate_gateway::Gateway;
use tollgate_gateway::config::GatewayConfig;
use tollgate_gateway::keys::Keys;
use tollgate_sql::Storage;
use tollgate_sync::config::SyncConfig;
use tollgate_sync::runner::run_once;
use tollgate_testkit::{
    ExampleApi, Limits, Resource, RunningApi, scratch_dir, sync_resources_toml,
};

const KEY: &str = "sync-through-gateway-key-0123456789";

struct Deployment {
    api: RunningApi,
    gateway: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    dir: PathBuf,
}

async fn deployment(name: &str) -> Deployment {
    let dir = scratch_dir(&format!("sync-gateway-{name}"));
    std::fs::write(dir.join("key"), KEY).unwrap();
    let api = ExampleApi::builder()
        .channels(80)
        .properties(60)
        .tenancies(40)
        .applicants(20)
        .limits(Limits::none())
        .build()
        .spawn()
        .await
        .unwrap();
    let toml = format!(
        r#"
listen = "127.0.0.1:0"
[escalation]
strikes = 1
strike_window = "60s"
first_block = "60s"
[[upstreams]]
name = "api"
url = "http://{upstream}"
[[routes]]
name = "user-list"
method = "GET"
path = "/dev/v1/channel/user/{{appid}}/{{channel}}"
[[routes]]
name = "everything-else"
path = "/{{*rest}}"
[[limits]]
name = "per-key"
rate = "30/2s"
[[limits]]
name = "user-list"
scope = "per-route"
routes = ["user-list"]
rate = "20/s"
algorithm = "fixed"
"#,
        upstream = api.addr
    );
    let config = GatewayConfig::parse(&toml, &dir.join("gateway.toml")).unwrap();
    let keys = Keys::open_in_memory().await.unwrap();
    keys.create_with_secret("sync", KEY, "test").await.unwrap();
    let gateway = Gateway::new(config, keys, Arc::new(SystemClock::new()), None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(gateway.serve(listener, None, async move {
        let _ = stopped.await;
    }));
    Deployment {
        api,
        gateway: addr,
        stop,
        dir,
    }
}

fn config(deployment: &Deployment, concurrency: u32) -> SyncConfig {
    let text = format!(
        r#"
store = "sqlite://sync.db"

[[sources]]
name = "example"
base_url = "http://{addr}"
key = {{ header = "X-Api-Key", file = "{key}" }}
limits = ["30/2s"]
timeout = "2s"
concurrency = {concurrency}

{resources}
"#,
        addr = deployment.gateway,
        key = deployment.dir.join("key").display(),
        resources = sync_resources_toml(
            &[
                Resource::Properties,
                Resource::Tenancies,
                Resource::Applicants,
                Resource::Channels,
                Resource::ChannelUsers
            ],
            25
        ),
    );
    SyncConfig::parse(&text, &deployment.dir.join("sync.toml")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_import_through_the_gateway_at_1_4_and_16_workers_stores_everything_with_zero_429s()
{
    for workers in [1, 4, 16] {
        let deployment = deployment(&workers.to_string()).await;
        let config = config(&deployment, workers);
        let storage = Storage::connect(&config.store).await.unwrap();
        let summary = tokio::time::timeout(
            Duration::from_secs(60),
            run_once(&config, &storage, Arc::new(SystemClock::new())),
        )
        .await
        .expect("an import of about 90 requests at 30/2s ends within a minute")
        .unwrap()
        .remove(0);
        assert_eq!(summary.errors, Vec::<String>::new(), "{workers} workers");
        assert_eq!(summary.rejected_429, 0, "{workers} workers: {summary:?}");
        assert!(!summary.forbidden, "{workers} workers: blocked");
        let handle = &deployment.api.handle;
        for (table, resource) in [
            ("properties", Resource::Properties),
            ("tenancies", Resource::Tenancies),
            ("applicants", Resource::Applicants),
            ("channels", Resource::Channels),
            ("channel_users", Resource::ChannelUsers),
        ] {
            let expected = handle.expected_records(resource).len() as u64;
            assert_eq!(
                storage.count(table).await.unwrap(),
                expected,
                "{table}, {workers} workers"
            );
        }
        // Every request the sync sent reached the provider: none was refused.
        assert_eq!(
            handle.log().len() as u64,
            summary.requests,
            "{workers} workers"
        );
        storage.close().await;
        let _ = deployment.stop.send(());
        let _ = std::fs::remove_dir_all(&deployment.dir);
    }
}
