-- The outbox: requests meant for a provider (tenancy applications,
-- appointments), accepted by the sync daemon's API and delivered inside the
-- source's budget (PostgreSQL). crates/sql/migrations/sqlite has the same
-- table; keep the two in step. Times are unix milliseconds (UTC).
--
-- A submission is written here before its `202 Accepted`, so a crash loses
-- none. `state` moves queued -> in_flight (claimed by a delivery worker, in one
-- statement) -> delivered | failed, or back to queued for another attempt at
-- `next_attempt_ms`; cancelled from queued. A submission found in_flight at
-- start-up was being sent when its process stopped: it is queued again and sent
-- with the same idempotency key.
CREATE TABLE outbox (
    id                    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    source                TEXT COLLATE "C" NOT NULL,
    idempotency_key       TEXT COLLATE "C" NOT NULL,  -- the client's Idempotency-Key, or a generated one
    method                TEXT    NOT NULL,
    path                  TEXT    NOT NULL,  -- path and query, appended to the source's base_url
    content_type          TEXT,
    body                  BYTEA   NOT NULL,
    priority              BIGINT  NOT NULL,  -- 0 urgent, 1 normal, 2 bulk
    state                 TEXT    NOT NULL,  -- queued, in_flight, delivered, failed, cancelled
    attempts              BIGINT  NOT NULL DEFAULT 0,
    next_attempt_ms       BIGINT  NOT NULL,
    created_at_ms         BIGINT  NOT NULL,
    updated_at_ms         BIGINT  NOT NULL,
    response_status       BIGINT,            -- the provider's status, once it answered
    response_content_type TEXT,
    response_body         BYTEA,
    error                 TEXT,              -- why the last attempt failed
    UNIQUE (source, idempotency_key)
);

CREATE INDEX outbox_next ON outbox (source, state, priority, next_attempt_ms, id);
