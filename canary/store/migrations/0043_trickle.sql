-- trickle seeding (issue 14): canaries that arrive over days like new sign-ups. One row per planned
-- arrival, later update or later child rows (an order with its lines) of a canary, owned by
-- canary/seeding/trickle.py. A slot is 'inflight' from the control-store commit of its work until the
-- datastore has committed too; a resumed run settles inflight slots by looking at the datastore (rows
-- there: done; not there: withdrawn and pending).
CREATE TABLE trickle_slots (
    datastore     text        NOT NULL,
    target        text        NOT NULL,
    slot          integer     NOT NULL,
    kind          text        NOT NULL CHECK (kind IN ('signup', 'update', 'child')),
    part          integer,                                                   -- child: which group of the manifest's 'later' rows
    payload       bytea,                                                     -- signup: its row, made when scheduled (encrypted)
    due_at        timestamptz NOT NULL,
    state         text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'inflight', 'done', 'dropped')),
    canary_id     bigint      REFERENCES canaries (id) ON DELETE SET NULL,   -- signup: set when written; update: the canary
    deployment_id bigint,
    fingerprint   bytea,                                                     -- update: the row's fingerprint once written
    done_at       timestamptz,
    PRIMARY KEY (datastore, target, slot)
);
CREATE INDEX trickle_slots_due ON trickle_slots (datastore, state, due_at);
