-- Room aliases of this server and the rooms published in its directory. Owned by the
-- roomserver.
CREATE TABLE roomserver_room_aliases (
    -- The full alias, #name:server.
    alias TEXT PRIMARY KEY,
    room_id TEXT NOT NULL,
    -- Who made it: they may delete it (as may anyone with power over the room's aliases).
    creator TEXT NOT NULL
);
CREATE INDEX roomserver_room_aliases_room ON roomserver_room_aliases (room_id);

-- Rooms listed in this server's public room directory (/publicRooms).
CREATE TABLE roomserver_published_rooms (
    room_id TEXT PRIMARY KEY,
    -- When it was published, ms since the epoch.
    published_ts BIGINT NOT NULL
);
