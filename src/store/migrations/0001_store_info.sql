-- Facts about this database itself (schema owner, creation time).
CREATE TABLE store_info (
    name  TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
INSERT INTO store_info (name, value) VALUES ('created_by', 'fedge');
