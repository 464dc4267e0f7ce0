//! What every test needs: a client, a key, a manual clock, JSON requests.

use std::sync::Arc;
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Client, StatusCode};
use serde_json::Value;
use tollgate_core::{Clock, ManualClock, Timestamp};
use tollgate_testkit::{ExampleApi, ExampleApiBuilder, Limits, RunningApi};

pub const KEY: &str = "demo-key-12345";

/// A client that never goes through a proxy and never waits long.
pub fn client() -> Client {
    Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

/// A clock the test moves, starting at an arbitrary whole second.
pub fn manual_clock() -> (ManualClock, Arc<dyn Clock>) {
    let clock = ManualClock::new(Timestamp::from_secs(1_700_000_000));
    let shared: Arc<dyn Clock> = Arc::new(clock.clone());
    (clock, shared)
}

/// A builder without limits, for tests about data.
pub fn unlimited() -> ExampleApiBuilder {
    ExampleApi::builder().limits(Limits::none())
}

/// Builds and serves.
pub async fn spawn(builder: ExampleApiBuilder) -> RunningApi {
    builder.build().spawn().await.unwrap()
}

/// An answer, read whole.
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub async fn get(api: &RunningApi, path: &str) -> Answer {
    get_as(api, KEY, path).await
}

pub async fn get_as(api: &RunningApi, key: &str, path: &str) -> Answer {
    let response = client()
        .get(api.url(path))
        .header("X-Api-Key", key)
        .send()
        .await
        .unwrap();
    read(response).await
}

pub async fn read(response: reqwest::Response) -> Answer {
    let (status, headers) = (response.status(), response.headers().clone());
    let bytes = response.bytes().await.unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer {
        status,
        headers,
        body,
    }
}

/// The `id` of each record.
pub fn ids(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_owned())
        .collect()
}
