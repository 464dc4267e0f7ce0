//! From the file as written to a checked [`GatewayConfig`].

use std::num::NonZeroUsize;
use std::path::Path;
use std::time::Duration;

use http::{HeaderName, Method, Uri};
use tollgate_core::abuse::EscalationPolicy;
use tollgate_core::{Algorithm, Endpoints, Policy, PolicySet, Quota, Rate, Scope};
use toml::Spanned;

use super::raw::{RawConfig, RawLimit, RawRoute, RawUpstream};
use super::{AdminConfig, ApiKeySource, ConfigError, GatewayConfig, Route, Upstream};
use tollgate_config::Locator;

type Result<T> = std::result::Result<T, ConfigError>;

pub(super) fn validate(text: &str, path: &Path) -> Result<GatewayConfig> {
    let at = Locator::new(path, text, "docs/gateway.md");
    let raw: RawConfig = at.parse()?;
    let upstreams = raw
        .upstreams
        .iter()
        .enumerate()
        .map(|(i, u)| upstream(&at, i, u))
        .collect::<Result<Vec<_>>>()?;
    let routes = raw
        .routes
        .iter()
        .enumerate()
        .map(|(i, r)| route(&at, i, r, &raw.upstreams))
        .collect::<Result<Vec<_>>>()?;
    check_unique(&at, "upstreams", raw.upstreams.iter().map(|u| &u.name))?;
    check_unique(&at, "routes", raw.routes.iter().map(|r| &r.name))?;
    check_unique(&at, "limits", raw.limits.iter().map(|l| &l.name))?;
    let step = raw.tier.step.as_ref().map_or(50, |s| *s.get_ref());
    let policies = raw
        .limits
        .iter()
        .enumerate()
        .map(|(i, l)| policy(&at, i, l, &routes, step))
        .collect::<Result<Vec<_>>>()?;
    let policies = PolicySet::new(policies);
    let database = raw
        .database
        .as_ref()
        .map_or_else(|| "tollgate-keys.db".into(), |d| d.get_ref().clone());
    let database = path.parent().unwrap_or(Path::new(".")).join(database);
    let e = &raw.escalation;
    let defaults = EscalationPolicy::default();
    let escalation = EscalationPolicy {
        strikes: match &e.strikes {
            Some(s) if *s.get_ref() == 0 => {
                return Err(at.error(&s.span(), "escalation.strikes", "must be at least 1: a block after zero strikes would block well-behaved clients"));
            }
            Some(s) => *s.get_ref(),
            None => defaults.strikes,
        },
        strike_window: at.duration_or(
            "escalation.strike_window",
            &e.strike_window,
            defaults.strike_window,
        )?,
        first_block: at.duration_or(
            "escalation.first_block",
            &e.first_block,
            defaults.first_block,
        )?,
        max_block: at.duration_or("escalation.max_block", &e.max_block, defaults.max_block)?,
        forget_offences_after: at.duration_or(
            "escalation.forget_after",
            &e.forget_after,
            defaults.forget_offences_after,
        )?,
    };
    Ok(GatewayConfig {
        source: path.to_owned(),
        listen: at.address("listen", &raw.listen)?,
        workers: match &raw.workers {
            None => None,
            Some(w) => Some(NonZeroUsize::new(*w.get_ref() as usize).ok_or_else(|| {
                at.error(&w.span(), "workers", "is 0: the gateway needs at least one worker thread; write 1 or more, or leave `workers` out for one per core")
            })?),
        },
        yield_after: match &raw.yield_after {
            None => Some(super::DEFAULT_YIELD_AFTER),
            Some(y) => super::parse_yield_after(y.get_ref())
                .map_err(|problem| at.error(&y.span(), "yield_after", problem))?,
        },
        database,
        api_key: api_key(&at, &raw)?,
        admin: match &raw.admin {
            None => None,
            Some(a) => Some(AdminConfig {
                listen: at.address("admin.listen", &a.listen)?,
                token_env: a.token_env.as_ref().map_or_else(
                    || "TOLLGATE_ADMIN_TOKEN".to_owned(),
                    |t| t.get_ref().clone(),
                ),
            }),
        },
        escalation,
        tier_step: step,
        max_body: match &raw.requests.max_body {
            None => 1 << 20,
            Some(s) => at.bytes("requests.max_body", s)?,
        },
        header_timeout: at.duration_or(
            "requests.header_timeout",
            &raw.requests.header_timeout,
            Duration::from_secs(10),
        )?,
        upstreams,
        routes,
        redis: match raw.redis.as_ref() {
            Some(r) => Some(redis(&at, r, &raw.limits, &policies)?),
            None => {
                no_fail_without_redis(&at, &raw.limits)?;
                None
            }
        },
        policies,
    })
}

/// `fail = "open"` or `"closed"`, the mode while Redis is unreachable.
fn fail_mode(at: &Locator<'_>, raw: &Spanned<String>, key: &str) -> Result<bool> {
    match raw.get_ref().as_str() {
        "open" => Ok(true),
        "closed" => Ok(false),
        other => Err(at.error(&raw.span(), key, format!("`{other}` is not a fail mode: write `open` (decide locally while Redis is down) or `closed` (answer 503)"))),
    }
}

