//! The few places where SQLite and PostgreSQL need different SQL. Everything
//! else is written once: both accept `$1`-style parameters, `ON CONFLICT … DO
//! UPDATE` with `excluded`, and `RETURNING`.

use crate::Backend;

/// The columns of a records table, in [`StoredRecord`](crate::StoredRecord)
/// order; the body as JSON text on both backends.
pub(crate) const RECORD_COLUMNS: &str =
    "id, CAST(body AS TEXT), etag, last_modified, updated_at, fetched_at_ms, created_at_ms";

impl Backend {
    /// `CREATE TABLE IF NOT EXISTS` for a records table whose name was validated.
    pub(crate) fn create_records_table(self, table: &str) -> String {
        // PostgreSQL: byte order for ids, as SQLite's BINARY, so keyset pages
        // are the same whatever the database's locale.
        let (id, body) = match self {
            Self::Sqlite => ("TEXT NOT NULL PRIMARY KEY", "TEXT NOT NULL"),
            Self::Postgres => ("TEXT COLLATE \"C\" NOT NULL PRIMARY KEY", "JSONB NOT NULL"),
        };
        format!(
            "CREATE TABLE IF NOT EXISTS \"{table}\" (\
             id {id}, body {body}, etag TEXT, last_modified TEXT, updated_at TEXT, \
             fetched_at_ms BIGINT NOT NULL, created_at_ms BIGINT NOT NULL)"
        )
    }

    /// The bound parameter for a top-level field, as `filter_matches` wants it.
    pub(crate) fn filter_path(self, field: &str) -> String {
        match self {
            // The field name was checked to hold no `"`.
            Self::Sqlite => format!("$.\"{field}\""),
            Self::Postgres => field.to_owned(),
        }
    }

    /// Whether the body's field at parameter `$path` has the text of
    /// parameter `$value`: PostgreSQL's `->>` text, which SQLite is made to
    /// match (`true`, not `1`).
    pub(crate) fn filter_matches(self, path: usize, value: usize) -> String {
        match self {
            Self::Sqlite => format!(
                "(CASE json_type(body, ${path}) WHEN 'true' THEN 'true' WHEN 'false' THEN 'false' \
                 ELSE CAST(json_extract(body, ${path}) AS TEXT) END) = ${value}"
            ),
            Self::Postgres => format!("(body ->> ${path}) = ${value}"),
        }
    }

    /// What ends a `SELECT` of a row about to be updated in the same
    /// transaction. SQLite's write transactions start with `BEGIN IMMEDIATE`,
    /// which already keeps every other writer out.
    pub(crate) fn lock_row(self) -> &'static str {
        match self {
            Self::Sqlite => "",
            Self::Postgres => " FOR UPDATE",
        }
    }
}
