-- The dashboard's over-time figures: one row a minute, written by the pass that ends the
-- minute's view, so a restarted or newly elected controller shows the hours before it.
-- Keep in step with ../postgres/.
CREATE TABLE samples (
    minute         INTEGER PRIMARY KEY,
    wait_max_secs  INTEGER NOT NULL,
    queued         INTEGER NOT NULL,
    starting       INTEGER NOT NULL,
    busy           INTEGER NOT NULL,
    idle           INTEGER NOT NULL,
    powered_off    INTEGER NOT NULL,
    leaving        INTEGER NOT NULL,
    -- Millionths of the providers' currency per hour: the store speaks integers on both sides.
    cost_per_hour_micros INTEGER NOT NULL,
    served         INTEGER NOT NULL
);
