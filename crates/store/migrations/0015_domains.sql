-- Custom domains. A project claims a name with a token it must prove
-- (a TXT record, or the edge answering it over HTTP); once verified the
-- name is the project's alone: at most one verified row per name.

CREATE TABLE domains (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id),
    name TEXT NOT NULL,
    token TEXT NOT NULL,
    previews BOOLEAN NOT NULL DEFAULT FALSE,
    redirect_to TEXT,
    verified_at_ms BIGINT,
    last_error TEXT,
    last_checked_ms BIGINT,
    created_at_ms BIGINT NOT NULL,
    UNIQUE (project_id, name)
);

CREATE UNIQUE INDEX domains_verified_once ON domains (name) WHERE verified_at_ms IS NOT NULL;
CREATE INDEX domains_by_name ON domains (name);
