-- canary control store: registry, events, incidents, durable outbox.
-- Values that reveal canaries are stored encrypted (AES-GCM, *_enc) and looked up by HMAC (*_idx).

CREATE TABLE deployments (
    id           bigserial PRIMARY KEY,
    datastore    text        NOT NULL,
    target       text        NOT NULL,            -- e.g. public.customers
    status       text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'retired')),
    manifest_enc bytea       NOT NULL,            -- every row and object written (encrypted JSON)
    key_id       text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    retired_at   timestamptz
);

CREATE TABLE canaries (
    id            bigserial PRIMARY KEY,
    uid           text        NOT NULL UNIQUE,     -- random public identifier, safe to print
    kind          text        NOT NULL,            -- customer | credential | contact | heartbeat
    datastore     text        NOT NULL,
    label         text        NOT NULL,            -- coarse, non-revealing: datastore/schema.table
    deployment_id bigint      REFERENCES deployments (id),
    location_enc  bytea       NOT NULL,            -- which row/object (encrypted JSON)
    location_idx  bytea       NOT NULL,            -- HMAC(datastore|schema.table|pk)
    fingerprint   bytea,                           -- HMAC of the row content as written
    status        text        NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'retired')),
    key_id        text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    retired_at    timestamptz
);
CREATE UNIQUE INDEX canaries_location_active ON canaries (location_idx) WHERE status = 'active';
CREATE INDEX canaries_datastore ON canaries (datastore, status);

-- Contact points and credentials of canaries: e-mail, phone, token, dsn, role...
CREATE TABLE canary_values (
    id         bigserial PRIMARY KEY,
    canary_id  bigint NOT NULL REFERENCES canaries (id) ON DELETE CASCADE,
    kind       text   NOT NULL,
    value_enc  bytea  NOT NULL,
    value_idx  bytea  NOT NULL,
    key_id     text   NOT NULL,
    UNIQUE (kind, value_idx)
);
CREATE INDEX canary_values_canary ON canary_values (canary_id);

-- Detection objects installed in datastores (policy, function, RLS state before install).
CREATE TABLE detection_objects (
    id          bigserial PRIMARY KEY,
    datastore   text        NOT NULL,
    target      text        NOT NULL,
    details     jsonb       NOT NULL,
    installed_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (datastore, target)
);

CREATE TABLE incidents (
    id           bigserial PRIMARY KEY,
    dedup_key    text        NOT NULL UNIQUE,
    group_key    text        NOT NULL,
    kind         text        NOT NULL,
    severity     text        NOT NULL,
    status       text        NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'acknowledged', 'resolved')),
    title        text        NOT NULL,
    source       text        NOT NULL,
    first_seen   timestamptz NOT NULL,
    last_seen    timestamptz NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    event_count  integer     NOT NULL DEFAULT 0,
    canary_ids   bigint[]    NOT NULL DEFAULT '{}',
    paged_level  integer     NOT NULL DEFAULT 0,   -- escalation thresholds already paged
    suppressed_by text,
    drill        text,
    actor        jsonb       NOT NULL DEFAULT '{}',
    origin       jsonb       NOT NULL DEFAULT '{}',
    evidence     jsonb       NOT NULL DEFAULT '{}',
    acknowledged_at timestamptz,
    resolved_at  timestamptz
);
CREATE INDEX incidents_open_group ON incidents (group_key, last_seen) WHERE status <> 'resolved';

CREATE TABLE events (
    id           bigserial PRIMARY KEY,
    key          text        NOT NULL UNIQUE,      -- idempotency: one signal is stored once
    kind         text        NOT NULL,
    source       text        NOT NULL,
    canary_id    bigint      REFERENCES canaries (id),
    group_key    text        NOT NULL,
    incident_id  bigint      REFERENCES incidents (id),
    severity     text        NOT NULL,
    observed_at  timestamptz NOT NULL,
    detected_at  timestamptz NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor        jsonb       NOT NULL DEFAULT '{}',
    origin       jsonb       NOT NULL DEFAULT '{}',
    evidence     jsonb       NOT NULL DEFAULT '{}',
    drill        text,
    suppressed_by text
);
CREATE INDEX events_incident ON events (incident_id);
CREATE INDEX events_recorded ON events (recorded_at);

-- Durable outbox: one row per (incident notification, sink). Claimed with FOR UPDATE SKIP LOCKED.
CREATE TABLE outbox (
    id             bigserial PRIMARY KEY,
    incident_id    bigint      NOT NULL REFERENCES incidents (id),
    sink           text        NOT NULL,
    sequence       integer     NOT NULL,           -- 0 = trigger, then updates / resolve
    action         text        NOT NULL,
    payload        jsonb       NOT NULL,
    status         text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts       integer     NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error     text,
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    first_attempt_at timestamptz,
    delivered_at   timestamptz,
    UNIQUE (incident_id, sink, sequence)
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE status = 'pending';

-- Log-tail checkpoints: a source resumes where it committed, so a crash re-reads (idempotently).
CREATE TABLE checkpoints (
    source     text PRIMARY KEY,
    position   jsonb       NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Everything a source could not parse or verify: counted and kept (truncated) for inspection.
CREATE TABLE rejects (
    id          bigserial PRIMARY KEY,
    source      text        NOT NULL,
    reason      text        NOT NULL,
    sample      text,
    received_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX rejects_received ON rejects (received_at);
