//! `GET /_matrix/federation/v1/openid/userinfo`: a third party (an integration manager, a
//! widget) checks an OpenID token a user of this server had issued
//! (`POST /user/{userId}/openid/request_token`, in `routing::client::openid`).

use crate::actors::userapi::messages::QueryOpenIdToken;
use crate::routing::error::MatrixError;
use crate::routing::AppState;
use actix_web::{web, HttpRequest, HttpResponse};

/// # `GET /_matrix/federation/v1/openid/userinfo`
///
/// Served without request signatures, as the spec says: the token is the credential. A raw
/// route, so that a missing token is 401 `M_MISSING_TOKEN` as from Synapse (ruma's parser
/// would call it a bad query).
pub async fn get_openid_userinfo(
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, MatrixError> {
    let token = crate::routing::ruma::access_token(&req)
        .ok_or_else(|| MatrixError::new("M_MISSING_TOKEN", "Missing access token"))?;
    let localpart = state
        .userapi
        .send(QueryOpenIdToken { token })
        .await?
        .ok_or_else(|| MatrixError::new("M_UNKNOWN_TOKEN", "Access Token unknown or expired"))?;
    let user = format!("@{localpart}:{}", state.server_name());
    Ok(HttpResponse::Ok().json(serde_json::json!({ "sub": user })))
}
