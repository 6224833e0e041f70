-- Where each poller left off (a repository's workflow runs as last seen, as JSON), so a
-- restarted controller does not read every run's jobs again when nothing changed.
CREATE TABLE cursors (
    name       TEXT   PRIMARY KEY,
    value      TEXT   NOT NULL,
    updated_at BIGINT NOT NULL
);

-- A poll asks what the store knows of the runs whose lists changed.
CREATE INDEX jobs_by_run ON jobs (forge, scope, run_id);
