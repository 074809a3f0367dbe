-- drills (issue 8): every drill run, and the exact facts its traffic carries per step, so that
-- incidents are attributed to a drill by what only the drill runner knew in advance (a random run
-- id, per-run synthetic senders, message ids, bound source ports) within the step's time window.

CREATE TABLE drill_runs (
    id           text        PRIMARY KEY,           -- random, e.g. dr-3f9a0c1e2b7d
    playbook     text        NOT NULL,
    mode         text        NOT NULL CHECK (mode IN ('configured', 'demo')),
    status       text        NOT NULL DEFAULT 'running' CHECK (status IN ('running', 'passed', 'failed', 'error')),
    started_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at  timestamptz,
    steps_total  integer     NOT NULL DEFAULT 0,
    detected     integer     NOT NULL DEFAULT 0,
    missed       integer     NOT NULL DEFAULT 0,
    skipped      integer     NOT NULL DEFAULT 0,
    result       jsonb                               -- the JSON report (no canary values)
);
CREATE INDEX drill_runs_started ON drill_runs (started_at DESC);

CREATE TABLE drill_markers (
    id          bigserial   PRIMARY KEY,
    run_id      text        NOT NULL REFERENCES drill_runs (id) ON DELETE CASCADE,
    step        integer     NOT NULL,                -- 1-based step number in the playbook
    section     text        NOT NULL CHECK (section IN ('actor', 'origin', 'evidence', 'drill')),
    field       text        NOT NULL,
    value       text        NOT NULL,
    valid_from  timestamptz NOT NULL,
    valid_until timestamptz NOT NULL
);
CREATE INDEX drill_markers_value ON drill_markers (field, value);
CREATE INDEX drill_markers_run ON drill_markers (run_id, step);
