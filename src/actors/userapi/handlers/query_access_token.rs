//! `QueryAccessToken`: the owner of an access token.

use crate::actors::userapi::actor::Deps;
use crate::actors::userapi::messages::{QueryAccessToken, TokenLookup, TokenOwner};
use crate::actors::userapi::storage::devices;
use crate::actors::userapi::{tokens, UserApiError};

pub async fn handle(deps: &Deps, msg: QueryAccessToken) -> Result<TokenLookup, UserApiError> {
    let hash = tokens::hash(&msg.access_token);
    if let Some((owner, expires)) = deps.tokens.get(&hash) {
        if expires.is_some_and(|at| at <= crate::storage::now_ms()) {
            return Ok(TokenLookup::Expired);
        }
        return Ok(TokenLookup::Valid(owner));
    }
    let epoch = deps.tokens.epoch();
    let Some(row) = devices::select_by_token(&deps.db, &hash).await? else {
        return Ok(TokenLookup::Unknown);
    };
    if row
        .expires_ts
        .is_some_and(|at| at <= crate::storage::now_ms())
    {
        return Ok(TokenLookup::Expired);
    }
    if row.refresh_grace {
        // The new access token is in use: the refresh token before it is now revoked.
        devices::clear_refresh_grace(&deps.db, &row.localpart, &row.device_id).await?;
    }
    let owner = TokenOwner {
        user_id: format!("@{}:{}", row.localpart, deps.server_name),
        localpart: row.localpart,
        device_id: row.device_id,
        is_guest: row.is_guest,
    };
    deps.tokens
        .insert(epoch, hash, owner.clone(), row.expires_ts);
    Ok(TokenLookup::Valid(owner))
}
