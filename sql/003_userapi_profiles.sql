-- Global profile of local users. Owned by the userapi.
CREATE TABLE userapi_profiles (
    localpart TEXT PRIMARY KEY,
    -- NULL: not set.
    display_name TEXT,
    -- An mxc:// URI; NULL: not set.
    avatar_url TEXT
);
