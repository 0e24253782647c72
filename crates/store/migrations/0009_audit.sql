-- The audit log: append-only, numbered without gaps, each entry carrying
-- the SHA-256 of the one before it (helix_core::audit). The head is the
-- last entry written; taking the next number locks it until commit, so
-- entries follow commit order, like the event sequence.

CREATE TABLE audit_log (
    seq BIGINT PRIMARY KEY,
    at_ms BIGINT NOT NULL,
    org TEXT NOT NULL,
    actor TEXT NOT NULL,
    token_id TEXT,
    action TEXT NOT NULL,
    project TEXT,
    target TEXT,
    outcome TEXT NOT NULL,
    detail TEXT NOT NULL,
    request_id TEXT,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);

CREATE INDEX audit_by_org ON audit_log (org, seq);

CREATE TABLE audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);

INSERT INTO audit_head (id, seq, hash)
    VALUES (1, 0, '0000000000000000000000000000000000000000000000000000000000000000');
