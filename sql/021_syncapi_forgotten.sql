-- Rooms a user forgot (the roomserver's `RoomForgotten` output): marked on the user's own
-- member row of the current state, so reads that find a membership also see the mark.
ALTER TABLE syncapi_current_state
    -- 1 when the member row's user forgot the room after leaving it (only on rows of
    -- m.room.member with membership leave or ban); a new member event of the user resets it
    -- to 0, as in the roomserver's memberships.
    ADD COLUMN forgotten BIGINT NOT NULL DEFAULT 0;
