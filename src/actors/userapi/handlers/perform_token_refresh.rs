//! `PerformTokenRefresh`: trades a refresh token for new tokens.

use crate::actors::userapi::actor::Deps;
use crate::actors::userapi::messages::{NewSession, PerformTokenRefresh};
use crate::actors::userapi::storage::devices;
use crate::actors::userapi::{tokens, UserApiError};

pub async fn handle(deps: &Deps, msg: PerformTokenRefresh) -> Result<NewSession, UserApiError> {
    let old_hash = tokens::hash(&msg.refresh_token);
    let (localpart, device_id) = devices::select_by_refresh_token(&deps.db, &old_hash)
        .await?
        .ok_or(UserApiError::UnknownToken)?;
    let access_token = tokens::random_token("mya_");
    let refresh_token = tokens::random_token("myr_");
    let expires_at = crate::storage::now_ms() + deps.access_token_lifetime_ms as i64;
    let rotated = devices::rotate_tokens(
        &deps.db,
        &localpart,
        &device_id,
        &tokens::hash(&access_token),
        Some(expires_at),
        &tokens::hash(&refresh_token),
        &old_hash,
    )
    .await?;
    if !rotated {
        // A concurrent refresh with the same token won.
        return Err(UserApiError::UnknownToken);
    }
    deps.tokens.forget_user(&localpart);
    Ok(NewSession {
        user_id: format!("@{localpart}:{}", deps.server_name),
        device_id,
        access_token,
        refresh_token: Some(refresh_token),
        expires_in_ms: Some(deps.access_token_lifetime_ms),
    })
}
