-- Account data of local users, global and per room. Owned by the userapi.
CREATE TABLE userapi_account_data (
    localpart TEXT NOT NULL,
    -- The room the data belongs to; the empty string for global account data.
    room_id TEXT NOT NULL,
    -- The event type, e.g. m.direct or m.fully_read.
    data_type TEXT NOT NULL,
    -- The content, a JSON object, as the client sent it.
    content TEXT NOT NULL,
    PRIMARY KEY (localpart, room_id, data_type)
);
