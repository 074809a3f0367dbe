-- coverage: the copy sweep's state per relation (canary/health/sweep.py owns this table; the round-robin
-- position lives in checkpoints as 'sweep:<datastore>'). One row per relation with text columns in
-- each database of a datastore, keyed by oid; reset when the relation's file node changes (a new
-- copy, REFRESH MATERIALIZED VIEW, TRUNCATE and reload, VACUUM FULL).
CREATE TABLE sweep_relations (
    datastore   text        NOT NULL,
    database    text        NOT NULL,
    oid         bigint      NOT NULL,
    filenode    bigint      NOT NULL,
    schema_name text        NOT NULL,              -- names when last listed (display only)
    rel_name    text        NOT NULL,
    first_seen  timestamptz NOT NULL DEFAULT now(),  -- of this file node, by the sweep
    appeared    boolean     NOT NULL DEFAULT false,  -- this file node appeared after the datastore's first listing
    scanned_to  bigint      NOT NULL DEFAULT 0,      -- blocks [0, scanned_to) of this file node were scanned
    completed   boolean     NOT NULL DEFAULT false,  -- scanned to its end at least once (later blocks are new data)
    scanned_at  timestamptz,
    problem     text,                                -- why the last attempt failed (permission_denied, locked, ...)
    PRIMARY KEY (datastore, database, oid)
);
