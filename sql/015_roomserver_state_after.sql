-- The state of the room after each event (for a state event: the state before it plus
-- itself; else the state before it). NULL for events stored before this column existed and
-- for rejected events, which change no state.
ALTER TABLE roomserver_events ADD COLUMN state_after_snapshot_nid BIGINT;
