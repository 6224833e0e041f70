-- The dashboard's over-time figures: one row a minute, written by the pass that ends the
-- minute's view, so a restarted or newly elected controller shows the hours before it.
-- Keep in step with ../sqlite/.
CREATE TABLE samples (
    minute         BIGINT PRIMARY KEY,
    wait_max_secs  BIGINT NOT NULL,
    queued         BIGINT NOT NULL,
    starting       BIGINT NOT NULL,
    busy           BIGINT NOT NULL,
    idle           BIGINT NOT NULL,
    powered_off    BIGINT NOT NULL,
    leaving        BIGINT NOT NULL,
    -- Millionths of the providers' currency per hour: the store speaks integers on both sides.
    cost_per_hour_micros BIGINT NOT NULL,
    served         BIGINT NOT NULL
);
