-- Keys with scopes, names and expiry. A partner has a set of allowed
-- scopes; each key has its own set, a subset of its partner's when it was
-- made (a token gets key scopes that its partner still allows). Scope sets
-- are stored as space-separated, sorted lists ('' is the empty set).
-- A family records the scopes its login asked for when it down-scoped;
-- NULL: all of its key's scopes.
ALTER TABLE partners ADD COLUMN scopes text NOT NULL DEFAULT '';
ALTER TABLE api_keys ADD COLUMN scopes text NOT NULL DEFAULT '';
ALTER TABLE api_keys ADD COLUMN name text;
ALTER TABLE api_keys ADD COLUMN expires_at bigint;
ALTER TABLE refresh_families ADD COLUMN scopes text;
