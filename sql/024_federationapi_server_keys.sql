-- The federationapi's cache of other servers' signing keys, fetched from the servers
-- themselves (`/_matrix/key/v2/server`) or through a notary (`/_matrix/key/v2/query`), and
-- checked before they were stored (self-signed; a notary's answer also signed by the notary).
-- Requests and events of other servers are verified against it; as a notary this server
-- serves the stored key objects again. One row per (server, key); the newest fetch wins.
CREATE TABLE federationapi_server_keys (
    -- The server the key belongs to.
    server_name TEXT NOT NULL,
    -- The key ID, `ed25519:<version>`.
    key_id TEXT NOT NULL,
    -- The public key, unpadded base64.
    public_key TEXT NOT NULL,
    -- For a current key (in `verify_keys`): until when it may be used, ms since the epoch
    -- (the answer's `valid_until_ts`, at most 7 days after the fetch, as the spec requires).
    -- For an old key: its `expired_ts`.
    valid_until_ts BIGINT NOT NULL,
    -- NULL for a current key; for a key in `old_verify_keys`, when it stopped being used.
    expired_ts BIGINT,
    -- When it was fetched, ms since the epoch.
    fetched_at BIGINT NOT NULL,
    -- Who answered: the server itself, or the notary's server name.
    fetched_from TEXT NOT NULL,
    -- The server's key object that held the key, with only the server's own signatures:
    -- served again (with this server's signature added) when this server acts as a notary.
    key_json TEXT NOT NULL,
    PRIMARY KEY (server_name, key_id)
);
