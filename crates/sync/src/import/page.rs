//! Pages: which request comes next, and the records in an answer.

use http::HeaderMap;
use serde_json::Value;

use crate::config::{Pagination, Resource};

/// Where an import stands within a resource: what to ask for next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Position {
    /// The first page.
    Start,
    /// A page number or offset.
    Number(u64),
    /// A cursor from the last body.
    Cursor(String),
    /// A full URL from the last `Link: rel="next"`.
    Url(String),
}

impl Position {
    /// As saved in a checkpoint.
    pub fn encode(&self) -> String {
        match self {
            Position::Start => String::new(),
            Position::Number(n) => format!("n:{n}"),
            Position::Cursor(c) => format!("c:{c}"),
            Position::Url(u) => format!("u:{u}"),
        }
    }

    /// From a checkpoint.
    pub fn decode(text: &str) -> Position {
        match text.split_once(':') {
            Some(("n", n)) => n.parse().map_or(Position::Start, Position::Number),
            Some(("c", c)) => Position::Cursor(c.to_owned()),
            Some(("u", u)) => Position::Url(u.to_owned()),
            _ => Position::Start,
        }
    }
}

/// Fills `{placeholders}` of a path from a parent record's fields.
pub fn fill_path(path: &str, values: &[(String, String)]) -> String {
    let mut filled = path.to_owned();
    for (name, value) in values {
        filled = filled.replace(&format!("{{{name}}}"), &urlencode(value));
    }
    filled
}

/// `text` percent-encoded for a path segment or a query value.
pub(super) fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The URL of the page at `position`: base, path, fixed query, pagination, and
/// `since` for an incremental import.
pub fn url(
    base: &str,
    resource: &Resource,
    path: &str,
    position: &Position,
    since: Option<&str>,
) -> String {
    if let Position::Url(url) = position {
        return url.clone();
    }
    let mut query: Vec<(String, String)> = resource.query.clone();
    match (&resource.pagination, position) {
        (Pagination::Page { param, size, start }, _) => {
            let page = match position {
                Position::Number(n) => *n,
                _ => *start,
            };
            query.push((param.clone(), page.to_string()));
            if let Some((size_param, size)) = size {
                query.push((size_param.clone(), size.to_string()));
            }
        }
        (Pagination::Offset { param, size }, _) => {
            let offset = match position {
                Position::Number(n) => *n,
                _ => 0,
            };
            query.push((param.clone(), offset.to_string()));
            query.push((size.0.clone(), size.1.to_string()));
        }
        (Pagination::Cursor { param, .. }, Position::Cursor(cursor)) => {
            query.push((param.clone(), cursor.clone()))
        }
        _ => {}
    }
    if let (Some(incremental), Some(since)) = (&resource.incremental, since) {
        query.push((incremental.param.clone(), since.to_owned()));
    }
    let mut url = format!("{base}{path}");
    for (i, (k, v)) in query.iter().enumerate() {
        url.push(if i == 0 { '?' } else { '&' });
        url.push_str(&urlencode(k));
        url.push('=');
        url.push_str(&urlencode(v));
    }
    url
}

/// What one answer holds.
#[derive(Debug, PartialEq)]
pub struct Page {
    /// The records, each with its primary key.
    pub records: Vec<(String, Value)>,
    /// Where the next page is; `None` when this was the last.
    pub next: Option<Position>,
}

/// Why an answer cannot be used (nothing of it is stored).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PageError {
    /// Not JSON.
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    /// No records where the configuration says they are.
    #[error("no array of records at `{0}`")]
    NoRecords(String),
    /// A record without its primary key.
    #[error("a record has no primary key `{0}`")]
    NoId(String),
}

/// Reads the records of an answer and where the next page is. A fan-out's
/// answer is often one object without its own key (a channel's users): it is
/// stored under `scope`, the parent's key, when given.
pub fn read(
    resource: &Resource,
    position: &Position,
    headers: &HeaderMap,
    body: &[u8],
    scope: Option<&str>,
) -> Result<Page, PageError> {
    let body: Value =
        serde_json::from_slice(body).map_err(|e| PageError::NotJson(e.to_string()))?;
    let found = if resource.records.is_empty() {
        Some(&body)
    } else {
        body.pointer(&resource.records)
    };
    let records: Vec<Value> = match found {
        Some(Value::Array(items)) => items.clone(),
        // A single object (one channel's users): one record.
        Some(object @ Value::Object(_)) => vec![object.clone()],
        _ => return Err(PageError::NoRecords(resource.records.clone())),
    };
    let single = records.len() == 1;
    let records = records
        .into_iter()
        .map(|record| {
            let id = id_of(&record, &resource.id)
                .or_else(|| scope.filter(|_| single).map(str::to_owned))
                .ok_or_else(|| PageError::NoId(resource.id.clone()))?;
            Ok((id, record))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let count = records.len() as u64;
    let next = match &resource.pagination {
        Pagination::None => None,
        Pagination::Page { size, start, .. } => {
            let current = match position {
                Position::Number(n) => *n,
                _ => *start,
            };
            let short = size.as_ref().is_some_and(|(_, s)| count < u64::from(*s));
            (count > 0 && !short).then_some(Position::Number(current + 1))
        }
        Pagination::Offset { size, .. } => {
            let current = match position {
                Position::Number(n) => *n,
                _ => 0,
            };
            (count >= u64::from(size.1) && count > 0).then_some(Position::Number(current + count))
        }
        Pagination::Cursor { next, .. } => match body.pointer(next) {
            Some(Value::String(cursor)) if !cursor.is_empty() => {
                Some(Position::Cursor(cursor.clone()))
            }
            _ => None,
        },
        Pagination::Link => next_link(headers).map(Position::Url),
    };
    Ok(Page { records, next })
}

/// A record's primary key: a field name or a JSON pointer; numbers as text.
pub fn id_of(record: &Value, id: &str) -> Option<String> {
    let value = if id.starts_with('/') {
        record.pointer(id)
    } else {
        record.get(id)
    }?;
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The `rel="next"` target of RFC 8288 `Link` headers.
fn next_link(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(http::header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|link| {
            let (target, params) = link.split_once(';')?;
            let is_next = params.split(';').any(|p| {
                let p = p.trim().to_ascii_lowercase();
                p == "rel=\"next\"" || p == "rel=next"
            });
            is_next.then(|| {
                target
                    .trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_owned()
            })
        })
}
