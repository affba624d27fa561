-- Invites of this server's users into rooms this server does not hold: another server sent
-- the invite over federation (`PUT /_matrix/federation/v2/invite`), we signed it and gave it
-- to the syncapi (so the user sees it in /sync), but the room itself is not here until the
-- user joins. A join of the room (the room imported from `send_join`) or a rejection (the
-- leave made through the inviting server, or made locally when it cannot be reached) removes
-- the row.
CREATE TABLE roomserver_remote_invites (
    -- The room the user is invited to (not in roomserver_rooms).
    room_id TEXT NOT NULL,
    -- The invited user, a user of this server (the invite's state_key).
    user_id TEXT NOT NULL,
    -- The invite event's ID.
    event_id TEXT NOT NULL,
    -- The room's version, as the inviting server gave it.
    room_version TEXT NOT NULL,
    -- The invite event in federation format, signed by the inviting server and by us, with
    -- `unsigned.invite_room_state` (the stripped state the inviting server sent).
    json TEXT NOT NULL,
    PRIMARY KEY (room_id, user_id)
);
