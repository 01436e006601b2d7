-- CVI gateway: the organisers local administrators enrol, and the VTC
-- conference IDs of their meetings. Timestamps are RFC 3339 UTC text.
CREATE TABLE cvi_organisers (
    email        TEXT PRIMARY KEY,
    org_name     TEXT NOT NULL,
    ods_code     TEXT NOT NULL,
    enrolled_at  TEXT NOT NULL,
    enrolled_by  TEXT NOT NULL,
    withdrawn_at TEXT,
    withdrawn_by TEXT
);
CREATE TABLE cvi_meetings (
    conference_id TEXT PRIMARY KEY,
    organiser     TEXT NOT NULL REFERENCES cvi_organisers (email),
    subject       TEXT,
    created_at    TEXT NOT NULL,
    expires_at    TEXT
);
CREATE INDEX cvi_meetings_organiser ON cvi_meetings (organiser);
