//! Submissions: records created by `POST`, `Idempotency-Key`, and the log of
//! every write received, to prove exactly-once delivery.

use std::collections::HashMap;

use parking_lot::Mutex;
use serde_json::{Map, Value};
use tollgate_core::Timestamp;

use crate::data::format_rfc3339;
use crate::endpoint::Resource;

/// One write that reached the API's handler (writes refused before it, by a
/// limit or an injected `500`/`503`, are only in the request log).
#[derive(Clone, Debug, PartialEq)]
pub struct WriteEntry {
    /// When it arrived (by the API's clock).
    pub at: Timestamp,
    /// The API key it carried.
    pub key: String,
    /// What it creates.
    pub resource: Resource,
    /// Its `Idempotency-Key` header.
    pub idempotency_key: Option<String>,
    /// Its body (`Null` when it was not JSON).
    pub body: Value,
    /// What the API did with it.
    pub outcome: WriteOutcome,
}

/// What the API did with one write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WriteOutcome {
    /// A new record was created (`201`).
    Created {
        /// The new record's `id`.
        id: String,
    },
    /// The `Idempotency-Key` was seen before with the same body: the first
    /// answer was repeated, nothing created (`201`, `Idempotent-Replayed: true`).
    Replayed {
        /// The `id` of the record the first request created.
        id: String,
    },
    /// The `Idempotency-Key` was seen before with another body (`422`).
    KeyReused,
    /// The body was not a JSON object (`400`).
    Invalid,
}

/// The answer to a write.
pub(crate) enum Written {
    Created(Value),
    Replayed(Value),
    KeyReused,
    Invalid,
}

#[derive(Default)]
pub(crate) struct Writes {
    state: Mutex<WritesState>,
}

#[derive(Default)]
struct WritesState {
    created: Vec<(Resource, Value)>,
    /// The first body and record per (API key, resource, idempotency key).
    remembered: HashMap<(String, Resource, String), (Value, Value)>,
    log: Vec<WriteEntry>,
}

impl Writes {
    /// Handles one write of `body` to `resource`.
    pub(crate) fn write(
        &self,
        at: Timestamp,
        key: &str,
        resource: Resource,
        idempotency_key: Option<String>,
        body: &[u8],
    ) -> Written {
        let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        let mut state = self.state.lock();
        let remembered = idempotency_key
            .as_ref()
            .map(|idem| (key.to_owned(), resource, idem.clone()));
        let (written, outcome) = match remembered.as_ref().and_then(|r| state.remembered.get(r)) {
            Some((first, record)) if *first == body => (
                Written::Replayed(record.clone()),
                WriteOutcome::Replayed { id: id_of(record) },
            ),
            Some(_) => (Written::KeyReused, WriteOutcome::KeyReused),
            None => match state.create(at, resource, &body) {
                Some(record) => {
                    if let Some(remembered) = remembered {
                        state
                            .remembered
                            .insert(remembered, (body.clone(), record.clone()));
                    }
                    let id = id_of(&record);
                    (Written::Created(record), WriteOutcome::Created { id })
                }
                None => (Written::Invalid, WriteOutcome::Invalid),
            },
        };
        let key = key.to_owned();
        state.log.push(WriteEntry {
            at,
            key,
            resource,
            idempotency_key,
            body,
            outcome,
        });
        written
    }

    pub(crate) fn log(&self) -> Vec<WriteEntry> {
        self.state.lock().log.clone()
    }

    pub(crate) fn created(&self, resource: Resource) -> Vec<Value> {
        let state = self.state.lock();
        let of_resource = state.created.iter().filter(|(r, _)| *r == resource);
        of_resource.map(|(_, record)| record.clone()).collect()
    }
}

impl WritesState {
    /// The record for `body` (a JSON object): its fields, an `id`, a
    /// `created_at` and a `status`.
    fn create(&mut self, at: Timestamp, resource: Resource, body: &Value) -> Option<Value> {
        let fields = body.as_object()?;
        let prefix = if resource == Resource::Appointments {
            "appt"
        } else {
            "tapp"
        };
        let n = self.created.iter().filter(|(r, _)| *r == resource).count() + 1;
        let mut record: Map<String, Value> = fields.clone();
        record.insert("id".into(), format!("{prefix}-{n:06}").into());
        record.insert(
            "created_at".into(),
            format_rfc3339(at.as_nanos() / 1_000_000_000).into(),
        );
        record.insert("status".into(), "received".into());
        let record = Value::Object(record);
        self.created.push((resource, record.clone()));
        Some(record)
    }
}

fn id_of(record: &Value) -> String {
    record["id"].as_str().unwrap_or_default().to_owned()
}
