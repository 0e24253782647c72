-- Environment variables per project, scoped to an environment
-- (`production`, `preview`, `development` or a custom name) and optionally
-- a branch ('' for none). A secret's value is sealed under the project's
-- data key; the data key is stored wrapped by the server's master key
-- (named by its id, so a rotation can tell which wraps what).

CREATE TABLE project_keys (
    project_id TEXT PRIMARY KEY REFERENCES projects (id),
    wrapped TEXT NOT NULL,
    master_key_id TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE env_vars (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL REFERENCES projects (id),
    name TEXT NOT NULL,
    environment TEXT NOT NULL,
    branch TEXT NOT NULL DEFAULT '',
    secret BOOLEAN NOT NULL,
    value TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    UNIQUE (project_id, name, environment, branch)
);
