-- Accounts of the API and console, their API tokens and console sessions,
-- and the tamper-evident audit chain. Portable SQL for SQLite and
-- PostgreSQL; timestamps are RFC 3339 UTC text. No secret is stored in
-- clear: passwords as argon2id PHC strings, tokens and session ids as
-- SHA-256 hex of the random value the holder keeps.
CREATE TABLE accounts (
    name                 TEXT PRIMARY KEY,
    role                 TEXT NOT NULL,
    partner_id           TEXT REFERENCES partners (id),
    state                TEXT NOT NULL,
    password_hash        TEXT,
    must_change_password INTEGER NOT NULL,
    created_at           TEXT NOT NULL,
    created_by           TEXT NOT NULL,
    updated_at           TEXT NOT NULL
);
CREATE INDEX accounts_partner ON accounts (partner_id);

CREATE TABLE account_tokens (
    token_hash  TEXT PRIMARY KEY,
    account     TEXT NOT NULL REFERENCES accounts (name),
    label       TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT,
    revoked_at  TEXT
);
CREATE INDEX account_tokens_account ON account_tokens (account);

CREATE TABLE console_sessions (
    session_hash TEXT PRIMARY KEY,
    account      TEXT NOT NULL REFERENCES accounts (name),
    csrf         TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    expires_at   TEXT NOT NULL
);
CREATE INDEX console_sessions_account ON console_sessions (account);

-- Every partner, account and CVI change, in one chain: hash is SHA-256
-- over the previous entry's hash and this entry's fields (see
-- store/audit.rs for the exact encoding). seq has no gaps.
CREATE TABLE audit_chain (
    seq       BIGINT PRIMARY KEY,
    at        TEXT NOT NULL,
    actor     TEXT NOT NULL,
    kind      TEXT NOT NULL,
    subject   TEXT NOT NULL,
    action    TEXT NOT NULL,
    detail    TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
