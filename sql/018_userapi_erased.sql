-- Accounts deactivated with `erase: true` (the spec's account erasure): their messages are no
-- longer shown to users who were not in the room when they were sent. Owned by the userapi.
ALTER TABLE userapi_accounts ADD COLUMN erased BIGINT NOT NULL DEFAULT 0;
