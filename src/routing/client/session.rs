//! Sessions: login, refresh, logout.

use crate::actors::userapi::messages::{
    PasswordCheck, PerformDeviceCreation, PerformDeviceDeletion, PerformTokenRefresh,
    QueryPasswordCheck,
};
use crate::actors::userapi::UserApiError;
use crate::routing::error::MatrixError;
use crate::routing::ruma::{Ruma, RumaResponse, RumaResult};
use crate::routing::AppState;
use actix_web::web;
use ruma::api::client::session::get_login_types::v3::{LoginType, PasswordLoginType};
use ruma::api::client::session::{get_login_types, login, logout, logout_all, refresh_token};
use ruma::api::client::uiaa::UserIdentifier;
use ruma::OwnedUserId;
use std::time::Duration;

/// # `GET /_matrix/client/v3/login`
pub async fn get_login_types(
    _req: Ruma<get_login_types::v3::Request>,
) -> RumaResult<get_login_types::v3::Response> {
    Ok(RumaResponse(get_login_types::v3::Response::new(vec![
        LoginType::Password(PasswordLoginType::new()),
    ])))
}

/// The localpart a login names: `m.id.user` (a localpart or a full ID of this server) or
/// the legacy top-level `user` field.
fn login_localpart(
    state: &AppState,
    password: &login::v3::Password,
) -> Result<String, MatrixError> {
    #[allow(deprecated)]
    let named = match (&password.identifier, &password.user) {
        (Some(UserIdentifier::Matrix(m)), _) => m.user.clone(),
        (Some(_), _) => {
            return Err(MatrixError::forbidden(
                "Third-party identifiers are not supported on this server",
            ))
        }
        (None, Some(user)) => user.clone(),
        (None, None) => return Err(MatrixError::new("M_MISSING_PARAM", "Missing identifier")),
    };
    let invalid = || MatrixError::forbidden("Invalid username or password");
    let localpart = if named.starts_with('@') {
        let user_id = OwnedUserId::try_from(named.as_str()).map_err(|_| invalid())?;
        if user_id.server_name().as_str() != state.server_name() {
            return Err(invalid());
        }
        user_id.localpart().to_owned()
    } else {
        named
    };
    // Registration lower-cases names; logins match the same way.
    Ok(localpart.to_lowercase())
}

/// # `POST /_matrix/client/v3/login`
pub async fn login(
    state: web::Data<AppState>,
    req: Ruma<login::v3::Request>,
) -> RumaResult<login::v3::Response> {
    let body = req.body;
    let password = match &body.login_info {
        login::v3::LoginInfo::Password(p) => p,
        other => {
            return Err(MatrixError::new(
                "M_UNKNOWN",
                format!("Unknown login type {}", other.login_type()),
            )
            .with_status(actix_web::http::StatusCode::BAD_REQUEST))
        }
    };
    let localpart = login_localpart(&state, password)?;
    let check = state
        .userapi
        .send(QueryPasswordCheck {
            localpart: localpart.clone(),
            password: password.password.clone(),
        })
        .await?;
    let (user_id, fingerprint) = match check {
        PasswordCheck::Valid {
            user_id,
            password_fingerprint,
        } => (user_id, password_fingerprint),
        PasswordCheck::Invalid => {
            return Err(MatrixError::forbidden("Invalid username or password"))
        }
        PasswordCheck::Deactivated => {
            return Err(MatrixError::new(
                "M_USER_DEACTIVATED",
                "This account has been deactivated",
            ))
        }
    };
    let session = state
        .userapi
        .send(PerformDeviceCreation {
            localpart,
            device_id: body.device_id.map(|d| d.to_string()),
            display_name: body.initial_device_display_name,
            ip: req.client.ip,
            user_agent: req.client.user_agent,
            refresh_token: body.refresh_token,
            password_fingerprint: Some(fingerprint),
        })
        .await?;
    let user_id = OwnedUserId::try_from(user_id).map_err(|e| MatrixError::internal(e))?;
    let mut response =
        login::v3::Response::new(user_id, session.access_token, session.device_id.into());
    response.refresh_token = session.refresh_token;
    response.expires_in = session.expires_in_ms.map(Duration::from_millis);
    response.well_known = Some(login::v3::DiscoveryInfo::new(
        login::v3::HomeserverInfo::new(state.config.public_baseurl()),
    ));
    Ok(RumaResponse(response))
}

/// # `POST /_matrix/client/v3/refresh`
pub async fn refresh_token(
    state: web::Data<AppState>,
    req: Ruma<refresh_token::v3::Request>,
) -> RumaResult<refresh_token::v3::Response> {
    let session = state
        .userapi
        .send(PerformTokenRefresh {
            refresh_token: req.body.refresh_token,
        })
        .await
        .map_err(|e| match e {
            UserApiError::UnknownToken => {
                MatrixError::new("M_UNKNOWN_TOKEN", "Unknown or used refresh token")
            }
            other => other.into(),
        })?;
    let mut response = refresh_token::v3::Response::new(session.access_token);
    response.refresh_token = session.refresh_token;
    response.expires_in_ms = session.expires_in_ms.map(Duration::from_millis);
    Ok(RumaResponse(response))
}

/// # `POST /_matrix/client/v3/logout`
pub async fn logout(
    state: web::Data<AppState>,
    req: Ruma<logout::v3::Request>,
) -> RumaResult<logout::v3::Response> {
    state
        .userapi
        .send(PerformDeviceDeletion {
            localpart: req.sender.localpart.clone(),
            device_ids: Some(vec![req.sender.device_id.to_string()]),
            except: None,
        })
        .await?;
    Ok(RumaResponse(logout::v3::Response::new()))
}

/// # `POST /_matrix/client/v3/logout/all`
pub async fn logout_all(
    state: web::Data<AppState>,
    req: Ruma<logout_all::v3::Request>,
) -> RumaResult<logout_all::v3::Response> {
    state
        .userapi
        .send(PerformDeviceDeletion {
            localpart: req.sender.localpart.clone(),
            device_ids: None,
            except: None,
        })
        .await?;
    Ok(RumaResponse(logout_all::v3::Response::new()))
}
