-- CVI: whether a meeting's subject may be shown on its public dialling
-- instructions page (the organiser's choice; hidden unless chosen).
ALTER TABLE cvi_meetings ADD COLUMN subject_public BIGINT NOT NULL DEFAULT 0;
