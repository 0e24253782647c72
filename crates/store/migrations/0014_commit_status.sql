-- Commit statuses: where a linked project's git host takes them (an API
-- base URL for a self-hosted host; NULL: the provider's public API), and
-- what the last status posted for a build got back.

ALTER TABLE project_links ADD COLUMN status_api TEXT;
ALTER TABLE builds ADD COLUMN commit_status TEXT;
