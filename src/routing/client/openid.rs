//! OpenID: `POST /user/{userId}/openid/request_token` issues a token a third party (an
//! integration manager, a widget) can check with `GET /_matrix/federation/v1/openid/userinfo`
//! (served with the federation routes, `routing::federation::openid`).

use super::ensure_self;
use crate::actors::userapi::messages::PerformOpenIdTokenCreation;
use crate::routing::error::MatrixError;
use crate::routing::ruma::{Ruma, RumaResponse, RumaResult};
use crate::routing::AppState;
use actix_web::web;
use ruma::api::client::account::request_openid_token;
use std::time::Duration;

/// How long an OpenID token resolves (Synapse: one hour).
const OPENID_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);

/// # `POST /_matrix/client/v3/user/{userId}/openid/request_token`
pub async fn request_openid_token(
    state: web::Data<AppState>,
    req: Ruma<request_openid_token::v3::Request>,
) -> RumaResult<request_openid_token::v3::Response> {
    ensure_self(&req.sender, &req.body.user_id, "request OpenID tokens")?;
    let token = state
        .userapi
        .send(PerformOpenIdTokenCreation {
            localpart: req.sender.localpart.clone(),
            lifetime_ms: OPENID_TOKEN_LIFETIME.as_millis() as u64,
        })
        .await?;
    let server = ruma::OwnedServerName::try_from(state.server_name())
        .map_err(|e| MatrixError::internal(e))?;
    Ok(RumaResponse(request_openid_token::v3::Response::new(
        token,
        ruma::authentication::TokenType::Bearer,
        server,
        OPENID_TOKEN_LIFETIME,
    )))
}
