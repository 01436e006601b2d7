-- Topology-hiding keys (D69-D70). The newest seals new Route/Contact
-- tokens; an older one still opens the tokens it sealed until retire_at
-- (the grace period after a rotation), then it is deleted. The secret
-- never leaves the database except into a running edge's memory.
CREATE TABLE topology_keys (
    id         BIGINT PRIMARY KEY,
    secret     TEXT NOT NULL,
    created_at TEXT NOT NULL,
    retire_at  TEXT
);

-- Every key created, rotated in or retired, appended and never edited
-- (like partner_audit). Never holds a secret.
CREATE TABLE key_audit (
    id     TEXT PRIMARY KEY,
    at     TEXT NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    key_id BIGINT NOT NULL,
    detail TEXT
);
