//! From the file as written to a checked [`SyncConfig`].

use std::path::Path;

use http::HeaderName;
use tollgate_config::Locator;
use toml::Spanned;

use super::raw::{RawBulk, RawConfig, RawLimits, RawPagination, RawResource, RawSource};
use super::raw::{RawEventMap, RawEvents};
use super::{
    Bulk, ConfigError, ForEach, Incremental, KeySpec, Pagination, Resource, SecretSource, Source,
    SyncConfig,
};
use super::{EventAction, EventMapping, Events};

type Result<T> = std::result::Result<T, ConfigError>;

pub(super) fn validate(text: &str, path: &Path) -> Result<SyncConfig> {
    let at = Locator::new(path, text, "docs/sync.md");
    let raw: RawConfig = at.parse()?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let store = match &raw.store {
        None => format!("sqlite://{}", dir.join("tollgate-sync.db").display()),
        Some(s) if s.get_ref().starts_with("postgres://") || s.get_ref().starts_with("postgresql://") => s.get_ref().clone(),
        Some(s) if s.get_ref() == "sqlite::memory:" => s.get_ref().clone(),
        Some(s) => match s.get_ref().strip_prefix("sqlite://") {
            Some(file) if Path::new(file).is_absolute() => s.get_ref().clone(),
            Some(file) => format!("sqlite://{}", dir.join(file).display()),
            None => return Err(at.at(s, "store", format!("`{}` is not a store: write `sqlite://tollgate-sync.db` or `postgres://user@host/db`", s.get_ref()))),
        },
    };
    if let Some(url) = &raw.redis
        && !(url.get_ref().starts_with("redis://") || url.get_ref().starts_with("rediss://"))
    {
        return Err(at.at(
            url,
            "redis",
            format!(
                "`{}` is not a Redis URL: write it like `redis://127.0.0.1:6379`",
                url.get_ref()
            ),
        ));
    }
    if let Some(cluster) = &raw.redis_cluster
        && raw.redis.is_none()
    {
        return Err(at.at(
            cluster,
            "redis_cluster",
            "names no server: add `redis = \"redis://host:port\"` (any node of the cluster), or remove it",
        ));
    }
    if raw.sources.is_empty() {
        return Err(at.error(
            &(0..0),
            "sources",
            "no source: add a [[sources]] table (see examples/sync.toml)",
        ));
    }
    let sources = raw
        .sources
        .iter()
        .enumerate()
        .map(|(i, s)| source(&at, i, s))
        .collect::<Result<Vec<_>>>()?;
    Ok(SyncConfig {
        source: path.to_owned(),
        store,
        listen: raw
            .listen
            .as_ref()
            .map(|l| at.address("listen", l))
            .transpose()?,
        redis: raw.redis.as_ref().map(|url| url.get_ref().clone()),
        redis_cluster: raw.redis_cluster.as_ref().is_some_and(|c| *c.get_ref()),
        sources,
    })
}

