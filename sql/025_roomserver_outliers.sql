-- Outliers: events stored without a place in the room's DAG as this server saw it grow. The
-- state and auth chain a resident server returns when this server joins a room over
-- federation (`send_join`) are stored this way: each was checked (format, signatures, its
-- auth events) and may be part of the room's state, but this server never knew the state
-- before it, so it has no `state_snapshot_nid`, is never a forward extremity, and was not
-- output one by one in the room's order (the join that follows them outputs them first).
-- 1 for such an event, 0 for every event that went through the normal input path.
ALTER TABLE roomserver_events ADD COLUMN outlier BIGINT NOT NULL DEFAULT 0;
