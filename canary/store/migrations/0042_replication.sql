-- replication and decoding paths (issue 13): what the replication watch saw on each datastore's primary
-- last time (slots, publications, subscriptions, WAL senders). Only what appears after the first look
-- (the baseline) is an event; standbys whose log is not ingested are a gap whenever they are seen.
CREATE TABLE replication_seen (
    datastore  text        NOT NULL,
    kind       text        NOT NULL,              -- slot | publication | subscription | walsender
    name       text        NOT NULL,
    details    jsonb       NOT NULL DEFAULT '{}',
    first_seen timestamptz NOT NULL DEFAULT now(),
    last_seen  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (datastore, kind, name)
);

CREATE TABLE replication_baseline (
    datastore text PRIMARY KEY,
    taken_at  timestamptz NOT NULL DEFAULT now()
);
