//! The records, as the API serialises them.

use serde::{Serialize, Serializer};
use serde_json::{Value, json};
use std::time::{Duration, UNIX_EPOCH};

/// A channel of the real-time communication platform.
#[derive(Clone, Debug)]
pub(crate) struct Channel {
    pub(crate) name: String,
    /// 1: communication, 2: live broadcast.
    pub(crate) mode: u8,
    /// The user ids in the channel, ascending.
    pub(crate) users: Vec<u32>,
}

impl Channel {
    /// The channel as the channel list shows it.
    pub(crate) fn list_item(&self) -> Value {
        json!({ "channel_name": self.name, "user_count": self.users.len() })
    }

    /// The `data` of the channel's user list.
    pub(crate) fn users_data(&self) -> Value {
        json!({
            "channel_exist": true,
            "mode": self.mode,
            "total": self.users.len(),
            "users": self.users,
        })
    }
}

/// A property of the property-management platform.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Property {
    pub(crate) id: String,
    pub(crate) address: String,
    pub(crate) city: &'static str,
    pub(crate) postcode: String,
    pub(crate) bedrooms: u8,
    pub(crate) rent_pcm: u32,
    pub(crate) status: &'static str,
    #[serde(serialize_with = "rfc3339")]
    pub(crate) updated_at: u64,
}

/// A tenancy: who rents which property from when.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Tenancy {
    pub(crate) id: String,
    pub(crate) property_id: Option<String>,
    pub(crate) tenant_name: String,
    pub(crate) start_date: String,
    pub(crate) rent_pcm: u32,
    pub(crate) status: &'static str,
    #[serde(serialize_with = "rfc3339")]
    pub(crate) updated_at: u64,
}

/// Someone looking for a property.
#[derive(Clone, Debug, Serialize)]
pub(crate) struct Applicant {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) email: String,
    pub(crate) max_rent_pcm: u32,
    pub(crate) min_bedrooms: u8,
    #[serde(serialize_with = "rfc3339")]
    pub(crate) updated_at: u64,
}

/// Records with a primary key and a modification time.
pub(crate) trait Keyed: Serialize {
    fn id(&self) -> &str;
    fn updated_at(&self) -> u64;
}

macro_rules! keyed {
    ($($t:ty),*) => {$(
        impl Keyed for $t {
            fn id(&self) -> &str {
                &self.id
            }
            fn updated_at(&self) -> u64 {
                self.updated_at
            }
        }
    )*};
}
keyed!(Property, Tenancy, Applicant);

/// Whole seconds since the epoch as RFC 3339 (`2024-03-01T12:00:00Z`).
pub(crate) fn format_rfc3339(secs: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string()
}

fn rfc3339<S: Serializer>(secs: &u64, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_rfc3339(*secs))
}

/// A record as JSON (the records here always serialise).
pub(crate) fn to_value(record: &impl Serialize) -> Value {
    serde_json::to_value(record).unwrap_or(Value::Null)
}
