-- Soft failure: an event from elsewhere that passed the auth rules against the state before
-- it but not against the room's current state. It is kept in the DAG (later events may build
-- on it, and the state after it is computed as for any event) but is no forward extremity,
-- leaves the current state alone and is not put on the roomserver's stream.
-- 1 while the event is held back that way; back to 0 if a later resolution brings it into
-- the current state (it is then output).
ALTER TABLE roomserver_events ADD COLUMN soft_failed BIGINT NOT NULL DEFAULT 0;