fn source(at: &Locator<'_>, index: usize, raw: &RawSource) -> Result<Source> {
    let key = |field: &str| format!("sources[{index}].{field}");
    let base_url = raw.base_url.get_ref().trim_end_matches('/').to_owned();
    if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
        return Err(at.at(
            &raw.base_url,
            key("base_url"),
            format!(
                "`{}` is not a URL: write it like `https://api.example.com`",
                raw.base_url.get_ref()
            ),
        ));
    }
    let limits = match raw.limits.get_ref() {
        RawLimits::Word(word) if word == "discover" => None,
        RawLimits::Word(one) => Some(vec![rate_at(at, &raw.limits, &key("limits"), one)?]),
        RawLimits::Known(list) if list.is_empty() => {
            return Err(at.at(&raw.limits, key("limits"), "is empty: give the provider's limits like `[\"50/60s\"]`, or `\"discover\"` to learn them"));
        }
        RawLimits::Known(list) => Some(
            list.iter()
                .map(|l| rate_at(at, &raw.limits, &key("limits"), l))
                .collect::<Result<_>>()?,
        ),
    };
    let header = match &raw.key.get_ref().header {
        None => HeaderName::from_static("x-api-key"),
        Some(h) => HeaderName::try_from(h.get_ref().as_str()).map_err(|_| {
            at.at(
                h,
                key("key.header"),
                format!("`{}` is not a header name", h.get_ref()),
            )
        })?,
    };
    let scheme = match &raw.key.get_ref().scheme {
        Some(s) => Some(s.get_ref().clone()),
        None if header == http::header::AUTHORIZATION => Some("Bearer".to_owned()),
        None => None,
    };
    let secret = match (&raw.key.get_ref().env, &raw.key.get_ref().file) {
        (Some(env), None) => SecretSource::Env(env.get_ref().clone()),
        (None, Some(file)) => SecretSource::File(file.get_ref().into()),
        _ => return Err(at.at(&raw.key, key("key"), "name exactly one of `env` (an environment variable) or `file` that holds the API key; the key itself never goes in this file")),
    };
    let resources = raw
        .resources
        .iter()
        .enumerate()
        .map(|(r, res)| resource(at, index, r, res))
        .collect::<Result<Vec<_>>>()?;
    for (r, res) in resources.iter().enumerate() {
        if res.for_each.is_none()
            && let Some(bulk) = &raw.resources[r].bulk
        {
            return Err(at.at(
                bulk,
                format!("sources[{index}].resources[{r}].bulk"),
                "a bulk read replaces a fan-out's requests, one per parent: add `for_each` to this resource, or leave `bulk` out",
            ));
        }
        if let Some(parent) = &res.for_each {
            let span = raw.resources[r]
                .for_each
                .as_ref()
                .map(|f| f.resource.span())
                .unwrap_or_default();
            match resources.iter().position(|p| p.name == parent.resource) {
                Some(p) if p < r => {}
                Some(_) => {
                    return Err(at.error(
                        &span,
                        format!("sources[{index}].resources[{r}].for_each.resource"),
                        "the parent resource must come before the resource that fans out from it",
                    ));
                }
                None => {
                    return Err(at.error(
                        &span,
                        format!("sources[{index}].resources[{r}].for_each.resource"),
                        format!("no resource is named `{}` in this source", parent.resource),
                    ));
                }
            }
        }
    }
    let events = raw
        .events
        .as_ref()
        .map(|e| events(at, index, e, &resources))
        .transpose()?;
    Ok(Source {
        name: raw.name.get_ref().clone(),
        base_url,
        key: KeySpec {
            header,
            scheme,
            secret,
        },
        limits,
        timeout: at.duration_or(
            &key("timeout"),
            &raw.timeout,
            std::time::Duration::from_secs(30),
        )?,
        concurrency: raw
            .concurrency
            .as_ref()
            .map_or(4, |c| *c.get_ref())
            .clamp(1, 256),
        submit: submit(at, index, raw.submit.as_ref())?,
        resources,
        events,
    })
}

/// `[sources.submit]`: how the outbox delivers submissions.
fn submit(
    at: &Locator<'_>,
    index: usize,
    raw: Option<&super::raw::RawSubmit>,
) -> Result<super::Submit> {
    let header = raw.and_then(|r| r.idempotency_header.as_ref());
    let idempotency_header = header
        .map(|h| {
            HeaderName::try_from(h.get_ref().as_str()).map_err(|_| {
                let key = format!("sources[{index}].submit.idempotency_header");
                let problem = format!(
                    "`{}` is not a header name: write it like `Idempotency-Key`",
                    h.get_ref()
                );
                at.at(h, key, problem)
            })
        })
        .transpose()?;
    Ok(super::Submit { idempotency_header })
}

fn rate_at(
    at: &Locator<'_>,
    span: &Spanned<RawLimits>,
    key: &str,
    text: &str,
) -> Result<tollgate_core::Rate> {
    text.parse().map_err(|e: tollgate_core::ParseRateError| {
        at.at(span, key, format!("{e}, or `\"discover\"` to learn them"))
    })
}

fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 48
}

