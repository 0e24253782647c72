-- Git-driven builds: a project's link to its repository, the builds (which
-- are also the durable job queue of the embedded bus: a worker claims a
-- queued build by taking a lease, and a lease that runs out puts the build
-- back within reach), their logs, the webhook deliveries already seen, and
-- the aliases (branch and pull request previews) that point at deployments.

CREATE TABLE project_links (
    project_id TEXT PRIMARY KEY REFERENCES projects (id),
    repo_url TEXT NOT NULL,
    -- host/path, lowercase, without scheme, user, port or .git: the same
    -- for every URL form a provider sends (clone, SSH, web).
    repo_key TEXT NOT NULL,
    production_branch TEXT NOT NULL,
    webhook_secret TEXT NOT NULL,
    -- A token or deploy key sealed with the server's secret key.
    git_credential_sealed TEXT,
    created_at_ms BIGINT NOT NULL
);

CREATE INDEX project_links_by_repo ON project_links (repo_key);

CREATE TABLE builds (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id),
    state TEXT NOT NULL CHECK (state IN ('queued', 'building', 'ready', 'error', 'canceled')),
    trigger TEXT NOT NULL,
    branch TEXT NOT NULL,
    commit_sha TEXT,
    -- What a newer build of the same thing cancels: "branch:<name>" or "pr:<n>".
    supersede_key TEXT NOT NULL,
    context_json TEXT NOT NULL,
    job_json TEXT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    lease_until_ms BIGINT,
    deployment_id TEXT,
    detected TEXT,
    error TEXT,
    failed_step TEXT,
    exit_status BIGINT,
    log_lines BIGINT NOT NULL DEFAULT 0,
    log_bytes BIGINT NOT NULL DEFAULT 0,
    log_truncated BOOLEAN NOT NULL DEFAULT FALSE,
    created_at_ms BIGINT NOT NULL,
    started_at_ms BIGINT,
    finished_at_ms BIGINT
);

CREATE INDEX builds_by_project ON builds (project_id, created_at_ms);
CREATE INDEX builds_by_state ON builds (state, created_at_ms);

CREATE TABLE build_logs (
    build_id TEXT NOT NULL REFERENCES builds (id),
    seq BIGINT NOT NULL,
    at_ms BIGINT NOT NULL,
    line TEXT NOT NULL,
    PRIMARY KEY (build_id, seq)
);

CREATE TABLE webhook_deliveries (
    provider TEXT NOT NULL,
    delivery_id TEXT NOT NULL,
    -- JSON array of the build ids this delivery queued.
    builds_json TEXT NOT NULL,
    at_ms BIGINT NOT NULL,
    PRIMARY KEY (provider, delivery_id)
);

CREATE TABLE aliases (
    project_id TEXT NOT NULL REFERENCES projects (id),
    alias TEXT NOT NULL,
    deployment_id TEXT NOT NULL REFERENCES deployments (id),
    PRIMARY KEY (project_id, alias)
);
