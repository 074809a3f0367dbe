-- Presented credentials (token, AWS key id / secret) of retired canaries: retiring deletes a canary's
-- values from canary_values (contact points go back to their pools), but a retired credential that is
-- presented again (at the gateway check, canary/credentials/gateway.py) is still a signal. Kept the way
-- canary_values keeps them (AES-GCM + HMAC blind index) so a key rotation re-encrypts and re-indexes them.
-- Owned by canary/store/registry.py.

CREATE TABLE retired_values (
    id         bigserial PRIMARY KEY,
    canary_id  bigint NOT NULL REFERENCES canaries (id) ON DELETE CASCADE,
    kind       text   NOT NULL,
    value_enc  bytea  NOT NULL,
    value_idx  bytea  NOT NULL,
    key_id     text   NOT NULL
);
CREATE INDEX retired_values_idx ON retired_values (kind, value_idx);
CREATE INDEX retired_values_canary ON retired_values (canary_id);
