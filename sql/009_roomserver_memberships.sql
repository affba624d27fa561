-- The current membership of every user in every room, kept with the room's state: a user's
-- rooms without reading every room's state. Owned by the roomserver.
CREATE TABLE roomserver_memberships (
    room_nid BIGINT NOT NULL,
    user_id TEXT NOT NULL,
    -- join, invite, leave, ban or knock.
    membership TEXT NOT NULL,
    -- The m.room.member event that set it.
    event_nid BIGINT NOT NULL,
    -- 1 once the user forgot the room (after leaving it); reset by a new membership.
    forgotten BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (room_nid, user_id)
);
CREATE INDEX roomserver_memberships_user ON roomserver_memberships (user_id, membership);
