-- Who made each event happen (the envelope's actor), and outgoing
-- webhooks: per project, the events they want ('*' for all), the HMAC
-- secret sealed under the master key, and one delivery row per event
-- and webhook, retried with backoff until delivered or given up.

ALTER TABLE outbox ADD COLUMN actor TEXT;

CREATE TABLE project_webhooks (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id),
    url TEXT NOT NULL,
    secret_sealed TEXT NOT NULL,
    events TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

CREATE INDEX project_webhooks_by_project ON project_webhooks (project_id);

CREATE TABLE outgoing_deliveries (
    id TEXT PRIMARY KEY,
    webhook_id TEXT NOT NULL,
    seq BIGINT NOT NULL,
    event_type TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts BIGINT NOT NULL DEFAULT 0,
    next_at_ms BIGINT NOT NULL,
    last_status BIGINT,
    last_error TEXT,
    delivered_at_ms BIGINT,
    created_at_ms BIGINT NOT NULL,
    UNIQUE (webhook_id, seq)
);

CREATE INDEX outgoing_deliveries_due ON outgoing_deliveries (state, next_at_ms);