/// A limit's `fail` only matters when its state is in Redis.
fn no_fail_without_redis(at: &Locator<'_>, limits: &[RawLimit]) -> Result<()> {
    match limits.iter().enumerate().find_map(|(i, l)| Some((i, l.fail.as_ref()?))) {
        Some((i, fail)) => Err(at.error(&fail.span(), format!("limits[{i}].fail"), "only matters while a Redis server keeps the limits: add a [redis] table (docs/redis.md), or remove it")),
        None => Ok(()),
    }
}

fn api_key(at: &Locator<'_>, raw: &RawConfig) -> Result<ApiKeySource> {
    let header = match &raw.api_key.header {
        None => HeaderName::from_static("x-api-key"),
        Some(h) => HeaderName::try_from(h.get_ref().as_str()).map_err(|_| {
            at.error(
                &h.span(),
                "api_key.header",
                format!(
                    "`{}` is not a header name: write it like `X-Api-Key` or `Authorization`",
                    h.get_ref()
                ),
            )
        })?,
    };
    let scheme = match &raw.api_key.scheme {
        Some(s) => Some(s.get_ref().clone()),
        None if header == http::header::AUTHORIZATION => Some("Bearer".to_owned()),
        None => None,
    };
    Ok(ApiKeySource { header, scheme })
}

fn upstream(at: &Locator<'_>, index: usize, raw: &RawUpstream) -> Result<Upstream> {
    let key = format!("upstreams[{index}].url");
    let url: Uri = raw.url.get_ref().parse().map_err(|_| {
        at.error(
            &raw.url.span(),
            &key,
            format!(
                "`{}` is not a URL: write it like `http://127.0.0.1:9000`",
                raw.url.get_ref()
            ),
        )
    })?;
    if url.scheme_str() != Some("http") || url.authority().is_none() {
        return Err(at.error(&raw.url.span(), &key, format!("`{}` must be an http:// URL with a host, like `http://127.0.0.1:9000` (put TLS in front of the gateway, not behind it)", raw.url.get_ref())));
    }
    Ok(Upstream {
        name: raw.name.get_ref().clone(),
        url,
        timeout: at.duration_or(
            &format!("upstreams[{index}].timeout"),
            &raw.timeout,
            Duration::from_secs(30),
        )?,
    })
}

