-- Pruning what the server no longer needs to keep: the roomserver's own record of where each
-- event's output is in its stream (so nothing reads the bus outbox for history, and the outbox
-- can be pruned), and which redacted events still hold their original content.

-- The position of the event's output in the roomserver stream; NULL for events never output
-- (rejected, soft-failed) and, until the start-up backfill reaches them, for events stored
-- before this column existed.
ALTER TABLE roomserver_events ADD COLUMN stream_position BIGINT;
CREATE INDEX roomserver_events_room_position ON roomserver_events (room_nid, stream_position);

-- When the redaction of this event applied (ms since the epoch), while the original content
-- is still stored; set back to NULL once `json` is pruned to the redacted form (after
-- rooms.redaction_retention). NULL for events never redacted.
ALTER TABLE roomserver_events ADD COLUMN redacted_at BIGINT;
CREATE INDEX roomserver_events_redacted_at ON roomserver_events (redacted_at)
    WHERE redacted_at IS NOT NULL;

-- Events redacted before this column existed: from the time the redaction was sent.
UPDATE roomserver_events SET redacted_at = COALESCE(
    (SELECT r.origin_server_ts FROM roomserver_events r
        WHERE r.event_id = roomserver_events.redacted_by), 0)
    WHERE redacted_by IS NOT NULL;
