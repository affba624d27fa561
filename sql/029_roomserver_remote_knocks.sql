-- Knocks of this server's users on rooms this server does not hold: the user knocked through
-- another server (`make_knock`/`send_knock`), which accepted the knock into its room; we gave
-- it to the syncapi (so the user sees the room under `rooms.knock` in /sync), but the room
-- itself is not here. An invite into the room (the knock accepted), a join (the room imported
-- from `send_join`) or a rescinded knock (the leave made through the room's server, or made
-- locally when it cannot be reached) removes the row.
CREATE TABLE roomserver_remote_knocks (
    -- The room knocked on (not in roomserver_rooms).
    room_id TEXT NOT NULL,
    -- The knocking user, a user of this server (the knock's sender and state_key).
    user_id TEXT NOT NULL,
    -- The knock event's ID.
    event_id TEXT NOT NULL,
    -- The room's version, as the room's server gave it.
    room_version TEXT NOT NULL,
    -- The knock event in federation format, signed by us, with `unsigned.knock_room_state`
    -- (the state events the room's server sent back).
    json TEXT NOT NULL,
    -- The servers to leave through (the one that took the knock first), a JSON array.
    servers TEXT NOT NULL,
    PRIMARY KEY (room_id, user_id)
);
