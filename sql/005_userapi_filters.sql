-- Sync filters uploaded by local users. Owned by the userapi.
CREATE TABLE userapi_filters (
    localpart TEXT NOT NULL,
    -- Per user, counting from 0; clients see it as a string.
    filter_id BIGINT NOT NULL,
    -- The filter definition, JSON.
    filter TEXT NOT NULL,
    PRIMARY KEY (localpart, filter_id)
);
