-- API keys of the gateway and the record of their tier changes.
--
-- Secrets are never stored: only their SHA-256 hash (to find a presented key)
-- and their last five characters (the only part ever logged or shown).
-- Times are unix milliseconds (UTC). Keys are revoked, never deleted, so that
-- ids stay unique for billing; AUTOINCREMENT keeps them from being reused.

CREATE TABLE keys (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT    NOT NULL,
    secret_hash BLOB    NOT NULL UNIQUE CHECK (length(secret_hash) = 32),
    last5       TEXT    NOT NULL,
    increments  INTEGER NOT NULL DEFAULT 0 CHECK (increments BETWEEN 0 AND 4294967295),
    created_at  INTEGER NOT NULL,
    created_by  TEXT    NOT NULL,
    revoked_at  INTEGER,
    revoked_by  TEXT,
    CHECK ((revoked_at IS NULL) = (revoked_by IS NULL))
);

-- One row per change of a key's limit tier (its number of increments), with
-- who made it and when: what billing reads.
CREATE TABLE tier_changes (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    key_id          INTEGER NOT NULL REFERENCES keys (id),
    from_increments INTEGER NOT NULL,
    to_increments   INTEGER NOT NULL,
    actor           TEXT    NOT NULL,
    reason          TEXT,
    at              INTEGER NOT NULL
);

CREATE INDEX tier_changes_by_key ON tier_changes (key_id, at);
