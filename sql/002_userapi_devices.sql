-- Devices (sessions) of local users, each with its current access token. Owned by the userapi.
CREATE TABLE userapi_devices (
    localpart TEXT NOT NULL,
    device_id TEXT NOT NULL,
    display_name TEXT,
    -- SHA-256 (hex) of the device's access token; the token itself is never stored.
    access_token_hash TEXT NOT NULL UNIQUE,
    -- When the access token stops working, ms since the epoch; NULL: it does not expire.
    access_expires_ts BIGINT,
    -- SHA-256 (hex) of the refresh token, when the client asked for one.
    refresh_token_hash TEXT UNIQUE,
    created_ts BIGINT NOT NULL,
    -- Last request made with this device's token: time and client IP.
    last_seen_ts BIGINT,
    last_seen_ip TEXT,
    last_seen_user_agent TEXT,
    PRIMARY KEY (localpart, device_id)
);
