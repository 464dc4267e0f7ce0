//! Serves the example provider API for manual runs:
//!
//! ```sh
//! cargo run -p tollgate-testkit --example example_api -- 8080 --strict
//! curl -H 'X-Api-Key: demo-key-12345' 'http://127.0.0.1:8080/v1/properties?page=1'
//! ```
//!
//! Arguments: the port (default 8080), then any of `--strict`, `--seed N`,
//! `--key KEY` (repeatable; without it any non-empty key is accepted).
//! Ctrl-C stops it and prints what each key did.

use std::process::ExitCode;

use tokio::net::TcpListener;
use tollgate_testkit::{ExampleApi, Resource};

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            eprintln!("usage: example_api [PORT] [--strict] [--seed N] [--key KEY]...");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let (mut port, mut builder) = (8080u16, ExampleApi::builder());
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--strict" => builder = builder.strict(true),
            "--seed" => builder = builder.seed(number(args.next(), "--seed")?),
            "--key" => builder = builder.key(args.next().ok_or("--key needs a value")?),
            other => port = number(Some(other.to_owned()), "the port")?,
        }
    }
    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e} (try another port)"))?;
    let api = builder.build().serve(listener).map_err(|e| e.to_string())?;
    println!("example API on {}", api.url(""));
    println!(
        "  channels      {}",
        api.url("/dev/v1/channel/demo-app?page_no=0&page_size=20")
    );
    let channels = api.handle.expected_records(Resource::Channels);
    let first = channels
        .first()
        .and_then(|c| c["channel_name"].as_str())
        .unwrap_or("none");
    let user_list = format!("/dev/v1/channel/user/demo-app/{first}");
    println!("  user list     {}", api.url(&user_list));
    println!(
        "  properties    {}",
        api.url("/v1/properties?page=1&per_page=25")
    );
    println!("  tenancies     {}", api.url("/v1/tenancies?limit=25"));
    println!("  applicants    {}", api.url("/v1/applicants"));
    println!("limits: 50 per rolling 60 s per key, 20/s per key on the user list; Ctrl-C stops");
    tokio::signal::ctrl_c().await.map_err(|e| e.to_string())?;
    for (key, stats) in api.handle.all_stats() {
        println!("{key}: {stats:?}");
    }
    println!("blocked keys: {:?}", api.handle.blocked_keys());
    api.shutdown().await;
    Ok(())
}

fn number<T: std::str::FromStr>(text: Option<String>, what: &str) -> Result<T, String> {
    let text = text.ok_or_else(|| format!("{what} needs a value"))?;
    text.parse()
        .map_err(|_| format!("{what}: `{text}` is not a number"))
}
