-- mayfly's state on SQLite. Times are milliseconds since the Unix epoch; labels and machine
-- specs are JSON text. Keep in step with ../postgres/ (same tables, columns and meaning).

-- One row per forge job; (forge, scope, job_id) is the job key.
CREATE TABLE jobs (
    forge       TEXT    NOT NULL,
    scope       TEXT    NOT NULL,
    job_id      INTEGER NOT NULL,
    run_id      INTEGER,
    attempt     INTEGER NOT NULL,
    labels      TEXT    NOT NULL,
    status      TEXT    NOT NULL CHECK (status IN ('queued', 'in_progress', 'completed')),
    queued_at   INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    runner_name TEXT,
    workflow    TEXT,
    PRIMARY KEY (forge, scope, job_id)
);
CREATE INDEX jobs_by_status ON jobs (status, queued_at);

-- Webhook deliveries seen, so a redelivered webhook changes nothing.
CREATE TABLE deliveries (
    delivery_id TEXT    PRIMARY KEY,
    forge       TEXT    NOT NULL,
    scope       TEXT    NOT NULL,
    job_id      INTEGER NOT NULL,
    received_at INTEGER NOT NULL
);
CREATE INDEX deliveries_by_job ON deliveries (forge, scope, job_id);

-- An instance intent, written before its create; the name is the idempotency key.
CREATE TABLE intents (
    name        TEXT    PRIMARY KEY,
    pool        TEXT    NOT NULL,
    provider    TEXT    NOT NULL,
    job_forge   TEXT,
    job_scope   TEXT,
    job_id      INTEGER,
    attempt     INTEGER NOT NULL,
    run_id      INTEGER,
    labels      TEXT    NOT NULL,
    spec        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('pending', 'created', 'failed', 'deleted')),
    provider_id TEXT,
    updated_at  INTEGER NOT NULL,
    CHECK ((job_forge IS NULL) = (job_scope IS NULL) AND (job_scope IS NULL) = (job_id IS NULL))
);
CREATE INDEX intents_by_state ON intents (state);

-- Intents ever recorded per job attempt; unlike a count of intents it survives their removal.
CREATE TABLE intent_counts (
    forge    TEXT    NOT NULL,
    scope    TEXT    NOT NULL,
    job_id   INTEGER NOT NULL,
    attempt  INTEGER NOT NULL,
    recorded INTEGER NOT NULL,
    PRIMARY KEY (job_id, forge, scope, attempt)
);

-- The audit trail. AUTOINCREMENT: ids are never reused after pruning, so they page safely.
CREATE TABLE events (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    kind    TEXT    NOT NULL,
    subject TEXT    NOT NULL,
    message TEXT    NOT NULL,
    details TEXT
);
CREATE INDEX events_by_at ON events (at);
