-- The provider's push notifications (webhook events) already applied, so that
-- a replayed event is refused even after a restart (PostgreSQL).
-- crates/sql/migrations/sqlite has the same table; keep the two in step.
-- Times are unix milliseconds (UTC).
--
-- An event is claimed here before it is applied, and released if applying it
-- failed. A row is deleted once its event's timestamp is older than the
-- source's tolerance: a copy of it would be refused as stale anyway.
CREATE TABLE sync_events (
    source         TEXT COLLATE "C" NOT NULL,
    id             TEXT COLLATE "C" NOT NULL,  -- the provider's event id
    signed_at_ms   BIGINT NOT NULL,  -- the event's signed timestamp
    received_at_ms BIGINT NOT NULL,  -- when this process accepted it
    PRIMARY KEY (source, id)
);

CREATE INDEX sync_events_signed ON sync_events (source, signed_at_ms);
