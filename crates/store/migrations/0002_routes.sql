-- Routing: what a deploy asked for (config file digests, compat, strict)
-- while it uploads, and the compile report once it is ready.
ALTER TABLE deployments ADD COLUMN options_json TEXT NOT NULL DEFAULT '{}';
ALTER TABLE deployments ADD COLUMN routes_json TEXT NOT NULL DEFAULT '';
