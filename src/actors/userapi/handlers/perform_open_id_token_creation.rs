//! `PerformOpenIdTokenCreation`: a new OpenID token, stored by its hash. Tokens that expired
//! are swept on the way, so the table holds only live ones.

use crate::actors::userapi::actor::Deps;
use crate::actors::userapi::messages::PerformOpenIdTokenCreation;
use crate::actors::userapi::storage::openid_tokens;
use crate::actors::userapi::{tokens, UserApiError};
use crate::storage::now_ms;

pub async fn handle(deps: &Deps, msg: PerformOpenIdTokenCreation) -> Result<String, UserApiError> {
    let now = now_ms();
    openid_tokens::delete_expired(&deps.db, now).await?;
    let token = tokens::random_token("myo_");
    let expires_at = now.saturating_add(i64::try_from(msg.lifetime_ms).unwrap_or(i64::MAX));
    openid_tokens::insert(&deps.db, &tokens::hash(&token), &msg.localpart, expires_at).await?;
    Ok(token)
}