fn resource(at: &Locator<'_>, source: usize, index: usize, raw: &RawResource) -> Result<Resource> {
    let key = |field: &str| format!("sources[{source}].resources[{index}].{field}");
    if !is_identifier(raw.name.get_ref()) {
        return Err(at.at(&raw.name, key("name"), format!("`{}` cannot name a table: use lower-case letters, digits and `_`, starting with a letter, like `channel_users`", raw.name.get_ref())));
    }
    let records = raw
        .records
        .as_ref()
        .map_or(String::new(), |r| r.get_ref().clone());
    if !records.is_empty() && !records.starts_with('/') {
        let span = raw.records.as_ref().map(Spanned::span).unwrap_or_default();
        return Err(at.error(
            &span,
            key("records"),
            format!("`{records}` is not a JSON pointer: write it like `/data` or `/data/channels`"),
        ));
    }
    let for_each = raw
        .for_each
        .as_ref()
        .map(|f| {
            Ok(ForEach {
                resource: f.resource.get_ref().clone(),
                fields: f
                    .fields
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                bulk: raw
                    .bulk
                    .as_ref()
                    .map(|b| bulk(at, &key("bulk"), b, f.fields.len(), &records))
                    .transpose()?,
            })
        })
        .transpose()?;
    Ok(Resource {
        name: raw.name.get_ref().clone(),
        path: raw.path.get_ref().clone(),
        query: raw
            .query
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        records,
        id: raw
            .id
            .as_ref()
            .map_or("id".to_owned(), |i| i.get_ref().clone()),
        pagination: raw
            .pagination
            .as_ref()
            .map(|p| pagination(at, &key("pagination.style"), p))
            .transpose()?
            .unwrap_or(Pagination::None),
        incremental: raw.incremental.as_ref().map(|i| Incremental {
            field: i.field.clone(),
            param: i.param.clone(),
        }),
        every: at.duration(&key("every"), &raw.every)?,
        limit: raw
            .limit
            .as_ref()
            .map(|l| at.rate(&key("limit"), l))
            .transpose()?,
        for_each,
    })
}

/// `bulk = { path, param, max, records }`: a fan-out's bulk read.
fn bulk(
    at: &Locator<'_>,
    key: &str,
    raw: &Spanned<RawBulk>,
    placeholders: usize,
    records: &str,
) -> Result<Bulk> {
    let field = |name: &str| format!("{key}.{name}");
    let bulk = raw.get_ref();
    if placeholders != 1 {
        return Err(at.at(
            raw,
            key,
            format!("a bulk read takes the values of one placeholder, and `for_each.fields` names {placeholders}: leave `bulk` out, or fan out over one field"),
        ));
    }
    if !bulk.path.get_ref().starts_with('/') {
        return Err(at.at(
            &bulk.path,
            field("path"),
            format!(
                "`{}` is not a path: write it like `/v1/properties/bulk`",
                bulk.path.get_ref()
            ),
        ));
    }
    if bulk.param.get_ref().trim().is_empty() {
        return Err(at.at(
            &bulk.param,
            field("param"),
            "name the query parameter that takes the ids, like `ids`",
        ));
    }
    let max = u32::try_from(*bulk.max.get_ref())
        .ok()
        .filter(|max| *max >= 1)
        .ok_or_else(|| {
            at.at(
                &bulk.max,
                field("max"),
                format!(
                    "`{}` is not a number of ids: give how many one request may ask for, 1 or more, like `100`",
                    bulk.max.get_ref()
                ),
            )
        })?;
    let records = match &bulk.records {
        None => records.to_owned(),
        Some(r) if r.get_ref().is_empty() => String::new(),
        Some(r) => json_pointer(at, &field("records"), r)?,
    };
    Ok(Bulk {
        path: bulk.path.get_ref().clone(),
        param: bulk.param.get_ref().clone(),
        max,
        records,
    })
}

fn pagination(at: &Locator<'_>, key: &str, raw: &RawPagination) -> Result<Pagination> {
    let size = |default: &str| {
        raw.size.map(|s| {
            (
                raw.size_param.clone().unwrap_or_else(|| default.to_owned()),
                s,
            )
        })
    };
    Ok(match raw.style.get_ref().as_str() {
        "none" => Pagination::None,
        "page" => Pagination::Page { param: raw.param.clone().unwrap_or_else(|| "page".into()), size: size("per_page"), start: raw.start.unwrap_or(1) },
        "offset" => Pagination::Offset { param: raw.param.clone().unwrap_or_else(|| "offset".into()), size: size("limit").unwrap_or(("limit".into(), 100)) },
        "cursor" => Pagination::Cursor {
            param: raw.param.clone().unwrap_or_else(|| "cursor".into()),
            next: raw.next.as_ref().map_or("/next_cursor".to_owned(), |n| n.get_ref().clone()),
        },
        "link" => Pagination::Link,
        other => return Err(at.at(&raw.style, key, format!("`{other}` is not a pagination style: write `page`, `offset`, `cursor`, `link` or `none`"))),
    })
}

