-- The partner's edge certificate as submitted with its FPA (PEM), checked
-- against the trust bundle at intake, with its expiry for the console's
-- warnings. One row per partner: a new submission replaces the old one.
CREATE TABLE partner_certs (
    partner_id   TEXT PRIMARY KEY REFERENCES partners (id),
    pem          TEXT NOT NULL,
    not_after    TEXT NOT NULL,
    subject      TEXT NOT NULL,
    names        TEXT NOT NULL,
    submitted_at TEXT NOT NULL,
    submitted_by TEXT NOT NULL
);
