-- The syncapi's own copy of what clients see, fed by the roomserver's stream. Owned by the
-- syncapi; no other component reads it. Positions are the roomserver stream's positions, so a
-- sync token that names one stays valid across restarts.

-- Every accepted room event, in stream order.
CREATE TABLE syncapi_room_events (
    -- The event's position in the roomserver stream.
    position BIGINT PRIMARY KEY,
    room_id TEXT NOT NULL,
    event_id TEXT NOT NULL UNIQUE,
    event_type TEXT NOT NULL,
    sender TEXT NOT NULL,
    -- NULL for events that are not state.
    state_key TEXT,
    -- The event in federation format.
    json TEXT NOT NULL
);
CREATE INDEX syncapi_room_events_room ON syncapi_room_events (room_id, position);

-- The current state of every room, as the roomserver reports its changes.
CREATE TABLE syncapi_current_state (
    room_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    state_key TEXT NOT NULL,
    event_id TEXT NOT NULL,
    -- For m.room.member events, the membership (join, invite, leave, ban, knock).
    membership TEXT,
    -- The stream position at which it became current.
    position BIGINT NOT NULL,
    PRIMARY KEY (room_id, event_type, state_key)
);
CREATE INDEX syncapi_current_state_members ON syncapi_current_state (state_key, membership);
