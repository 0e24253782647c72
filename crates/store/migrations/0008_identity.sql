-- Identity: organisations own projects; users belong to organisations
-- through memberships (a role, optionally narrowed to one project); a token
-- acts for one user in one organisation, with a role, scope and lifetime
-- of its own. Tokens made before this migration are the bootstrap admin's.

CREATE TABLE orgs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at_ms BIGINT NOT NULL
);

CREATE TABLE users (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    created_at_ms BIGINT NOT NULL
);

INSERT INTO orgs (id, name, created_at_ms) VALUES ('default', 'default', 0);
INSERT INTO users (id, name, created_at_ms) VALUES ('admin', 'admin', 0);

-- Every project so far is the default organisation's. (SQLite cannot add
-- a column with both a REFERENCES clause and a default; the application
-- only ever writes ids of existing organisations.)
ALTER TABLE projects ADD COLUMN org_id TEXT NOT NULL DEFAULT 'default';
CREATE INDEX projects_by_org ON projects (org_id);

CREATE TABLE memberships (
    id TEXT PRIMARY KEY,
    org_id TEXT NOT NULL REFERENCES orgs (id),
    user_id TEXT NOT NULL REFERENCES users (id),
    role TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'developer', 'viewer')),
    -- NULL: the whole organisation.
    project_id TEXT REFERENCES projects (id),
    created_at_ms BIGINT NOT NULL
);

CREATE UNIQUE INDEX memberships_once ON memberships (org_id, user_id, COALESCE(project_id, ''));

INSERT INTO memberships (id, org_id, user_id, role, project_id, created_at_ms)
    VALUES ('bootstrap', 'default', 'admin', 'owner', NULL, 0);

ALTER TABLE api_tokens ADD COLUMN user_id TEXT NOT NULL DEFAULT 'admin';
ALTER TABLE api_tokens ADD COLUMN org_id TEXT NOT NULL DEFAULT 'default';
ALTER TABLE api_tokens ADD COLUMN role TEXT NOT NULL DEFAULT 'owner';
ALTER TABLE api_tokens ADD COLUMN project_id TEXT;
ALTER TABLE api_tokens ADD COLUMN read_only BOOLEAN NOT NULL DEFAULT FALSE;
-- The bootstrap token acts in every organisation.
ALTER TABLE api_tokens ADD COLUMN server_admin BOOLEAN NOT NULL DEFAULT FALSE;
-- A build worker's token: it may create one deployment of its build's
-- project, and then upload to and finalize only that one.
ALTER TABLE api_tokens ADD COLUMN build_id TEXT;
ALTER TABLE api_tokens ADD COLUMN deployment_id TEXT;
ALTER TABLE api_tokens ADD COLUMN expires_at_ms BIGINT;
ALTER TABLE api_tokens ADD COLUMN last_used_at_ms BIGINT;
ALTER TABLE api_tokens ADD COLUMN revoked_at_ms BIGINT;

UPDATE api_tokens SET server_admin = TRUE;

CREATE INDEX api_tokens_by_org ON api_tokens (org_id, user_id);
CREATE INDEX api_tokens_by_build ON api_tokens (build_id);
