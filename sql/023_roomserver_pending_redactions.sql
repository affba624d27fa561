-- Redactions from elsewhere that arrived before the event they redact. The redaction itself
-- is stored (and output) as any event; this row waits for its target. When an event with
-- that ID is stored in the same room, the redaction applies to it if its sender may redact
-- it (judged by the state before the redaction), and the row goes either way.
CREATE TABLE roomserver_pending_redactions (
    -- The room of the redaction: only a target stored in this room is redacted.
    room_nid BIGINT NOT NULL,
    -- The event the redaction names, not stored yet when the redaction arrived.
    target_event_id TEXT NOT NULL,
    -- The redaction (an accepted event of roomserver_events).
    redaction_nid BIGINT NOT NULL,
    PRIMARY KEY (room_nid, target_event_id, redaction_nid)
);
