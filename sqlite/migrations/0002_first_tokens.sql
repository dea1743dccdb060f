-- Logins write nothing: a login's refresh token (generation 0) is
-- self-contained, and its family's row is written by the first refresh or
-- by a logout (then at generation 0, revoked). So generation may be 0, and
-- the row records when the generation-0 token expires: housekeeping keeps
-- a revoked family's row until then, so that token can never start the
-- family again. SQLite cannot change a CHECK in place: the table is
-- rebuilt (nothing references it).

CREATE TABLE refresh_families_v2 (
    id                TEXT PRIMARY KEY,
    key_id            TEXT NOT NULL REFERENCES api_keys (id),
    kind              TEXT NOT NULL CHECK (kind IN ('partner', 'company')),
    principal_id      TEXT NOT NULL,
    partner_id        TEXT NOT NULL,
    company_id        TEXT,
    created_at        INTEGER NOT NULL,
    generation        INTEGER NOT NULL CHECK (generation >= 0),
    rotated_at        INTEGER NOT NULL,
    expires_at        INTEGER NOT NULL,
    parent_expires_at INTEGER,
    first_expires_at  INTEGER, -- NULL for families whose login wrote the row
    revoked_at        INTEGER,
    revoke_reason     TEXT
) STRICT;

INSERT INTO refresh_families_v2
    (id, key_id, kind, principal_id, partner_id, company_id, created_at, generation,
     rotated_at, expires_at, parent_expires_at, revoked_at, revoke_reason)
SELECT id, key_id, kind, principal_id, partner_id, company_id, created_at, generation,
     rotated_at, expires_at, parent_expires_at, revoked_at, revoke_reason
FROM refresh_families;

DROP TABLE refresh_families;
ALTER TABLE refresh_families_v2 RENAME TO refresh_families;

CREATE INDEX refresh_families_expiry ON refresh_families (expires_at);
CREATE INDEX refresh_families_revoked ON refresh_families (revoked_at) WHERE revoked_at IS NOT NULL;

-- Moves with every revocation of a key and every disabling of a partner or
-- company, in the same transaction, whoever makes it: a process caching
-- resolved keys compares it to learn of other processes' changes.
CREATE TABLE key_epoch (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    epoch INTEGER NOT NULL
) STRICT;

INSERT INTO key_epoch (id, epoch) VALUES (1, 0);
