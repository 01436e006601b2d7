-- Per-partner CA pin: the SPKI SHA-256 hashes (sha256:<hex>, comma-separated)
-- of the CAs the partner's edge certificate must chain to.
ALTER TABLE partners ADD COLUMN ca_pin TEXT;
