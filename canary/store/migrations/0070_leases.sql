-- Cluster leases: work that must run once per cluster, not once per listener process (the scheduled
-- coverage checks, the heartbeat, retention), is done by whoever holds the lease. Times are the control
-- store's own clock, so listeners on hosts with skewed clocks agree on who holds it.
CREATE TABLE leases (
    name        text PRIMARY KEY,
    holder      text        NOT NULL,            -- host:pid:random of the listener process
    expires_at  timestamptz NOT NULL,
    acquired_at timestamptz NOT NULL
);
