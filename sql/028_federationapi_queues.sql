-- The federationapi's outgoing side: who is in each room (from the roomserver's stream, in
-- stream order), one durable queue per destination server, and each destination's
-- transaction in flight and backoff.

-- The joined members of each room as of the roomserver stream position the federationapi
-- applied: the servers to send a room's events to. A row exists while the user is joined.
CREATE TABLE federationapi_joined_members (
    -- The room.
    room_id TEXT NOT NULL,
    -- The joined user.
    user_id TEXT NOT NULL,
    -- The user's server (the part of `user_id` after the first colon).
    server_name TEXT NOT NULL,
    -- The `m.room.member` event that made the user joined (so a state change that removes
    -- it without a replacement removes the row).
    event_id TEXT NOT NULL,
    PRIMARY KEY (room_id, user_id)
);
CREATE INDEX federationapi_joined_members_room ON federationapi_joined_members (room_id, server_name);

-- One row per destination server this server ever queued something for: the next queue
-- position, the transaction in flight (fixed before its first attempt, so a retry after a
-- crash sends the same ID and contents) and the backoff after failures.
CREATE TABLE federationapi_destinations (
    -- The destination server.
    server_name TEXT NOT NULL PRIMARY KEY,
    -- The position the next queued item gets (positions only grow).
    next_position BIGINT NOT NULL,
    -- The transaction in flight: its ID, NULL when none.
    txn_id TEXT,
    -- The transaction in flight holds every queued item up to this position.
    txn_last_position BIGINT,
    -- The transaction's `origin_server_ts`, ms since the epoch.
    txn_ts BIGINT,
    -- Failed attempts in a row (0 after a success).
    failures BIGINT NOT NULL,
    -- No attempt before this time, ms since the epoch (0: none pending).
    retry_at BIGINT NOT NULL
);

-- The queued PDUs and EDUs of each destination, in order. A row is deleted once the
-- transaction that carried it was answered.
CREATE TABLE federationapi_queue (
    -- The destination server.
    server_name TEXT NOT NULL,
    -- The item's place in the destination's queue (from `federationapi_destinations.next_position`).
    position BIGINT NOT NULL,
    -- 1 for a PDU, 0 for an EDU.
    is_pdu BIGINT NOT NULL,
    -- The PDU (federation format) or EDU (`{"edu_type", "content"}`), JSON.
    json TEXT NOT NULL,
    PRIMARY KEY (server_name, position)
);
