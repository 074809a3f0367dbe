-- Contact detection: raw inbound messages kept as encrypted evidence, and a replay cache for
-- provider tokens/nonces shared by every listener.

CREATE TABLE contact_messages (
    id          bigserial PRIMARY KEY,
    source      text        NOT NULL,            -- smtp | sendgrid | mailgun | ses
    digest      bytea       NOT NULL UNIQUE,     -- sha256 of the raw message: a redelivery is stored once
    raw_enc     bytea       NOT NULL,            -- AES-GCM (purpose evidence:mail)
    size        integer     NOT NULL,
    key_id      text        NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE contact_replay (
    provider   text        NOT NULL,             -- mailgun | vonage
    token      text        NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (provider, token)
);
CREATE INDEX contact_replay_expiry ON contact_replay (expires_at);
