-- The syncapi's per-user and ephemeral streams, and what /sync and the history endpoints need
-- beyond the timeline. Positions of receipts, to-device messages and presence are positions of
-- the syncapi's own bus streams (gapless, commit-ordered); account data arrives on the
-- userapi's stream and keeps that stream's positions.

-- For the sender's own device: the client transaction the event answered.
ALTER TABLE syncapi_room_events ADD COLUMN sender_device TEXT;
ALTER TABLE syncapi_room_events ADD COLUMN txn_id TEXT;
-- The redaction that applies to the event (the event's json is then already redacted).
ALTER TABLE syncapi_room_events ADD COLUMN redacted_because TEXT;
-- For state events: {"prev_content", "prev_sender", "replaces_state"} of the event it replaced.
ALTER TABLE syncapi_room_events ADD COLUMN prev_state TEXT;
CREATE INDEX syncapi_room_events_state ON syncapi_room_events (room_id, event_type, state_key, position);

-- Events that relate to another (m.relates_to), for /relations, /threads and bundled
-- aggregations. A redacted event loses its relation.
CREATE TABLE syncapi_relations (
    event_id TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    relates_to TEXT NOT NULL,
    rel_type TEXT NOT NULL,
    event_type TEXT NOT NULL,
    sender TEXT NOT NULL,
    position BIGINT NOT NULL
);
CREATE INDEX syncapi_relations_target ON syncapi_relations (relates_to, position);
CREATE INDEX syncapi_relations_threads ON syncapi_relations (room_id, rel_type, position);

-- The syncapi's copy of account data ('' room_id for global), from the userapi's stream.
CREATE TABLE syncapi_account_data (
    user_id TEXT NOT NULL,
    room_id TEXT NOT NULL,
    data_type TEXT NOT NULL,
    content TEXT NOT NULL,
    position BIGINT NOT NULL,
    PRIMARY KEY (user_id, room_id, data_type)
);
CREATE INDEX syncapi_account_data_position ON syncapi_account_data (user_id, position);

-- The newest receipt of each (room, type, user, thread); thread_id '' for an unthreaded one.
CREATE TABLE syncapi_receipts (
    room_id TEXT NOT NULL,
    receipt_type TEXT NOT NULL,
    user_id TEXT NOT NULL,
    thread_id TEXT NOT NULL,
    event_id TEXT NOT NULL,
    ts BIGINT NOT NULL,
    position BIGINT NOT NULL,
    PRIMARY KEY (room_id, receipt_type, user_id, thread_id)
);
CREATE INDEX syncapi_receipts_position ON syncapi_receipts (room_id, position);

-- To-device messages waiting for their device; deleted once a sync token acknowledges them.
CREATE TABLE syncapi_send_to_device (
    position BIGINT PRIMARY KEY,
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    sender TEXT NOT NULL,
    event_type TEXT NOT NULL,
    content TEXT NOT NULL
);
CREATE INDEX syncapi_send_to_device_device ON syncapi_send_to_device (user_id, device_id, position);

-- Client transactions of /sendToDevice, so a retried request is not delivered twice.
CREATE TABLE syncapi_to_device_txns (
    user_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    txn_id TEXT NOT NULL,
    created_ts BIGINT NOT NULL,
    PRIMARY KEY (user_id, device_id, txn_id)
);

-- Each user's presence.
CREATE TABLE syncapi_presence (
    user_id TEXT PRIMARY KEY,
    presence TEXT NOT NULL,
    status_msg TEXT,
    last_active_ts BIGINT NOT NULL,
    position BIGINT NOT NULL
);
CREATE INDEX syncapi_presence_position ON syncapi_presence (position);
