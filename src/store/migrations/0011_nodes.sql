-- The nodes sharing this database: each writes its heartbeat (Unix time
-- in milliseconds, the node's own clock; nodes keep time by NTP), the
-- registry version it enforces, its listeners and whether it is draining.
-- A node whose heartbeat is older than [cluster] gone_after is gone; one
-- that stopped cleanly says so at once (stopped_at).
CREATE TABLE nodes (
    name             TEXT PRIMARY KEY,
    instance         TEXT NOT NULL,
    version          TEXT NOT NULL,
    started_at       TEXT NOT NULL,
    heartbeat_ms     BIGINT NOT NULL,
    registry_version BIGINT NOT NULL,
    listeners        TEXT NOT NULL,
    draining         TEXT,
    stopped_at       TEXT
);
