-- Catch-up for a destination that stays unreachable (see the federationapi's sender): its
-- queue keeps only the newest of the items that say the same thing again, so the queue of a
-- dead server does not grow without bound. A room's newest PDU stands for the ones before it
-- (the destination fetches those with /get_missing_events when it is back), a user's newest
-- presence, typing or receipt for the older ones. To-device messages have no key and are
-- never collapsed.
ALTER TABLE federationapi_queue ADD COLUMN collapse_key TEXT;
CREATE INDEX federationapi_queue_collapse ON federationapi_queue (server_name, collapse_key);
-- Since when a destination's transactions fail (ms since the epoch); NULL while they do not.
-- Past `federation.catch_up_after`, the destination is in catch-up.
ALTER TABLE federationapi_destinations ADD COLUMN failing_since BIGINT;
