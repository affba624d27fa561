-- When each event was sent (its origin_server_ts), for /timestamp_to_event; NULL only for
-- events stored before this column existed.
ALTER TABLE roomserver_events ADD COLUMN origin_server_ts BIGINT;
CREATE INDEX roomserver_events_room_ts ON roomserver_events (room_nid, origin_server_ts);

-- Reports of rooms and events by users, for the server's moderators. Owned by the roomserver.
CREATE TABLE roomserver_reports (
    report_id BIGSERIAL PRIMARY KEY,
    room_id TEXT NOT NULL,
    -- The reported event; NULL when the room itself is reported.
    event_id TEXT,
    reporter TEXT NOT NULL,
    reason TEXT,
    received_ts BIGINT NOT NULL
);
