-- The refresh token a device rotated away from. It stays valid until the device's new
-- access token or refresh token is used (the spec's grace, so a lost /refresh response can be
-- retried); then it is cleared.
ALTER TABLE userapi_devices ADD COLUMN prev_refresh_token_hash TEXT;
