//! From an event's body to the change it makes to one stored record.

use serde_json::Value;
use tollgate_sql::{Change as Stored, Record, Storage, StorageError};

use super::{Applied, Refused, action_name};
use crate::config::{EventAction, EventMapping, Source};
use crate::import::page::id_of;

/// A change to one record, read from an event and not applied yet.
#[derive(Debug)]
pub(super) enum Change {
    /// Store this record.
    Upsert(Record),
    /// Delete the record with this id.
    Delete(String),
}

/// The text (or number, as text) at `pointer` in the event; `what` names it
/// in the refusal.
pub(super) fn text_at(event: &Value, pointer: &str, what: &str) -> Result<String, Refused> {
    match event.pointer(pointer) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        _ => Err(Refused::Malformed(format!(
            "{what} is not at `{pointer}` of the body (a non-empty string or a number)"
        ))),
    }
}

/// The change `mapping` reads from `event`, stamped `now_ms`.
pub(super) fn change(
    source: &Source,
    mapping: &EventMapping,
    event: &Value,
    now_ms: i64,
) -> Result<Change, Refused> {
    let resource = source
        .resources
        .iter()
        .find(|r| r.name == mapping.resource)
        .expect("the configuration names only resources of the source");
    let record = if mapping.record.is_empty() {
        Some(event)
    } else {
        event.pointer(&mapping.record)
    }
    .filter(|r| r.is_object());
    let id = match (&mapping.id, record) {
        (Some(pointer), _) => text_at(event, pointer, "the record's id")?,
        (None, Some(record)) => id_of(record, &resource.id).ok_or_else(|| {
            Refused::Malformed(format!(
                "the record at `{}` has no id `{}` (a non-empty string or a number)",
                mapping.record, resource.id
            ))
        })?,
        (None, None) => return Err(no_record(mapping)),
    };
    match mapping.action {
        EventAction::Delete => Ok(Change::Delete(id)),
        EventAction::Upsert => {
            let record = record.ok_or_else(|| no_record(mapping))?;
            let mut stored = Record::new(id, record.clone(), now_ms);
            stored.updated_at =
                resource
                    .incremental
                    .as_ref()
                    .and_then(|i| match record.get(&i.field)? {
                        Value::String(s) => Some(s.clone()),
                        Value::Number(n) => Some(n.to_string()),
                        _ => None,
                    });
            Ok(Change::Upsert(stored))
        }
    }
}

fn no_record(mapping: &EventMapping) -> Refused {
    Refused::Malformed(format!(
        "a `{}` event carries its record at `{}` of the body, as an object; it is not there",
        mapping.kind, mapping.record
    ))
}

/// Applies `change` to `resource`'s records.
pub(super) async fn apply(
    storage: &Storage,
    resource: &str,
    change: Change,
) -> Result<Applied, StorageError> {
    // An event may come before the first import made the table.
    storage.ensure_resource(resource).await?;
    let (action, id, change) = match change {
        Change::Upsert(record) => {
            let change = match storage.upsert_one(resource, &record).await? {
                Stored::Inserted => "inserted",
                Stored::Updated => "updated",
                Stored::Unchanged => "unchanged",
            };
            (EventAction::Upsert, record.id, change)
        }
        Change::Delete(id) => {
            let change = if storage.delete(resource, &id).await? {
                "deleted"
            } else {
                "not_stored"
            };
            (EventAction::Delete, id, change)
        }
    };
    Ok(Applied {
        resource: resource.to_owned(),
        action: action_name(action),
        id,
        change,
    })
}
