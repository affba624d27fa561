-- The syncapi's copy of erased users (from the userapi's stream): their events are served
-- redacted to readers who were not joined when the events were sent.
CREATE TABLE syncapi_erased_users (
    user_id TEXT PRIMARY KEY,
    -- The userapi stream position of the erasure.
    position BIGINT NOT NULL
);
