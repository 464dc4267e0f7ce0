//! `ETag`/`If-None-Match` → `304`, and the `updated_since` filter.

use tollgate_testkit::Resource;

use crate::support::{KEY, client, get, ids, read, spawn, unlimited};

async fn get_if_none_match(
    api: &tollgate_testkit::RunningApi,
    path: &str,
    tag: &str,
) -> crate::support::Answer {
    let request = client()
        .get(api.url(path))
        .header("X-Api-Key", KEY)
        .header("If-None-Match", tag);
    read(request.send().await.unwrap()).await
}

#[tokio::test]
async fn an_unchanged_record_or_list_answers_304_and_a_changed_one_200() {
    let api = spawn(unlimited().properties(30)).await;
    for path in [
        "/v1/properties/prop-00001",
        "/v1/properties?page=1",
        "/dev/v1/channel/demo-app",
    ] {
        let first = get(&api, path).await;
        let tag = first.header("etag").unwrap().to_owned();
        assert!(tag.starts_with('"') && tag.ends_with('"'), "{tag}");
        let again = get_if_none_match(&api, path, &tag).await;
        assert_eq!(again.status, 304, "{path}");
        assert_eq!(again.header("etag"), Some(tag.as_str()));
        assert_eq!(
            get_if_none_match(&api, path, &format!("W/{tag}"))
                .await
                .status,
            304
        );
        assert_eq!(get_if_none_match(&api, path, "\"other\"").await.status, 200);
    }
    let tag = get(&api, "/v1/properties/prop-00001")
        .await
        .header("etag")
        .unwrap()
        .to_owned();
    while !api
        .handle
        .touch(Resource::Properties, 1)
        .contains(&"prop-00001".to_owned())
    {}
    let changed = get_if_none_match(&api, "/v1/properties/prop-00001", &tag).await;
    assert_eq!(changed.status, 200);
    assert_ne!(changed.header("etag"), Some(tag.as_str()));
}

#[tokio::test]
async fn updated_since_returns_exactly_the_records_changed_since() {
    let api = spawn(unlimited().properties(120).tenancies(80)).await;
    let newest = |resource| {
        let records = api.handle.expected_records(resource);
        records
            .iter()
            .map(|r| r["updated_at"].as_str().unwrap().to_owned())
            .max()
            .unwrap()
    };
    let (since_properties, since_tenancies) =
        (newest(Resource::Properties), newest(Resource::Tenancies));
    let touched = api.handle.touch(Resource::Properties, 4);
    let answer = get(
        &api,
        &format!("/v1/properties?per_page=100&updated_since={since_properties}"),
    )
    .await;
    let returned = ids(answer.body["data"].as_array().unwrap());
    // Inclusive: what changed at the instant given is returned too.
    let records = api.handle.expected_records(Resource::Properties);
    let fresh: Vec<_> = records
        .into_iter()
        .filter(|r| r["updated_at"].as_str().unwrap() >= since_properties.as_str())
        .collect();
    assert_eq!(returned, ids(&fresh));
    assert!(touched.iter().all(|id| returned.contains(id)));
    assert!(returned.len() <= touched.len() + 2, "{returned:?}");

    let touched = api.handle.touch(Resource::Tenancies, 3);
    let records = api.handle.expected_records(Resource::Tenancies);
    let stamp = records
        .iter()
        .find(|r| r["id"] == touched[0].as_str())
        .unwrap()["updated_at"]
        .clone();
    let answer = get(
        &api,
        &format!("/v1/tenancies?updated_since={}", stamp.as_str().unwrap()),
    )
    .await;
    let mut expected = touched.clone();
    expected.sort();
    assert_eq!(ids(answer.body["data"].as_array().unwrap()), expected);
    assert!(since_tenancies.as_str() < stamp.as_str().unwrap());
    assert_eq!(
        get(&api, "/v1/properties?updated_since=yesterday")
            .await
            .status,
        400
    );
}
