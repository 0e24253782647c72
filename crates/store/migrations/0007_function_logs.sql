-- What functions printed, stored so it outlives the server that ran them
-- and every server sharing the database can read and follow it. Ids are
-- ULIDs (time-ordered): a reader continues after the last id it saw.

CREATE TABLE function_logs (
    id TEXT PRIMARY KEY,
    project TEXT NOT NULL,
    deployment_id TEXT NOT NULL,
    function TEXT NOT NULL,
    request_id TEXT NOT NULL,
    stream TEXT NOT NULL,
    line TEXT NOT NULL,
    at_ms BIGINT NOT NULL
);

CREATE INDEX function_logs_by_project ON function_logs (project, id);
