//! What a provider says about its limits, in the forms providers use: the IETF
//! `RateLimit-Policy` / `RateLimit` fields, the common `X-RateLimit-*` headers,
//! and `Retry-After` (seconds or an HTTP date).

use std::time::{Duration, SystemTime};

use http::HeaderMap;
use sfv::{BareItem, ListEntry, Parser};
use tollgate_core::Rate;

/// The limit facts one response carries.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Advice {
    /// Announced limits: `RateLimit-Policy` items (`q` per `w` seconds), or
    /// `X-RateLimit-Limit` with the window it implies.
    pub limits: Vec<Rate>,
    /// Requests left in the tightest announced limit.
    pub remaining: Option<u32>,
    /// Until the tightest limit frees a slot (`t`, `X-RateLimit-Reset`).
    pub reset_after: Option<Duration>,
    /// `Retry-After`.
    pub retry_after: Option<Duration>,
}

impl Advice {
    /// Reads every form of limit header from `headers`; `now` turns HTTP dates
    /// and epoch resets into waits.
    pub fn from_headers(headers: &HeaderMap, now: SystemTime) -> Self {
        let mut advice = Advice {
            retry_after: headers
                .get(http::header::RETRY_AFTER)
                .and_then(|v| retry_after(v.to_str().ok()?, now)),
            ..Advice::default()
        };
        ietf(headers, &mut advice);
        if advice.limits.is_empty() && advice.remaining.is_none() {
            x_ratelimit(headers, now, &mut advice);
        }
        advice
    }
}

/// `Retry-After: 120` or `Retry-After: Fri, 31 Dec 1999 23:59:59 GMT`.
fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The parameters of each item of a structured-field list.
fn items(headers: &HeaderMap, name: &str) -> Vec<Vec<(String, i64)>> {
    let Some(list) = headers
        .get(name)
        .and_then(|v| Parser::parse_list(v.as_bytes()).ok())
    else {
        return Vec::new();
    };
    list.into_iter()
        .filter_map(|entry| match entry {
            ListEntry::Item(item)
                if matches!(item.bare_item, BareItem::String(_) | BareItem::Token(_)) =>
            {
                Some(
                    item.params
                        .iter()
                        .filter_map(|(k, v)| Some((k.to_string(), v.as_int()?)))
                        .collect(),
                )
            }
            _ => None,
        })
        .collect()
}

fn param(params: &[(String, i64)], name: &str) -> Option<i64> {
    params.iter().find(|(k, _)| k == name).map(|(_, v)| *v)
}

fn ietf(headers: &HeaderMap, advice: &mut Advice) {
    for policy in items(headers, "ratelimit-policy") {
        let (Some(q), w) = (param(&policy, "q"), param(&policy, "w").unwrap_or(1)) else {
            continue;
        };
        if q > 0 && w > 0 {
            advice.limits.push(Rate::new(
                q.min(u32::MAX as i64) as u32,
                Duration::from_secs(w as u64),
            ));
        }
    }
    // The tightest current state: the fewest remaining.
    let tightest = items(headers, "ratelimit")
        .into_iter()
        .filter_map(|state| Some((param(&state, "r")?, param(&state, "t"))))
        .min_by_key(|(r, _)| *r);
    if let Some((r, t)) = tightest {
        advice.remaining = Some(r.max(0) as u32);
        advice.reset_after = t.map(|t| Duration::from_secs(t.max(0) as u64));
    }
}

fn x_ratelimit(headers: &HeaderMap, now: SystemTime, advice: &mut Advice) {
    let number = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<u64>().ok();
    let limit = number("x-ratelimit-limit");
    advice.remaining = number("x-ratelimit-remaining").map(|r| r.min(u32::MAX as u64) as u32);
    // A reset is either seconds from now or, when it is a large number, an epoch
    // instant (both are common).
    advice.reset_after = number("x-ratelimit-reset").map(|reset| {
        let epoch_now = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        if reset > 1_000_000_000 {
            Duration::from_secs(reset.saturating_sub(epoch_now))
        } else {
            Duration::from_secs(reset)
        }
    });
    let window = number("x-ratelimit-window")
        .or_else(|| number("x-ratelimit-interval"))
        .unwrap_or(60);
    if let Some(limit) = limit.filter(|l| *l > 0) {
        advice.limits.push(Rate::new(
            limit.min(u32::MAX as u64) as u32,
            Duration::from_secs(window.max(1)),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(k, v)| (http::HeaderName::from_static(k), v.parse().unwrap()))
            .collect()
    }

    const NOW: SystemTime = SystemTime::UNIX_EPOCH;

    #[test]
    fn reads_the_ietf_fields() {
        let advice = Advice::from_headers(
            &headers(&[
                (
                    "ratelimit-policy",
                    "\"per-key\";q=50;w=60, \"user-list\";q=20;w=1",
                ),
                ("ratelimit", "\"per-key\";r=12;t=8, \"user-list\";r=3;t=1"),
            ]),
            NOW,
        );
        assert_eq!(advice.limits, [Rate::per_minute(50), Rate::per_second(20)]);
        assert_eq!(advice.remaining, Some(3));
        assert_eq!(advice.reset_after, Some(Duration::from_secs(1)));
    }

    #[test]
    fn reads_x_ratelimit_and_both_kinds_of_reset() {
        let advice = Advice::from_headers(
            &headers(&[
                ("x-ratelimit-limit", "50"),
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "17"),
            ]),
            NOW,
        );
        assert_eq!(advice.limits, [Rate::per_minute(50)]);
        assert_eq!(
            (advice.remaining, advice.reset_after),
            (Some(0), Some(Duration::from_secs(17)))
        );
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let epoch = Advice::from_headers(&headers(&[("x-ratelimit-reset", "1800000030")]), now);
        assert_eq!(epoch.reset_after, Some(Duration::from_secs(30)));
    }

    #[test]
    fn reads_retry_after_as_seconds_or_a_date_and_ignores_garbage() {
        let secs = Advice::from_headers(&headers(&[("retry-after", "120")]), NOW);
        assert_eq!(secs.retry_after, Some(Duration::from_secs(120)));
        let date = Advice::from_headers(
            &headers(&[("retry-after", "Thu, 01 Jan 1970 00:01:00 GMT")]),
            NOW,
        );
        assert_eq!(date.retry_after, Some(Duration::from_secs(60)));
        let garbage = Advice::from_headers(
            &headers(&[("retry-after", "soon"), ("ratelimit-policy", "((")]),
            NOW,
        );
        assert_eq!(garbage, Advice::default());
    }
}
