-- Each node's recent demand per partner (D126): a JSON object partner id
-- -> requests per second offered to this node's rate check, smoothed over
-- a few heartbeats; only partners with demand above zero. Written with the
-- heartbeat; every node reads all rows to share each partner's rate by
-- where its traffic lands. NULL (rows written before 0012) reads as none.
ALTER TABLE nodes ADD COLUMN demand TEXT;
