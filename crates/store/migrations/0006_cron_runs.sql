-- One row per schedule and minute it fired for: the row is the lease.
-- The server whose insert lands runs it; every other server, seeing the
-- key taken, does not (crons fire once per cluster).

CREATE TABLE cron_runs (
    project TEXT NOT NULL,
    name TEXT NOT NULL,
    slot_ms BIGINT NOT NULL,
    deployment_id TEXT NOT NULL,
    started_at_ms BIGINT NOT NULL,
    finished_at_ms BIGINT,
    status TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (project, name, slot_ms)
);
