//! `QueryOpenIdToken`: the local user an unexpired OpenID token belongs to.

use crate::actors::userapi::actor::Deps;
use crate::actors::userapi::messages::QueryOpenIdToken;
use crate::actors::userapi::storage::openid_tokens;
use crate::actors::userapi::{tokens, UserApiError};
use crate::storage::now_ms;

pub async fn handle(deps: &Deps, msg: QueryOpenIdToken) -> Result<Option<String>, UserApiError> {
    Ok(openid_tokens::select(&deps.db, &tokens::hash(&msg.token), now_ms()).await?)
}
