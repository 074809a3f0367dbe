-- canary's own datastore sessions (seeder, verify, coverage audit): their reads and DDL are recorded
-- as suppressed incidents instead of paging (canary/store/sessions.py). Keyed by what the server
-- sets on every log line (pid, session id), never by an application name a client chooses.
CREATE TABLE own_sessions (
    id bigserial PRIMARY KEY,
    datastore text NOT NULL,
    pid integer NOT NULL,
    session_id text NOT NULL,
    purpose text NOT NULL,
    opened_at timestamptz NOT NULL DEFAULT now(),
    closed_at timestamptz
);
CREATE INDEX own_sessions_pid ON own_sessions (datastore, pid);
