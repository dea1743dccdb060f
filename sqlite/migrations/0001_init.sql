-- Times are Unix milliseconds (UTC). Secrets are never stored: API keys as
-- SHA-256 digests, refresh tokens not at all (see tokens/refreshtoken.go),
-- signing keys sealed under a master key kept outside the database.

CREATE TABLE partners (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('active', 'disabled')),
    created_at  INTEGER NOT NULL,
    disabled_at INTEGER
) STRICT;

CREATE TABLE companies (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT, -- listing order; never reused
    id          TEXT NOT NULL UNIQUE,
    partner_id  TEXT NOT NULL REFERENCES partners (id),
    name        TEXT NOT NULL,
    external_id TEXT,
    status      TEXT NOT NULL CHECK (status IN ('active', 'disabled')),
    created_at  INTEGER NOT NULL,
    disabled_at INTEGER,
    UNIQUE (partner_id, external_id)
) STRICT;

CREATE INDEX companies_partner ON companies (partner_id, seq);

CREATE TABLE api_keys (
    id           TEXT PRIMARY KEY,
    digest       BLOB NOT NULL UNIQUE,
    hint         TEXT NOT NULL,
    partner_id   TEXT NOT NULL REFERENCES partners (id),
    company_id   TEXT REFERENCES companies (id),
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER,
    revoked_at   INTEGER
) STRICT;

CREATE INDEX api_keys_owner ON api_keys (partner_id, company_id);

-- One row per login. The row is the family's only live token: its
-- generation. A refresh is a conditional update of that generation, so two
-- live tokens in one family cannot exist by construction. Ids are
-- time-ordered, so logins append to the right edge of the primary key; no
-- index on key_id: a refresh joins the key and its owners instead, and
-- revoking a key needs no write here.
CREATE TABLE refresh_families (
    id                TEXT PRIMARY KEY,
    key_id            TEXT NOT NULL REFERENCES api_keys (id),
    kind              TEXT NOT NULL CHECK (kind IN ('partner', 'company')),
    principal_id      TEXT NOT NULL,
    partner_id        TEXT NOT NULL,
    company_id        TEXT,
    created_at        INTEGER NOT NULL,
    generation        INTEGER NOT NULL CHECK (generation >= 1),
    rotated_at        INTEGER NOT NULL,
    expires_at        INTEGER NOT NULL,
    parent_expires_at INTEGER,
    revoked_at        INTEGER,
    revoke_reason     TEXT
) STRICT;

CREATE INDEX refresh_families_expiry ON refresh_families (expires_at);
CREATE INDEX refresh_families_revoked ON refresh_families (revoked_at) WHERE revoked_at IS NOT NULL;

CREATE TABLE signing_keys (
    kid          TEXT PRIMARY KEY,
    algorithm    TEXT NOT NULL,
    sealed       BLOB NOT NULL,
    created_at   INTEGER NOT NULL,
    activates_at INTEGER NOT NULL
) STRICT;

CREATE TABLE audit_events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    actor_type  TEXT NOT NULL,
    actor_id    TEXT NOT NULL,
    action      TEXT NOT NULL,
    target_type TEXT NOT NULL,
    target      TEXT NOT NULL,
    addr        TEXT NOT NULL,
    outcome     TEXT NOT NULL,
    detail      TEXT NOT NULL
) STRICT;

CREATE INDEX audit_events_at ON audit_events (at);

-- A one-row table that /ready writes to while the database is failing, to
-- learn when writes work again.
CREATE TABLE health (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at INTEGER NOT NULL
) STRICT;