/// `[sources.events]`: how the provider's push notifications are checked, and
/// what each type changes.
fn events(
    at: &Locator<'_>,
    source: usize,
    raw: &Spanned<RawEvents>,
    resources: &[Resource],
) -> Result<Events> {
    let key = |field: &str| format!("sources[{source}].events.{field}");
    let events = raw.get_ref();
    let secret = match (&events.secret.get_ref().env, &events.secret.get_ref().file) {
        (Some(env), None) => SecretSource::Env(env.get_ref().clone()),
        (None, Some(file)) => SecretSource::File(file.get_ref().into()),
        _ => return Err(at.at(&events.secret, key("secret"), "name exactly one of `env` (an environment variable) or `file` that holds the signing secret; the secret itself never goes in this file")),
    };
    let header = |field: &str, value: &Option<Spanned<String>>, default: &'static str| match value {
        None => Ok(HeaderName::from_static(default)),
        Some(h) => HeaderName::try_from(h.get_ref().as_str()).map_err(|_| {
            at.at(
                h,
                key(field),
                format!(
                    "`{}` is not a header name: write it like `{default}`",
                    h.get_ref()
                ),
            )
        }),
    };
    let pointer = |field: &str, value: &Option<Spanned<String>>, default: &str| match value {
        None => Ok(default.to_owned()),
        Some(p) => json_pointer(at, &key(field), p),
    };
    if events.map.is_empty() {
        return Err(at.at(raw, key("map"), "no event type is mapped: add a [[sources.events.map]] table with `type`, `resource` and `action`"));
    }
    let map = events
        .map
        .iter()
        .enumerate()
        .map(|(m, entry)| event_mapping(at, &key(&format!("map[{m}]")), entry, resources))
        .collect::<Result<Vec<_>>>()?;
    for (m, entry) in events.map.iter().enumerate() {
        if map[..m].iter().any(|earlier| earlier.kind == map[m].kind) {
            return Err(at.at(
                &entry.kind,
                key(&format!("map[{m}].type")),
                format!(
                    "`{}` is mapped twice: one event type makes one change",
                    map[m].kind
                ),
            ));
        }
    }
    Ok(Events {
        secret,
        signature_header: header("signature_header", &events.signature_header, "x-signature")?,
        timestamp_header: header("timestamp_header", &events.timestamp_header, "x-timestamp")?,
        tolerance: at.duration_or(
            &key("tolerance"),
            &events.tolerance,
            std::time::Duration::from_secs(300),
        )?,
        id: pointer("id", &events.id, "/id")?,
        kind: pointer("type", &events.kind, "/type")?,
        poll_every_with_events: events
            .poll_every_with_events
            .as_ref()
            .map(|p| at.duration(&key("poll_every_with_events"), p))
            .transpose()?,
        map,
    })
}

fn event_mapping(
    at: &Locator<'_>,
    key: &str,
    raw: &RawEventMap,
    resources: &[Resource],
) -> Result<EventMapping> {
    let field = |name: &str| format!("{key}.{name}");
    if !resources.iter().any(|r| &r.name == raw.resource.get_ref()) {
        let names: Vec<&str> = resources.iter().map(|r| r.name.as_str()).collect();
        return Err(at.at(
            &raw.resource,
            field("resource"),
            format!(
                "no resource is named `{}` in this source; its resources are {}",
                raw.resource.get_ref(),
                names.join(", ")
            ),
        ));
    }
    let action = match raw.action.get_ref().as_str() {
        "upsert" => EventAction::Upsert,
        "delete" => EventAction::Delete,
        other => return Err(at.at(&raw.action, field("action"), format!("`{other}` is not an action: write `upsert` (store the record the event carries) or `delete`"))),
    };
    let record = match &raw.record {
        None => "/data".to_owned(),
        Some(r) if r.get_ref().is_empty() => String::new(),
        Some(r) => json_pointer(at, &field("record"), r)?,
    };
    Ok(EventMapping {
        kind: raw.kind.get_ref().clone(),
        resource: raw.resource.get_ref().clone(),
        action,
        record,
        id: raw
            .id
            .as_ref()
            .map(|i| json_pointer(at, &field("id"), i))
            .transpose()?,
    })
}

fn json_pointer(at: &Locator<'_>, key: &str, value: &Spanned<String>) -> Result<String> {
    if value.get_ref().starts_with('/') {
        Ok(value.get_ref().clone())
    } else {
        Err(at.at(
            value,
            key,
            format!(
                "`{}` is not a JSON pointer: write it like `/id` or `/data/id`",
                value.get_ref()
            ),
        ))
    }
}
