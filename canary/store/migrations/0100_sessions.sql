-- the console (issue 17, part 2): browser sessions made from an API token (only a hash of the cookie
-- is stored), and the index "what else did this role do" reads on a year of incidents.

CREATE TABLE browser_sessions (
    hash         bytea       PRIMARY KEY,            -- SHA-256 of the cookie value, never the value
    token_id     text        NOT NULL REFERENCES api_tokens (id) ON DELETE CASCADE,
    client       text,                               -- where it was signed in from
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    last_seen_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    expires_at   timestamptz NOT NULL                -- absolute end (never after the token's)
);
CREATE INDEX browser_sessions_token ON browser_sessions (token_id);
CREATE INDEX browser_sessions_expires ON browser_sessions (expires_at);

-- other incidents of the same actor, newest first (the incident page)
CREATE INDEX incidents_actor_page ON incidents ((coalesce(actor->>'role', actor->>'user')), created_at DESC, id DESC);
