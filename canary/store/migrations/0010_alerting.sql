-- alerting: routing decided by rules, who acknowledged/resolved, and indexes for the alerts CLI.

-- Sinks chosen by a 'route' rule for this incident (NULL: the default routing).
ALTER TABLE incidents ADD COLUMN route text[];
ALTER TABLE incidents ADD COLUMN acknowledged_by text;
ALTER TABLE incidents ADD COLUMN resolved_by text;
ALTER TABLE incidents ADD COLUMN note text;

CREATE INDEX incidents_created ON incidents (created_at DESC);
CREATE INDEX outbox_incident ON outbox (incident_id, sink, sequence) WHERE status = 'pending';
CREATE INDEX outbox_dead ON outbox (id) WHERE status = 'dead';