fn route(
    at: &Locator<'_>,
    index: usize,
    raw: &RawRoute,
    upstreams: &[RawUpstream],
) -> Result<Route> {
    let method = match &raw.method {
        None => None,
        Some(m) if m.get_ref() == "*" || m.get_ref().eq_ignore_ascii_case("any") => None,
        Some(m) => Some(
            Method::from_bytes(m.get_ref().to_ascii_uppercase().as_bytes()).map_err(|_| {
                at.error(
                    &m.span(),
                    format!("routes[{index}].method"),
                    format!(
                        "`{}` is not a method: write `GET`, `POST`, … or `*` for any",
                        m.get_ref()
                    ),
                )
            })?,
        ),
    };
    let path = raw.path.get_ref();
    let mut probe = matchit::Router::new();
    if !path.starts_with('/') || probe.insert(path.as_str(), ()).is_err() {
        return Err(at.error(&raw.path.span(), format!("routes[{index}].path"), format!("`{path}` is not a path pattern: write it like `/dev/v1/channel/user/{{appid}}/{{channel}}` (parameters in braces, `{{*rest}}` for the rest of the path)")));
    }
    let upstream = match &raw.upstream {
        None if upstreams.len() == 1 => 0,
        None => {
            return Err(at.error(
                &raw.name.span(),
                format!("routes[{index}].upstream"),
                "is missing: with several upstreams, name the one this route forwards to",
            ));
        }
        Some(u) => upstreams
            .iter()
            .position(|x| x.name.get_ref() == u.get_ref())
            .ok_or_else(|| {
                let known: Vec<_> = upstreams
                    .iter()
                    .map(|x| format!("`{}`", x.name.get_ref()))
                    .collect();
                at.error(
                    &u.span(),
                    format!("routes[{index}].upstream"),
                    format!(
                        "no upstream is named `{}`; the upstreams are {}",
                        u.get_ref(),
                        if known.is_empty() {
                            "none: add an [[upstreams]] table".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                )
            })?,
    };
    Ok(Route {
        name: raw.name.get_ref().clone(),
        method,
        path: path.clone(),
        upstream,
    })
}

fn policy(
    at: &Locator<'_>,
    index: usize,
    raw: &RawLimit,
    routes: &[Route],
    step: u32,
) -> Result<Policy> {
    let key = |field: &str| format!("limits[{index}].{field}");
    if !crate::headers::is_plain_name(raw.name.get_ref()) {
        return Err(at.error(&raw.name.span(), key("name"), format!("`{}` cannot be shown in the RateLimit headers: use letters, digits and `-_.:/`, like `per-key`", raw.name.get_ref())));
    }
    let rate: Rate = raw
        .rate
        .get_ref()
        .parse()
        .map_err(|e: tollgate_core::ParseRateError| {
            at.error(&raw.rate.span(), key("rate"), e.to_string())
        })?;
    let scope = match raw.scope.as_ref().map(|s| (s.get_ref().as_str(), s.span())) {
        None | Some(("per-key", _)) => Scope::PerKey,
        Some(("per-key-route", _)) => Scope::PerKeyEndpoint,
        Some(("per-route", _)) => Scope::PerEndpoint,
        Some((other, span)) => {
            return Err(at.error(
                &span,
                key("scope"),
                format!(
                    "`{other}` is not a scope: write `per-key`, `per-key-route` or `per-route`"
                ),
            ));
        }
    };
    let algorithm = match raw.algorithm.as_ref().map(|s| (s.get_ref().as_str(), s.span())) {
        None | Some(("rolling", _)) => Algorithm::Rolling,
        Some(("fixed", _)) => Algorithm::Fixed,
        Some(("gcra", _)) => Algorithm::Gcra { burst: raw.burst.as_ref().map_or(rate.count(), |b| *b.get_ref()).max(1) },
        Some(("sliding-counter", _)) if rate.count() > 65_535 => return Err(at.error(&raw.rate.span(), key("rate"), "a sliding-counter counts up to 65535 per window: use `rolling`, `gcra` or a shorter window")),
        Some(("sliding-counter", _)) => Algorithm::SlidingCounter,
        Some((other, span)) => return Err(at.error(&span, key("algorithm"), format!("`{other}` is not an algorithm: write `rolling` (the default), `fixed`, `gcra` or `sliding-counter`"))),
    };
    let endpoints = match &raw.routes {
        None if scope == Scope::PerEndpoint => return Err(at.error(&raw.name.span(), key("routes"), "is missing: a per-route limit needs the routes it counts, like `routes = [\"user-list\"]`")),
        None => Endpoints::All,
        Some(names) => Endpoints::Only(names.get_ref().iter().map(|name| {
            routes.iter().position(|r| &r.name == name).map(|i| i as u32).ok_or_else(|| {
                at.error(&names.span(), key("routes"), format!("no route is named `{name}`; the routes are {}", routes.iter().map(|r| format!("`{}`", r.name)).collect::<Vec<_>>().join(", ")))
            })
        }).collect::<Result<Vec<_>>>()?),
    };
    let tiered = raw.tiered.as_ref().map(|t| (*t.get_ref(), t.span()));
    if let Some((true, span)) = &tiered
        && scope == Scope::PerEndpoint
    {
        return Err(at.error(span, key("tiered"), "a per-route limit is shared by every key, so a key's increments cannot raise it: remove `tiered` or use scope `per-key-route`"));
    }
    Ok(Policy {
        name: raw.name.get_ref().clone(),
        scope,
        quota: Quota { rate, algorithm },
        endpoints,
        tier_step: tiered.filter(|(t, _)| *t).map(|_| step),
    })
}

fn check_unique<'a>(
    at: &Locator<'_>,
    table: &str,
    names: impl Iterator<Item = &'a Spanned<String>>,
) -> Result<()> {
    let mut seen: Vec<&str> = Vec::new();
    for (index, name) in names.enumerate() {
        if seen.contains(&name.get_ref().as_str()) {
            return Err(at.error(
                &name.span(),
                format!("{table}[{index}].name"),
                format!("`{}` is used twice: names must be unique", name.get_ref()),
            ));
        }
        seen.push(name.get_ref());
    }
    Ok(())
}

fn redis(
    at: &Locator<'_>,
    raw: &super::raw::RawRedis,
    limits: &[RawLimit],
    policies: &PolicySet,
) -> Result<super::RedisConfig> {
    let url = raw.url.get_ref();
    if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
        return Err(at.at(
            &raw.url,
            "redis.url",
            format!("`{url}` is not a Redis URL: write it like `redis://127.0.0.1:6379`"),
        ));
    }
    let fail_open = match &raw.fail {
        None => true,
        Some(fail) => fail_mode(at, fail, "redis.fail")?,
    };
    let mut per_limit_fail = Vec::new();
    for (i, limit) in limits.iter().enumerate() {
        if let Some(fail) = &limit.fail {
            let open = fail_mode(at, fail, &format!("limits[{i}].fail"))?;
            let id = policies
                .id_of(limit.name.get_ref())
                .expect("every limit is a policy");
            per_limit_fail.push((id, open));
        }
    }
    Ok(super::RedisConfig {
        url: url.clone(),
        fail_open,
        per_limit_fail,
        instances: raw.instances.as_ref().map_or(1, |i| *i.get_ref()).max(1),
        prefix: raw.prefix.clone().unwrap_or_else(|| "tollgate".into()),
        cluster: raw.cluster.unwrap_or(false),
    })
}
