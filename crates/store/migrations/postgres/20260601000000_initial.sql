-- mayfly's state on PostgreSQL. Times are milliseconds since the Unix epoch; labels and machine
-- specs are JSON text (sqlx's Any driver reads no JSONB). Keys collate as "C" so that ordering
-- matches SQLite byte for byte. Keep in step with ../sqlite/.

-- One row per forge job; (forge, scope, job_id) is the job key.
CREATE TABLE jobs (
    forge       TEXT COLLATE "C" NOT NULL,
    scope       TEXT COLLATE "C" NOT NULL,
    job_id      BIGINT NOT NULL,
    run_id      BIGINT,
    attempt     BIGINT NOT NULL,
    labels      TEXT   NOT NULL,
    status      TEXT   NOT NULL CHECK (status IN ('queued', 'in_progress', 'completed')),
    queued_at   BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL,
    runner_name TEXT,
    workflow    TEXT,
    PRIMARY KEY (forge, scope, job_id)
);
CREATE INDEX jobs_by_status ON jobs (status, queued_at);

-- Webhook deliveries seen, so a redelivered webhook changes nothing.
CREATE TABLE deliveries (
    delivery_id TEXT COLLATE "C" PRIMARY KEY,
    forge       TEXT COLLATE "C" NOT NULL,
    scope       TEXT COLLATE "C" NOT NULL,
    job_id      BIGINT NOT NULL,
    received_at BIGINT NOT NULL
);
CREATE INDEX deliveries_by_job ON deliveries (forge, scope, job_id);

-- An instance intent, written before its create; the name is the idempotency key.
CREATE TABLE intents (
    name        TEXT COLLATE "C" PRIMARY KEY,
    pool        TEXT   NOT NULL,
    provider    TEXT   NOT NULL,
    job_forge   TEXT COLLATE "C",
    job_scope   TEXT COLLATE "C",
    job_id      BIGINT,
    attempt     BIGINT NOT NULL,
    run_id      BIGINT,
    labels      TEXT   NOT NULL,
    spec        TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    state       TEXT   NOT NULL CHECK (state IN ('pending', 'created', 'failed', 'deleted')),
    provider_id TEXT,
    updated_at  BIGINT NOT NULL,
    CHECK ((job_forge IS NULL) = (job_scope IS NULL) AND (job_scope IS NULL) = (job_id IS NULL))
);
CREATE INDEX intents_by_state ON intents (state);

-- Intents ever recorded per job attempt; unlike a count of intents it survives their removal.
CREATE TABLE intent_counts (
    forge    TEXT COLLATE "C" NOT NULL,
    scope    TEXT COLLATE "C" NOT NULL,
    job_id   BIGINT NOT NULL,
    attempt  BIGINT NOT NULL,
    recorded BIGINT NOT NULL,
    PRIMARY KEY (job_id, forge, scope, attempt)
);

-- The audit trail; identity ids are never reused, so they page safely.
CREATE TABLE events (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      BIGINT NOT NULL,
    kind    TEXT   NOT NULL,
    subject TEXT   NOT NULL,
    message TEXT   NOT NULL,
    details TEXT
);
CREATE INDEX events_by_at ON events (at);
