use std::path::Path;

use super::*;

const EXAMPLE: &str = include_str!("../../../../examples/sync.toml");

fn parse(text: &str) -> Result<SyncConfig, ConfigError> {
    SyncConfig::parse(text, Path::new("/etc/tollgate/sync.toml"))
}

#[test]
fn the_example_loads() {
    let config = parse(EXAMPLE).unwrap();
    assert_eq!(config.store, "sqlite:///etc/tollgate/tollgate-sync.db");
    let source = &config.sources[0];
    assert_eq!(source.limits, Some(vec![Rate::per_minute(50)]));
    assert_eq!(
        source.key.secret,
        SecretSource::Env("EXAMPLE_API_KEY".into())
    );
    let users = source
        .resources
        .iter()
        .find(|r| r.name == "channel_users")
        .unwrap();
    assert_eq!(users.limit, Some(Rate::per_second(20)));
    assert_eq!(
        users.for_each.as_ref().unwrap().fields,
        [("channel_name".to_owned(), "channel_name".to_owned())]
    );
    assert_eq!(
        source.resources[1].pagination,
        Pagination::Cursor {
            param: "cursor".into(),
            next: "/next_cursor".into()
        }
    );
}

fn broken(find: &str, replace: &str) -> ConfigError {
    assert!(EXAMPLE.contains(find), "{find}");
    let text = EXAMPLE.replacen(find, replace, 1);
    let line = text[..text.find(replace).unwrap()].matches('\n').count() + 1;
    let err = parse(&text).unwrap_err();
    assert_eq!(err.line, line, "{err}");
    err
}

#[test]
fn mistakes_are_named_with_file_line_and_key() {
    let err = broken("limits = [\"50/60s\"]", "limits = [\"50/mn\"]");
    assert_eq!(err.key, "sources[0].limits");
    assert!(
        err.problem.contains("`50/60s`") && err.problem.contains("discover"),
        "{err}"
    );
    let err = broken("every = \"15min\"", "every = \"often\"");
    assert_eq!(err.key, "sources[0].resources[0].every");
    let err = broken(
        "style = \"page\", param = \"page\"",
        "style = \"pages\", param = \"page\"",
    );
    assert!(err.problem.contains("`cursor`"), "{err}");
    let err = broken("name = \"channel_users\"", "name = \"Channel Users\"");
    assert!(err.problem.contains("lower-case"), "{err}");
    let err = broken(
        "for_each = { resource = \"channels\"",
        "for_each = { resource = \"rooms\"",
    );
    assert!(
        err.problem.contains("no resource is named `rooms`"),
        "{err}"
    );
    assert!(
        err.to_string().starts_with("/etc/tollgate/sync.toml:"),
        "{err}"
    );
}

#[test]
fn discover_and_a_secret_from_a_file_are_accepted_but_not_a_key_in_the_file() {
    let text = EXAMPLE
        .replace("limits = [\"50/60s\"]", "limits = \"discover\"")
        .replace("env = \"EXAMPLE_API_KEY\"", "file = \"/run/secrets/key\"");
    let config = parse(&text).unwrap();
    assert_eq!(config.sources[0].limits, None);
    let err = broken("env = \"EXAMPLE_API_KEY\"", "env = \"A\", file = \"/k\"");
    assert!(err.problem.contains("never goes in this file"), "{err}");
}

#[test]
fn a_missing_secret_says_which_variable_to_set() {
    let spec = KeySpec {
        header: HeaderName::from_static("x-api-key"),
        scheme: None,
        secret: SecretSource::Env("TOLLGATE_TEST_UNSET_VARIABLE".into()),
    };
    let err = spec.read_secret().unwrap_err();
    assert!(
        err.contains("`TOLLGATE_TEST_UNSET_VARIABLE`") && err.contains("export"),
        "{err}"
    );
}

#[test]
fn a_bulk_read_is_checked_with_file_line_and_key() {
    let config = parse(EXAMPLE).unwrap();
    let details = config.sources[0]
        .resources
        .iter()
        .position(|r| r.name == "property_details")
        .unwrap();
    let for_each = config.sources[0].resources[details]
        .for_each
        .clone()
        .unwrap();
    assert_eq!(
        for_each.bulk,
        Some(Bulk {
            path: "/v1/properties/bulk".into(),
            param: "ids".into(),
            max: 100,
            records: "/data".into(),
        })
    );
    let key = |field: &str| format!("sources[0].resources[{details}].{field}");
    let bulk_line = "bulk = { path = \"/v1/properties/bulk\", param = \"ids\", max = 100, records = \"/data\" }";

    // `records` defaults to the resource's.
    let text = EXAMPLE.replace(", records = \"/data\" }", " }");
    let config = parse(&text).unwrap();
    let bulk = config.sources[0].resources[details]
        .for_each
        .as_ref()
        .and_then(|f| f.bulk.clone())
        .unwrap();
    assert_eq!(bulk.records, "");

    let err = broken("max = 100, records", "max = 0, records");
    assert_eq!(err.key, key("bulk.max"), "{err}");
    assert!(err.problem.contains("1 or more"), "{err}");
    let err = broken("max = 100, records", "max = -3, records");
    assert_eq!(err.key, key("bulk.max"), "{err}");

    let err = broken(
        "path = \"/v1/properties/bulk\"",
        "path = \"v1/properties/bulk\"",
    );
    assert_eq!(err.key, key("bulk.path"), "{err}");

    let err = broken("records = \"/data\" }", "records = \"data\" }");
    assert_eq!(err.key, key("bulk.records"), "{err}");

    // Only on a fan-out.
    let fan_out = "for_each = { resource = \"properties\", fields = { id = \"id\" } }\n";
    assert!(EXAMPLE.contains(fan_out));
    let text = EXAMPLE.replacen(fan_out, "", 1);
    let line = text[..text.find(bulk_line).unwrap()].matches('\n').count() + 1;
    let err = parse(&text).unwrap_err();
    assert_eq!(
        (err.line, err.key.as_str()),
        (line, key("bulk").as_str()),
        "{err}"
    );
    assert!(err.problem.contains("for_each"), "{err}");
    assert!(
        err.to_string()
            .starts_with(&format!("/etc/tollgate/sync.toml:{line}:")),
        "{err}"
    );

    // With exactly one placeholder.
    let text = EXAMPLE.replacen(
        "fields = { id = \"id\" } }",
        "fields = { id = \"id\", town = \"town\" } }",
        1,
    );
    let line = text[..text.find(bulk_line).unwrap()].matches('\n').count() + 1;
    let err = parse(&text).unwrap_err();
    assert_eq!(
        (err.line, err.key.as_str()),
        (line, key("bulk").as_str()),
        "{err}"
    );
    assert!(err.problem.contains("names 2"), "{err}");

    // Nothing but the four keys.
    let err = broken("max = 100, records", "max = 100, size = 3, records");
    assert!(err.problem.contains("size"), "{err}");
}

#[test]
fn a_redis_cluster_needs_a_node_to_start_from() {
    let text = format!("redis = \"redis://10.0.0.5:7000\"\nredis_cluster = true\n{EXAMPLE}");
    let config = parse(&text).unwrap();
    assert_eq!(config.redis.as_deref(), Some("redis://10.0.0.5:7000"));
    assert!(config.redis_cluster);
    assert!(!parse(EXAMPLE).unwrap().redis_cluster);

    let err = parse(&format!("redis_cluster = true\n{EXAMPLE}")).unwrap_err();
    assert_eq!((err.line, err.key.as_str()), (1, "redis_cluster"), "{err}");
    assert!(err.problem.contains("add `redis = "), "{err}");
}
