-- OpenID tokens (`POST /user/{userId}/openid/request_token`): short-lived tokens a user hands
-- to a third party (an integration manager, a widget), which asks this server's federation
-- API who they belong to. Owned by the userapi.
CREATE TABLE userapi_openid_tokens (
    -- SHA-256 hex of the token; the plaintext is returned once and never stored.
    token_hash TEXT PRIMARY KEY,
    localpart TEXT NOT NULL,
    -- When the token stops resolving, ms since the epoch.
    expires_at BIGINT NOT NULL
);
CREATE INDEX userapi_openid_tokens_expiry ON userapi_openid_tokens (expires_at);
