-- Limit-increase requests: what an integrator submits (the questions the seeds'
-- providers ask), the evidence the gateway had about the key when it was
-- submitted, and an admin's decision.

CREATE TABLE limit_increase_requests (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    key_id             INTEGER NOT NULL REFERENCES keys (id),
    application        TEXT    NOT NULL, -- the submitted form, JSON
    evidence           TEXT    NOT NULL, -- what the gateway measured, JSON
    status             TEXT    NOT NULL DEFAULT 'pending'
                               CHECK (status IN ('pending', 'approved', 'declined')),
    increments_granted INTEGER,
    decided_by         TEXT,
    decision_reason    TEXT,
    created_at         INTEGER NOT NULL,
    decided_at         INTEGER
);

CREATE INDEX limit_increase_requests_by_status ON limit_increase_requests (status, created_at);
