-- Replicas, health and retention. Keep in step with ../sqlite/.

-- One row, rewritten by `Store::probe_write`: /readyz learns whether a write commits.
CREATE TABLE health (
    id     BIGINT PRIMARY KEY CHECK (id = 1),
    writes BIGINT NOT NULL
);
INSERT INTO health (id, writes) VALUES (1, 0);

-- Leases by name; `leader` is the one the reconcile loop runs under. Times are the database's
-- clock in milliseconds; `epoch` grows with every new holder and fences intent writes.
CREATE TABLE leases (
    name        TEXT COLLATE "C" PRIMARY KEY,
    holder      TEXT,
    epoch       BIGINT NOT NULL,
    acquired_at BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
INSERT INTO leases (name, holder, epoch, acquired_at, expires_at) VALUES ('leader', NULL, 0, 0, 0);

-- Retention reads by age; the event trail is also read by subject.
CREATE INDEX jobs_finished ON jobs (status, updated_at);
CREATE INDEX deliveries_by_age ON deliveries (received_at);
DROP INDEX intents_by_state;
CREATE INDEX intents_by_state ON intents (state, updated_at);
CREATE INDEX events_by_subject ON events (subject, id);
