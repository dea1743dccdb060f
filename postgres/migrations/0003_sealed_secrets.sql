-- Secrets sealed under the master key beside the signing keys: the refresh
-- tokens' MAC key, which keygate derived from the master key before, so
-- that keygate master-key rotate can re-seal it and every refresh token
-- keeps working. A database already in use (it holds API keys or signing
-- keys, so refresh tokens may be out) gets a placeholder, an empty seal:
-- its first start stores the key the master key derives, sealed. A fresh
-- database gets none: its first start stores a random key.
CREATE TABLE sealed_secrets (
    name       text PRIMARY KEY,
    sealed     bytea NOT NULL,
    created_at bigint NOT NULL
);

INSERT INTO sealed_secrets (name, sealed, created_at)
SELECT 'refresh-token-mac', ''::bytea, (extract(epoch FROM now()) * 1000)::bigint
WHERE EXISTS (SELECT 1 FROM api_keys) OR EXISTS (SELECT 1 FROM signing_keys);
