-- The sync daemon's bookkeeping (SQLite). crates/sql/migrations/postgres has the
-- same tables and columns; keep the two in step. Times are unix milliseconds
-- (UTC). The imported records themselves live in one `records_<resource>` table
-- per resource, created by `Storage::ensure_resource`, not here.

-- Where an import run stands, saved in the transaction of the page it follows:
-- a crashed run resumes from here. Deleted when the run finishes.
CREATE TABLE sync_checkpoints (
    resource      TEXT    NOT NULL,
    scope         TEXT    NOT NULL,  -- '' for a plain resource, the parent id for a fan-out
    cursor        TEXT    NOT NULL,  -- opaque: next page number, cursor token or next URL
    pages_done    BIGINT  NOT NULL CHECK (pages_done >= 0),
    records_done  BIGINT  NOT NULL CHECK (records_done >= 0),
    started_at_ms BIGINT  NOT NULL,
    PRIMARY KEY (resource, scope)
);

-- The state of each resource (and fan-out scope): what `tollgate report` prints.
CREATE TABLE sync_resources (
    resource           TEXT   NOT NULL,
    scope              TEXT   NOT NULL,
    last_success_ms    BIGINT,          -- when the last complete run finished
    last_duration_ms   BIGINT,          -- how long it took
    last_pages         BIGINT,
    last_records       BIGINT,
    last_error         TEXT,
    last_error_ms      BIGINT,
    watermark          TEXT,            -- latest updated_at of the completed runs
    run_watermark      TEXT,            -- latest updated_at of the run in progress
    list_etag          TEXT,            -- validators of the list, for conditional requests
    list_last_modified TEXT,
    PRIMARY KEY (resource, scope)
);

-- Every 429 received, and whether the next call to that source waited it out.
CREATE TABLE rate_limit_events (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    source       TEXT    NOT NULL,
    at_ms        BIGINT  NOT NULL,
    retry_at_ms  BIGINT  NOT NULL,  -- the earliest next request the source allowed
    next_call_ms BIGINT,            -- when the source was next called; NULL until then
    honoured     BOOLEAN            -- next_call_ms >= retry_at_ms; NULL until then
);

CREATE INDEX rate_limit_events_source ON rate_limit_events (source, at_ms);
