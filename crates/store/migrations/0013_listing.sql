-- A page of a project's ready deployments, newest first, straight from an
-- index (no sort of every row).
CREATE INDEX deployments_ready_by_project ON deployments (project_id, state, created_at_ms, id);
