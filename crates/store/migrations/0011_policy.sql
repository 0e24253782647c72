-- Policy: one Rego module per organisation, versioned so every server
-- recompiles when another one changes it. And what a deployment came
-- from, for the policy's input: branch, commit, source (`api` or `git`),
-- deploy context.

CREATE TABLE policies (
    org_id TEXT PRIMARY KEY REFERENCES orgs (id),
    source TEXT NOT NULL,
    version BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    updated_by TEXT NOT NULL
);

ALTER TABLE deployments ADD COLUMN branch TEXT;
ALTER TABLE deployments ADD COLUMN commit_sha TEXT;
ALTER TABLE deployments ADD COLUMN source TEXT NOT NULL DEFAULT 'api';
ALTER TABLE deployments ADD COLUMN context TEXT;
