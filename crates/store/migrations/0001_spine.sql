-- The spine: projects, deployments, the production pointer's history,
-- compressed variants, API tokens and the event outbox.
-- Portable SQL: runs unchanged on SQLite and Postgres (TEXT ids made by the
-- application, BIGINT Unix milliseconds, no SERIAL, no JSONB).

CREATE TABLE projects (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    production_deployment_id TEXT,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE deployments (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id),
    state TEXT NOT NULL CHECK (state IN ('uploading', 'ready', 'error')),
    production_requested BOOLEAN NOT NULL DEFAULT FALSE,
    -- While uploading: the requested file table as JSON (path -> digest).
    -- Emptied once the manifest blob holds it.
    files_json TEXT NOT NULL,
    manifest_digest TEXT,
    file_count BIGINT NOT NULL,
    total_bytes BIGINT NOT NULL DEFAULT 0,
    created_at_ms BIGINT NOT NULL,
    ready_at_ms BIGINT,
    error TEXT
);

CREATE INDEX deployments_by_project ON deployments (project_id, created_at_ms);
CREATE INDEX deployments_by_state ON deployments (state);

CREATE TABLE production_history (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id),
    deployment_id TEXT NOT NULL REFERENCES deployments (id),
    kind TEXT NOT NULL CHECK (kind IN ('promoted', 'rolled_back')),
    at_ms BIGINT NOT NULL
);

CREATE TABLE blob_variants (
    digest TEXT NOT NULL,
    encoding TEXT NOT NULL CHECK (encoding IN ('br', 'gzip')),
    variant_digest TEXT NOT NULL,
    variant_size BIGINT NOT NULL,
    PRIMARY KEY (digest, encoding)
);

CREATE TABLE api_tokens (
    id TEXT PRIMARY KEY,
    token_sha256 TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE outbox (
    id TEXT PRIMARY KEY,
    topic TEXT NOT NULL,
    payload TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
