use std::path::Path;

use super::*;

const EXAMPLE: &str = include_str!("../../../../examples/gateway.toml");

fn parse(text: &str) -> Result<GatewayConfig, ConfigError> {
    GatewayConfig::parse(text, Path::new("gateway.toml"))
}

#[test]
fn the_example_loads_with_the_seeds_limits() {
    let config = parse(EXAMPLE).unwrap();
    assert_eq!(config.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(config.routes.len(), 2);
    let policies: Vec<_> = config.policies.policies().collect();
    let [per_key, user_list] = policies[..] else {
        panic!()
    };
    assert_eq!(per_key.quota.to_string(), "50/60s rolling");
    assert_eq!(per_key.tier_step, Some(50));
    assert_eq!(user_list.quota.to_string(), "20/s fixed");
    assert_eq!(user_list.endpoints, tollgate_core::Endpoints::Only(vec![0]));
    assert_eq!(config.admin.unwrap().token_env, "TOLLGATE_ADMIN_TOKEN");
}

/// The example with one line replaced; the error must point at that line.
fn broken(find: &str, replace: &str) -> ConfigError {
    assert!(EXAMPLE.contains(find), "{find}");
    let text = EXAMPLE.replacen(find, replace, 1);
    let line = text[..text.find(replace).unwrap()].matches('\n').count() + 1;
    let err = parse(&text).unwrap_err();
    assert_eq!(err.line, line, "{err}");
    err
}

#[test]
fn errors_name_the_file_line_key_and_what_to_write() {
    let err = broken("rate = \"50/60s\"", "rate = \"50/mn\"");
    assert_eq!(err.key, "limits[0].rate");
    let text = err.to_string();
    assert!(text.starts_with("gateway.toml:"), "{text}");
    assert!(text.contains("`50/60s`"), "{text}");

    let err = broken("algorithm = \"fixed\"", "algorithm = \"leaky\"");
    assert_eq!(err.key, "limits[1].algorithm");
    assert!(err.problem.contains("`rolling`"), "{err}");

    let err = broken("routes = [\"user-list\"]", "routes = [\"user-lists\"]");
    assert!(
        err.problem.contains("no route is named `user-lists`"),
        "{err}"
    );

    let err = broken(
        "url = \"http://127.0.0.1:9000\"",
        "url = \"https://api.example\"",
    );
    assert_eq!(err.key, "upstreams[0].url");

    let err = broken("listen = \"127.0.0.1:8080\"", "listen = \"localhost\"");
    assert!(err.problem.contains("127.0.0.1:8080"), "{err}");

    let err = broken("first_block = \"60s\"", "first_block = \"a minute\"");
    assert_eq!(err.key, "escalation.first_block");
}

#[test]
fn unknown_keys_and_bad_syntax_are_reported_at_their_line() {
    let err = broken("strikes = 10", "strikez = 10");
    assert!(err.problem.contains("unknown field `strikez`"), "{err}");
    assert_eq!(err.key, "strikez");
    let err = broken("[tier]", "[tier");
    assert!(err.to_string().starts_with("gateway.toml:"), "{err}");
}

#[test]
fn a_per_route_limit_cannot_be_tiered_or_routeless() {
    let err = broken(
        "algorithm = \"fixed\"",
        "tiered = true\nalgorithm = \"fixed\"",
    );
    assert_eq!(err.key, "limits[1].tiered");
    let err = parse(&EXAMPLE.replace("routes = [\"user-list\"]\n", "")).unwrap_err();
    assert_eq!(err.key, "limits[1].routes");
}

#[test]
fn a_limit_may_fail_otherwise_than_the_store_while_redis_is_down() {
    let with_redis =
        format!("{EXAMPLE}\n[redis]\nurl = \"redis://127.0.0.1:6379\"\nfail = \"open\"\n")
            .replacen(
                "algorithm = \"fixed\"",
                "algorithm = \"fixed\"\nfail = \"closed\"",
                1,
            );
    let config = parse(&with_redis).unwrap();
    let redis = config.redis.unwrap();
    assert!(redis.fail_open);
    let user_list = config.policies.id_of("user-list").unwrap();
    assert_eq!(redis.per_limit_fail, [(user_list, false)]);

    // Without Redis there is nothing to fail: said at its line.
    let err = broken("algorithm = \"fixed\"", "fail = \"closed\"");
    assert_eq!(err.key, "limits[1].fail");
    assert!(err.to_string().contains("add a [redis] table"), "{err}");

    let bad = with_redis.replacen("fail = \"closed\"", "fail = \"shut\"", 1);
    let err = parse(&bad).unwrap_err();
    assert_eq!(err.key, "limits[1].fail");
    assert!(err.to_string().contains("write `open`"), "{err}");
}

#[test]
fn redis_cluster_is_said_in_the_redis_table() {
    let text = format!("{EXAMPLE}\n[redis]\nurl = \"redis://10.0.0.5:7000\"\ncluster = true\n");
    assert!(parse(&text).unwrap().redis.unwrap().cluster);
    let text = format!("{EXAMPLE}\n[redis]\nurl = \"redis://10.0.0.5:6379\"\n");
    assert!(!parse(&text).unwrap().redis.unwrap().cluster);
}

#[test]
fn workers_default_to_one_per_core_and_zero_is_refused_at_its_line() {
    assert_eq!(parse(EXAMPLE).unwrap().workers, None);
    let listen = "listen = \"127.0.0.1:8080\"";
    let two = EXAMPLE.replacen(listen, &format!("{listen}\nworkers = 2"), 1);
    assert_eq!(parse(&two).unwrap().workers, NonZeroUsize::new(2));
    let err = broken(listen, &format!("workers = 0\n{listen}"));
    assert_eq!(err.key, "workers");
    assert!(err.problem.contains("at least one worker"), "{err}");
}

#[test]
fn yield_after_defaults_to_a_millisecond_and_can_be_set_or_turned_off() {
    assert_eq!(
        parse(EXAMPLE).unwrap().yield_after,
        Some(crate::config::DEFAULT_YIELD_AFTER)
    );
    let listen = "listen = \"127.0.0.1:8080\"";
    let with =
        |value: &str| EXAMPLE.replacen(listen, &format!("{listen}\nyield_after = \"{value}\""), 1);
    assert_eq!(
        parse(&with("3ms")).unwrap().yield_after,
        Some(std::time::Duration::from_millis(3))
    );
    assert_eq!(parse(&with("off")).unwrap().yield_after, None);
    let err = broken(listen, &format!("yield_after = \"soon\"\n{listen}"));
    assert_eq!(err.key, "yield_after");
    assert!(
        err.problem.contains("`soon`") && err.problem.contains("`off`"),
        "{err}"
    );
}
