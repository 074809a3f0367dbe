-- the REST API (issue 17): tokens (hashed, never the token), the audit log of every state change and
-- reveal, incident notes, and the indexes its keyset pages need on a year of data.

CREATE TABLE api_tokens (
    id           text        PRIMARY KEY,            -- the public part of cy_api_<id>_<secret>
    name         text        NOT NULL,
    scopes       text[]      NOT NULL,
    secret_hash  bytea       NOT NULL,               -- SHA-256 of the whole token
    created_by   text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at   timestamptz NOT NULL,
    last_used_at timestamptz,
    revoked_at   timestamptz,
    CHECK (scopes <@ ARRAY['read', 'operate', 'admin', 'reveal']::text[] AND cardinality(scopes) > 0)
);

CREATE TABLE audit_log (
    id        bigserial   PRIMARY KEY,
    at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor     text        NOT NULL,                  -- token:<id> (<name>) | cli:<user>
    client    text,                                  -- the client address (behind trusted proxies)
    action    text        NOT NULL,                  -- incident.acknowledge, token.create, canary.reveal, ...
    target    text,                                  -- incident:12, token:ab12..., outbox:7
    details   jsonb       NOT NULL DEFAULT '{}'      -- never a secret value
);

CREATE TABLE incident_notes (
    id          bigserial   PRIMARY KEY,
    incident_id bigint      NOT NULL REFERENCES incidents (id),
    author      text        NOT NULL,
    body        text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX incident_notes_incident ON incident_notes (incident_id, id);

-- keyset pages of incidents, newest first, by (created_at, id), whole or by the usual filters
CREATE INDEX incidents_page ON incidents (created_at DESC, id DESC);
CREATE INDEX incidents_status_page ON incidents (status, created_at DESC, id DESC);
CREATE INDEX incidents_kind_page ON incidents (kind, created_at DESC, id DESC);
CREATE INDEX incidents_severity_page ON incidents (severity, created_at DESC, id DESC);
CREATE INDEX incidents_datastore_page ON incidents ((origin->>'datastore'), created_at DESC, id DESC);
CREATE INDEX incidents_drill_page ON incidents (created_at DESC, id DESC) WHERE drill IS NOT NULL;
-- an incident's events in pages by id (events_incident alone makes PostgreSQL sort every event of a big one)
CREATE INDEX events_incident_page ON events (incident_id, id);
CREATE INDEX outbox_sink_status ON outbox (sink, status);
