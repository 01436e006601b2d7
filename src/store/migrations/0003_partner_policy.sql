-- Per-partner policy overrides, and the onboarding IM test result.
ALTER TABLE partners ADD COLUMN rate_limit TEXT;
ALTER TABLE partners ADD COLUMN product_check TEXT;
ALTER TABLE partners ADD COLUMN im_test_at TEXT;
ALTER TABLE partners ADD COLUMN im_test_from TEXT;
