-- Local accounts. Owned by the userapi; no other component reads it.
CREATE TABLE userapi_accounts (
    -- The user ID's localpart (the server name is the node's own).
    localpart TEXT PRIMARY KEY,
    -- argon2id hash in PHC string form; NULL for accounts that cannot log in with a password
    -- (guests).
    password_hash TEXT,
    -- 1 for guest accounts (registered with kind=guest), else 0.
    is_guest BIGINT NOT NULL DEFAULT 0,
    -- 1 once the account is deactivated: it can never log in again and its name stays taken.
    deactivated BIGINT NOT NULL DEFAULT 0,
    -- Creation time, ms since the Unix epoch.
    created_ts BIGINT NOT NULL
);
