-- The requests each source was sent recently, so that a restarted process
-- knows the budget the previous one used (SQLite). crates/sql/migrations/postgres
-- has the same table; keep the two in step. Times are unix milliseconds (UTC).
--
-- A request is written when it is sent and again when its answer arrives; one
-- that has no answer was in flight when its process stopped. Rows older than
-- the longest window of their source are deleted as new answers arrive.
CREATE TABLE sync_requests (
    source         TEXT   NOT NULL,
    id             BIGINT NOT NULL,  -- random per request
    endpoint       TEXT,             -- the resource whose own limit it also counted against
    sent_at_ms     BIGINT NOT NULL,
    answered_at_ms BIGINT,           -- NULL while in flight
    PRIMARY KEY (source, id)
);

CREATE INDEX sync_requests_answered ON sync_requests (source, answered_at_ms);
