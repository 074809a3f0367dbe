-- The event feed (canary/feed.py): SIEM sinks take every committed event in (txid, id) order.
-- An event's txid is the id of the transaction that inserted it. Every transaction below the oldest one
-- still running (pg_snapshot_xmin) has ended, so the feed never passes an event that commits later.
-- Events stored before this migration have no txid and are not fed.
ALTER TABLE events ADD COLUMN txid xid8;
ALTER TABLE events ALTER COLUMN txid SET DEFAULT pg_current_xact_id();
CREATE INDEX events_feed ON events (txid, id) WHERE txid IS NOT NULL;

-- Where each sink's feed stands: the last (txid, id) it delivered (or skipped), its failures.
CREATE TABLE feed_cursors (
    sink            text PRIMARY KEY,
    txid            xid8        NOT NULL,
    id              bigint      NOT NULL,
    delivered       bigint      NOT NULL DEFAULT 0,
    failing_since   timestamptz,
    last_error      text,
    updated_at      timestamptz NOT NULL DEFAULT clock_timestamp()
);

-- Events a sink refused for good while it accepted others (a poison event): recorded, never resent.
CREATE TABLE feed_dead (
    id          bigserial PRIMARY KEY,
    sink        text        NOT NULL,
    event_id    bigint      NOT NULL,
    error       text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX feed_dead_sink ON feed_dead (sink, created_at);
