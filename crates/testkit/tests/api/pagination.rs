//! Each pagination style returns every record exactly once.

use serde_json::Value;
use tollgate_testkit::Resource;

use crate::support::{get, ids, spawn, unlimited};

#[tokio::test]
async fn channel_pages_list_every_channel_once_and_each_user_list_matches() {
    let api = spawn(unlimited().channels(73)).await;
    let app = api.handle.app_id().to_owned();
    let mut channels = Vec::new();
    for page_no in 0.. {
        let answer = get(
            &api,
            &format!("/dev/v1/channel/{app}?page_no={page_no}&page_size=20"),
        )
        .await;
        assert_eq!(answer.body["success"], true);
        assert_eq!(answer.body["data"]["total_size"], 73);
        let page = answer.body["data"]["channels"].as_array().unwrap().clone();
        if page.is_empty() {
            break;
        }
        channels.extend(page);
    }
    assert_eq!(channels, api.handle.expected_records(Resource::Channels));
    let users = &api.handle.expected_records(Resource::ChannelUsers)[5];
    let name = users["channel_name"].as_str().unwrap();
    let answer = get(&api, &format!("/dev/v1/channel/user/{app}/{name}")).await;
    assert_eq!(answer.body["data"]["users"], users["users"]);
    assert_eq!(answer.body["data"]["total"], users["total"]);
    assert_eq!(answer.body["data"]["channel_exist"], true);
    let missing = get(&api, &format!("/dev/v1/channel/user/{app}/nobody-here")).await;
    assert_eq!(missing.body["data"]["channel_exist"], false);
    assert_eq!(get(&api, "/dev/v1/channel/other-app").await.status, 404);
}

#[tokio::test]
async fn page_numbers_cover_every_property_once() {
    let api = spawn(unlimited().properties(260)).await;
    let first = get(&api, "/v1/properties?page=1&per_page=25").await;
    let meta = &first.body["meta"];
    assert_eq!(
        (meta["total"].as_u64(), meta["total_pages"].as_u64()),
        (Some(260), Some(11))
    );
    let mut records = Vec::new();
    for page in 1..=11 {
        let answer = get(&api, &format!("/v1/properties?page={page}&per_page=25")).await;
        records.extend(answer.body["data"].as_array().unwrap().clone());
    }
    assert_eq!(records, api.handle.expected_records(Resource::Properties));
    let past_the_end = get(&api, "/v1/properties?page=12&per_page=25").await;
    assert_eq!(past_the_end.body["data"], Value::Array(vec![]));
    assert_eq!(get(&api, "/v1/properties?per_page=101").await.status, 400);
}

#[tokio::test]
async fn a_cursor_in_the_body_walks_every_tenancy_once() {
    let api = spawn(unlimited().tenancies(95)).await;
    let (mut records, mut cursor) = (Vec::new(), String::new());
    loop {
        let answer = get(&api, &format!("/v1/tenancies?limit=40&cursor={cursor}")).await;
        records.extend(answer.body["data"].as_array().unwrap().clone());
        match answer.body["next_cursor"].as_str() {
            Some(next) => cursor = next.to_owned(),
            None => break,
        }
    }
    assert_eq!(records.len(), 95);
    assert_eq!(records, api.handle.expected_records(Resource::Tenancies));
    assert_eq!(get(&api, "/v1/tenancies?cursor=zz").await.status, 400);
}

#[tokio::test]
async fn link_headers_walk_every_applicant_once() {
    let api = spawn(unlimited().applicants(61)).await;
    let (mut records, mut url) = (Vec::new(), Some(api.url("/v1/applicants?per_page=25")));
    let mut pages = 0;
    while let Some(next) = url {
        let response = crate::support::client()
            .get(next)
            .header("X-Api-Key", "k")
            .send()
            .await
            .unwrap();
        url = response
            .headers()
            .get("link")
            .map(|l| next_link(l.to_str().unwrap()));
        records.extend(response.json::<Vec<Value>>().await.unwrap());
        pages += 1;
    }
    assert_eq!(pages, 3);
    assert_eq!(records, api.handle.expected_records(Resource::Applicants));
}

#[tokio::test]
async fn single_records_and_the_bulk_read_match_the_list() {
    let api = spawn(unlimited().properties(10)).await;
    let expected = api.handle.expected_records(Resource::Properties);
    assert_eq!(
        get(&api, "/v1/properties/prop-00004").await.body,
        expected[3]
    );
    assert_eq!(get(&api, "/v1/properties/prop-99999").await.status, 404);
    let bulk = get(&api, "/v1/properties/bulk?ids=prop-00002,nope,prop-00007").await;
    assert_eq!(
        ids(bulk.body["data"].as_array().unwrap()),
        ["prop-00002", "prop-00007"]
    );
    assert_eq!(bulk.body["missing"], serde_json::json!(["nope"]));
    assert_eq!(get(&api, "/v1/properties/bulk?ids=").await.status, 400);
    let tenancy = &api.handle.expected_records(Resource::Tenancies)[0];
    let path = format!("/v1/tenancies/{}", tenancy["id"].as_str().unwrap());
    assert_eq!(&get(&api, &path).await.body, tenancy);
}

/// The target of `rel="next"` in a `Link` header.
fn next_link(link: &str) -> String {
    let next = link
        .split(',')
        .find(|l| l.contains("rel=\"next\""))
        .unwrap();
    next.trim()
        .trim_start_matches('<')
        .split('>')
        .next()
        .unwrap()
        .to_owned()
}
