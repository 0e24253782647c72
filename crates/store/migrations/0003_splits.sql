-- Traffic splits: while a project has rows here, its production hostname
-- divides visitors between these deployments by weight (percent).
CREATE TABLE splits (
    project_id TEXT NOT NULL REFERENCES projects (id),
    deployment_id TEXT NOT NULL REFERENCES deployments (id),
    weight BIGINT NOT NULL CHECK (weight >= 0 AND weight <= 100),
    PRIMARY KEY (project_id, deployment_id)
);
