-- History this server did not see as it happened: the prev events of events it placed
-- without them (its join into a room over federation; an event whose prev events the
-- origin could not give with `/get_missing_events`, placed on the state `/state_ids` told),
-- and the events fetched later with `/backfill` to fill what lies before.

-- 1 for an event fetched with `/backfill` (or an outlier `/backfill` reached): it has a
-- place in the room's history as clients page back through it, but none in the DAG as
-- this server saw it grow (no state before it, never a forward extremity, no stream
-- position). It is also an outlier (`outlier = 1`).
ALTER TABLE roomserver_events ADD COLUMN backfilled BIGINT NOT NULL DEFAULT 0;

-- The room's backward extremities: events named as prev events by events this server holds
-- in the room's history, that it does not hold there itself (never stored, or only as an
-- outlier outside the history). `/backfill` asks for history from them; a row goes once
-- the event is stored as part of the history.
CREATE TABLE roomserver_backward_extremities (
    -- The room.
    room_nid BIGINT NOT NULL,
    -- The missing event.
    event_id TEXT NOT NULL,
    PRIMARY KEY (room_nid, event_id)
);
