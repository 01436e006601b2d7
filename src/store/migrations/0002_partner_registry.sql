-- The partner registry: partners, their SIP domains, the append-only audit
-- trail, and the version counter the running edge watches. Portable SQL for
-- SQLite and PostgreSQL; timestamps are RFC 3339 UTC text.
CREATE TABLE partners (
    id              TEXT PRIMARY KEY,
    org_name        TEXT NOT NULL,
    org_reg_number  TEXT,
    org_address     TEXT,
    edge_fqdn       TEXT,
    address         TEXT,
    usage_statement TEXT,
    spoc_name       TEXT,
    spoc_email      TEXT,
    spoc_phone      TEXT,
    tech_name       TEXT,
    tech_email      TEXT,
    tech_phone      TEXT,
    tech_sip        TEXT,
    ig_level        TEXT,
    ig_expires      TEXT,
    comment         TEXT,
    state           TEXT NOT NULL,
    requested_at    TEXT NOT NULL,
    federated_at    TEXT,
    suspended_at    TEXT,
    revoked_at      TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE INDEX partners_edge_fqdn ON partners (edge_fqdn);

-- A domain belongs to one live partner at most; a revoked partner's domains
-- are released (released_at set) so the organisation can apply again.
CREATE TABLE partner_domains (
    partner_id  TEXT NOT NULL REFERENCES partners (id),
    domain      TEXT NOT NULL,
    pos         INTEGER NOT NULL,
    released_at TEXT
);
CREATE UNIQUE INDEX partner_domains_claimed ON partner_domains (domain) WHERE released_at IS NULL;
CREATE INDEX partner_domains_partner ON partner_domains (partner_id);

-- Every change to a partner, appended and never edited.
CREATE TABLE partner_audit (
    id         TEXT PRIMARY KEY,
    partner_id TEXT NOT NULL REFERENCES partners (id),
    seq        BIGINT NOT NULL,
    at         TEXT NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    from_state TEXT,
    to_state   TEXT NOT NULL,
    reason     TEXT,
    detail     TEXT,
    UNIQUE (partner_id, seq)
);

-- Bumped by every registry change; running edges reload when it moves.
CREATE TABLE registry_version (
    id      INTEGER PRIMARY KEY,
    version BIGINT NOT NULL
);
INSERT INTO registry_version (id, version) VALUES (1, 0);
