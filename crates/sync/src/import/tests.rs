use std::time::Duration;

use serde_json::json;

use super::page::*;
use crate::config::{Incremental, Pagination, Resource};

fn resource(pagination: Pagination) -> Resource {
    Resource {
        name: "things".into(),
        path: "/v1/things".into(),
        query: vec![("per_page".into(), "2".into())],
        records: "/data".into(),
        id: "id".into(),
        pagination,
        incremental: Some(Incremental {
            field: "updated_at".into(),
            param: "updated_since".into(),
        }),
        every: Duration::from_secs(60),
        limit: None,
        for_each: None,
    }
}

/// Reads a page of a plain (not fan-out) resource.
fn read(r: &Resource, p: &Position, h: &http::HeaderMap, b: &[u8]) -> Result<Page, PageError> {
    super::page::read(r, p, h, b, None)
}

fn body(value: serde_json::Value) -> Vec<u8> {
    serde_json::to_vec(&value).unwrap()
}

#[test]
fn page_numbers_advance_until_a_short_page() {
    let r = resource(Pagination::Page {
        param: "page".into(),
        size: Some(("per_page".into(), 2)),
        start: 1,
    });
    let url = url(
        "http://h",
        &r,
        "/v1/things",
        &Position::Start,
        Some("2026-01-01T00:00:00Z"),
    );
    assert_eq!(
        url,
        "http://h/v1/things?per_page=2&page=1&per_page=2&updated_since=2026-01-01T00%3A00%3A00Z"
    );
    let full = read(
        &r,
        &Position::Start,
        &Default::default(),
        &body(json!({"data":[{"id":1},{"id":"b"}]})),
    )
    .unwrap();
    assert_eq!(full.records[0].0, "1");
    assert_eq!(full.next, Some(Position::Number(2)));
    let short = read(
        &r,
        &Position::Number(2),
        &Default::default(),
        &body(json!({"data":[{"id":3}]})),
    )
    .unwrap();
    assert_eq!(short.next, None);
}

#[test]
fn cursors_come_from_the_body_and_links_from_the_header() {
    let r = resource(Pagination::Cursor {
        param: "cursor".into(),
        next: "/next_cursor".into(),
    });
    let page = read(
        &r,
        &Position::Start,
        &Default::default(),
        &body(json!({"data":[{"id":1}],"next_cursor":"abc"})),
    )
    .unwrap();
    assert_eq!(page.next, Some(Position::Cursor("abc".into())));
    assert!(url("http://h", &r, "/v1/things", &page.next.unwrap(), None).ends_with("cursor=abc"));
    let last = read(
        &r,
        &Position::Start,
        &Default::default(),
        &body(json!({"data":[],"next_cursor":null})),
    )
    .unwrap();
    assert_eq!(last.next, None);

    let r = resource(Pagination::Link);
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::LINK,
        "<http://h/v1/things?page=1>; rel=\"prev\", <http://h/v1/things?page=3>; rel=\"next\""
            .parse()
            .unwrap(),
    );
    let page = read(
        &r,
        &Position::Start,
        &headers,
        &body(json!({"data":[{"id":1}]})),
    )
    .unwrap();
    assert_eq!(
        page.next,
        Some(Position::Url("http://h/v1/things?page=3".into()))
    );
}

#[test]
fn bodies_that_cannot_be_used_are_refused_whole() {
    let r = resource(Pagination::None);
    assert!(matches!(
        read(&r, &Position::Start, &Default::default(), b"<html>oops"),
        Err(PageError::NotJson(_))
    ));
    assert_eq!(
        read(
            &r,
            &Position::Start,
            &Default::default(),
            &body(json!({"items":[]}))
        ),
        Err(PageError::NoRecords("/data".into()))
    );
    assert_eq!(
        read(
            &r,
            &Position::Start,
            &Default::default(),
            &body(json!({"data":[{"id":1},{"name":"x"}]}))
        ),
        Err(PageError::NoId("id".into()))
    );
}

#[test]
fn positions_survive_a_checkpoint_and_paths_are_filled_safely() {
    for position in [
        Position::Start,
        Position::Number(7),
        Position::Cursor("a:b".into()),
        Position::Url("http://h/x?p=2".into()),
    ] {
        assert_eq!(Position::decode(&position.encode()), position);
    }
    assert_eq!(
        fill_path(
            "/users/{app}/{channel}",
            &[
                ("app".into(), "demo".into()),
                ("channel".into(), "lobby 1/2".into())
            ]
        ),
        "/users/demo/lobby%201%2F2"
    );
}

#[test]
fn a_fan_out_answer_without_a_key_is_stored_under_its_parent() {
    let r = resource(Pagination::None);
    let answer = body(json!({"data":{"total":2,"users":[1,2]}}));
    let page = super::page::read(
        &r,
        &Position::Start,
        &Default::default(),
        &answer,
        Some("lobby"),
    );
    assert_eq!(page.unwrap().records[0].0, "lobby");
    assert!(read(&r, &Position::Start, &Default::default(), &answer).is_err());
}
