//! `QueryAccessToken`: the owner of an access token.

use crate::actors::userapi::actor::Deps;
use crate::actors::userapi::messages::{QueryAccessToken, TokenLookup, TokenOwner};
use crate::actors::userapi::storage::devices;
use crate::actors::userapi::{tokens, UserApiError};

pub async fn handle(deps: &Deps, msg: QueryAccessToken) -> Result<TokenLookup, UserApiError> {
    let Some(row) = devices::select_by_token(&deps.db, &tokens::hash(&msg.access_token)).await?
    else {
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
    Ok(TokenLookup::Valid(TokenOwner {
        user_id: format!("@{}:{}", row.localpart, deps.server_name),
        localpart: row.localpart,
        device_id: row.device_id,
        is_guest: row.is_guest,
    }))
}
