-- Cloud log deliveries (Firehose, Pub/Sub push) bring stderr lines, not entries: a line that may belong
-- to an unfinished entry waits here, committed before its delivery is acknowledged, until its entry is
-- complete (canary/postgres/staging.py; SQL in canary/store/log_staging.py). Several listeners share
-- these tables: a group row is claimed FOR UPDATE SKIP LOCKED by whoever processes it.
CREATE TABLE log_staging_groups (
    source    text        NOT NULL,            -- the component: firehose | pubsub
    stream    text        NOT NULL,            -- its stream: log group and log stream, or database_id
    entry     text        NOT NULL,            -- the backend pid (prefix with %p and %l), '' (stream order)
    first_at  timestamptz NOT NULL,            -- the oldest waiting line arrived (store clock)
    last_at   timestamptz NOT NULL,            -- the newest arrived
    PRIMARY KEY (source, stream, entry)
);
CREATE INDEX log_staging_groups_due ON log_staging_groups (source, last_at);

CREATE TABLE log_staging_lines (
    id          bigserial   PRIMARY KEY,
    source      text        NOT NULL,
    stream      text        NOT NULL,
    entry       text        NOT NULL,
    line_id     text        NOT NULL,          -- event id and place, or pid, %l and a digest of the text
    ord         text COLLATE "C" NOT NULL,     -- order in its entry: %l, else the delivery's time and id
    kind        text        NOT NULL,          -- primary | DETAIL | HINT | ... | cont | broken
    line_num    bigint,                        -- %l
    text        text,                          -- NULL once processed or dropped (kept as a tombstone)
    event_time  text,                          -- the delivery's time for the line (jsonlog style)
    received_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    done_at     timestamptz,
    UNIQUE (source, stream, line_id)
);
CREATE INDEX log_staging_lines_waiting ON log_staging_lines (source, stream, entry, ord) WHERE done_at IS NULL;
CREATE INDEX log_staging_lines_done ON log_staging_lines (done_at) WHERE done_at IS NOT NULL;
