-- The roomserver's tables: rooms, events, and room state as snapshots built from shared,
-- deduplicated blocks. Owned by the roomserver; no other component reads them. Internal
-- numeric IDs (*_nid) never leave the roomserver.

CREATE TABLE roomserver_rooms (
    room_nid BIGSERIAL PRIMARY KEY,
    room_id TEXT NOT NULL UNIQUE,
    room_version TEXT NOT NULL,
    -- The current state of the room; NULL before its first event.
    state_snapshot_nid BIGINT,
    -- The forward extremities (events with no children yet), a JSON array of event nids.
    latest_event_nids TEXT NOT NULL DEFAULT '[]',
    -- The greatest depth of any event in the room.
    max_depth BIGINT NOT NULL DEFAULT 0
);

-- Event types and state keys, interned to numbers.
CREATE TABLE roomserver_event_types (
    type_nid BIGSERIAL PRIMARY KEY,
    event_type TEXT NOT NULL UNIQUE
);

CREATE TABLE roomserver_state_keys (
    state_key_nid BIGSERIAL PRIMARY KEY,
    state_key TEXT NOT NULL UNIQUE
);

CREATE TABLE roomserver_events (
    event_nid BIGSERIAL PRIMARY KEY,
    room_nid BIGINT NOT NULL,
    event_id TEXT NOT NULL UNIQUE,
    type_nid BIGINT NOT NULL,
    -- NULL for events that are not state events.
    state_key_nid BIGINT,
    depth BIGINT NOT NULL,
    -- The state of the room before this event; NULL until computed.
    state_snapshot_nid BIGINT,
    -- The event as received or built (federation format, JSON text).
    json TEXT NOT NULL,
    -- 1 when the event failed authorization: kept for the DAG, never served or in state.
    rejected BIGINT NOT NULL DEFAULT 0,
    -- The ID of the redaction that redacted this event, once it applies.
    redacted_by TEXT
);
CREATE INDEX roomserver_events_room_depth ON roomserver_events (room_nid, depth);

-- A state block: the state entries of one bucket of the (type, state_key) space, as a
-- sorted JSON array of [type_nid, state_key_nid, event_nid]. Blocks are immutable and
-- shared by every snapshot that has the same entries in that bucket.
CREATE TABLE roomserver_state_blocks (
    block_nid BIGSERIAL PRIMARY KEY,
    -- SHA-256 (hex) of entries: identical blocks are stored once.
    hash TEXT NOT NULL UNIQUE,
    entries TEXT NOT NULL
);

-- A state snapshot: for each non-empty bucket, the block holding its entries, as a sorted
-- JSON array of [bucket, block_nid]. A new state event makes a snapshot that shares every
-- block but the one of its bucket.
CREATE TABLE roomserver_state_snapshots (
    snapshot_nid BIGSERIAL PRIMARY KEY,
    room_nid BIGINT NOT NULL,
    -- SHA-256 (hex) of (room_nid, blocks): identical snapshots are stored once.
    hash TEXT NOT NULL UNIQUE,
    blocks TEXT NOT NULL
);
