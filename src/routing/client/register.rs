//! Registration: `/register` with user-interactive auth, availability, token validity.

use super::super::uia;
use crate::actors::userapi::messages::{
    PerformAccountCreation, PerformDeviceCreation, PerformGuestUpgrade, QueryAccountAvailability,
};
use crate::actors::userapi::UserApiError;
use crate::routing::error::MatrixError;
use crate::routing::ruma::{Ruma, RumaResponse, RumaResult};
use crate::routing::AppState;
use actix_web::{web, HttpResponse};
use ruma::api::client::account::register::{self, RegistrationKind};
use ruma::api::client::account::{check_registration_token_validity, get_username_availability};
use ruma::OwnedUserId;

/// The longest password accepted (as Synapse).
pub const MAX_PASSWORD_LEN: usize = 512;

/// Checks a requested localpart against the spec's grammar for new user IDs. Lower-cases it
/// first, as Synapse does, so `Alice` registers `@alice`.
pub fn validate_localpart(server_name: &str, username: &str) -> Result<String, MatrixError> {
    let localpart = username.to_lowercase();
    let invalid = |why: &str| MatrixError::new("M_INVALID_USERNAME", why.to_owned());
    if localpart.is_empty() {
        return Err(invalid("User ID cannot be empty"));
    }
    if !localpart
        .chars()
        .all(|c| matches!(c, 'a'..='z' | '0'..='9' | '.' | '_' | '=' | '-' | '/' | '+'))
    {
        return Err(invalid(
            "User ID can only contain characters a-z, 0-9, or '=_-./+'",
        ));
    }
    if localpart.starts_with('_') {
        return Err(invalid("User ID may not begin with _"));
    }
    // @ + localpart + : + server name must fit in 255 bytes.
    if localpart.len() + server_name.len() + 2 > ruma::ID_MAX_BYTES {
        return Err(invalid("User ID is too long"));
    }
    Ok(localpart)
}

/// A localpart for a user who did not choose one (and for guests): random, lower case.
fn generated_localpart() -> String {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    (0..12)
        .map(|_| {
            let i = rng.gen_range(0..36u8);
            char::from(if i < 10 { b'0' + i } else { b'a' + i - 10 })
        })
        .collect()
}

/// The parameters a registration's first request may give once for its whole UIA session.
fn params_of(body: &register::v3::Request) -> serde_json::Value {
    serde_json::json!({
        "username": body.username,
        "password": body.password,
        "device_id": body.device_id,
        "initial_device_display_name": body.initial_device_display_name,
        "inhibit_login": body.inhibit_login,
        "refresh_token": body.refresh_token,
        "guest_access_token": body.guest_access_token,
    })
}

/// Whether a request gives none of the parameters (only `auth`).
fn has_no_params(body: &register::v3::Request) -> bool {
    body.username.is_none()
        && body.password.is_none()
        && body.device_id.is_none()
        && body.initial_device_display_name.is_none()
        && !body.inhibit_login
        && !body.refresh_token
        && body.guest_access_token.is_none()
}

/// Fills a request's parameters from those remembered for its session.
fn apply_params(body: &mut register::v3::Request, p: &serde_json::Value) {
    let text = |k: &str| p[k].as_str().map(str::to_owned);
    body.username = text("username");
    body.password = text("password");
    body.device_id = text("device_id").map(Into::into);
    body.initial_device_display_name = text("initial_device_display_name");
    body.inhibit_login = p["inhibit_login"].as_bool().unwrap_or(false);
    body.refresh_token = p["refresh_token"].as_bool().unwrap_or(false);
    body.guest_access_token = text("guest_access_token");
}

/// The guest account a `guest_access_token` names, when the registration upgrades it: the
/// token must be a valid guest's, and the username (if any) that guest's localpart.
async fn guest_to_upgrade(
    state: &AppState,
    body: &register::v3::Request,
) -> Result<Option<String>, MatrixError> {
    let Some(token) = &body.guest_access_token else {
        return Ok(None);
    };
    let owner = match state
        .userapi
        .send(crate::actors::userapi::messages::QueryAccessToken {
            access_token: token.clone(),
        })
        .await?
    {
        crate::actors::userapi::messages::TokenLookup::Valid(owner) => owner,
        _ => {
            return Err(MatrixError::new(
                "M_UNKNOWN_TOKEN",
                "Unrecognised guest access token",
            ))
        }
    };
    if !owner.is_guest {
        return Err(MatrixError::forbidden(
            "guest_access_token is not a guest's access token",
        ));
    }
    match &body.username {
        Some(name) if name.to_lowercase() != owner.localpart => Ok(None),
        _ => Ok(Some(owner.localpart)),
    }
}

/// # `POST /_matrix/client/v3/register`
///
/// With user-interactive auth as Synapse does it: the first request's parameters are kept
/// with the session (a client may send only `auth` afterwards), and a session that already
/// registered an account answers a repeat of the completing request with that account (and a
/// new login), not `M_USER_IN_USE`. A `guest_access_token` upgrades that guest account.
pub async fn register(
    state: web::Data<AppState>,
    req: Ruma<register::v3::Request>,
) -> Result<HttpResponse, MatrixError> {
    let mut body = req.body;
    let registration = &state.config.registration;
    let is_guest = match body.kind {
        RegistrationKind::Guest => true,
        RegistrationKind::User => false,
        _ => return Err(MatrixError::invalid_param("kind must be user or guest")),
    };
    if is_guest && !registration.guests {
        return Err(MatrixError::forbidden("Guest access is disabled"));
    }
    if !is_guest && !registration.enabled {
        return Err(MatrixError::forbidden("Registration has been disabled"));
    }
    let flows: &[&[&'static str]] = if registration.tokens.is_empty() {
        &[&[uia::DUMMY]]
    } else {
        &[&[uia::REGISTRATION_TOKEN]]
    };
    let session = body
        .auth
        .as_ref()
        .and_then(|a| a.session())
        .map(str::to_owned);
    if let (Some(sid), false) = (&session, is_guest) {
        if has_no_params(&body) {
            if let Some(p) = state.uia.recall(sid) {
                apply_params(&mut body, &p);
            }
        }
        if let Some(localpart) = state.uia.outcome(sid) {
            // The completing request again: the same account, logged in anew.
            state
                .uia
                .check(&state, body.auth.as_ref(), flows, uia::KEPT_PURPOSE, None)
                .await?;
            return login(&state, localpart, body, req.client).await;
        }
    }

    let mut upgrade = None;
    let localpart = if is_guest {
        generated_localpart()
    } else {
        // Name and password problems are reported before auth, so a client learns of
        // them before the user completes any stage.
        if body
            .password
            .as_ref()
            .is_some_and(|p| p.len() > MAX_PASSWORD_LEN)
        {
            return Err(MatrixError::invalid_param("Password too long"));
        }
        upgrade = guest_to_upgrade(&state, &body).await?;
        let localpart = match (&upgrade, &body.username) {
            (Some(guest), _) => guest.clone(),
            (None, Some(name)) => {
                let lp = validate_localpart(state.server_name(), name)?;
                let free = state
                    .userapi
                    .send(QueryAccountAvailability {
                        localpart: lp.clone(),
                    })
                    .await?;
                if !free {
                    return Err(MatrixError::new("M_USER_IN_USE", "User ID already taken."));
                }
                lp
            }
            (None, None) => generated_localpart(),
        };
        if let Err(e) = state
            .uia
            .check(&state, body.auth.as_ref(), flows, uia::KEPT_PURPOSE, None)
            .await
        {
            if let Some(sid) = e.extra.get("session").and_then(|v| v.as_str()) {
                state.uia.remember(sid, params_of(&body));
            }
            return Err(e);
        }
        if body.password.is_none() {
            return Err(MatrixError::new("M_MISSING_PARAM", "Missing password"));
        }
        localpart
    };

    match (upgrade.is_some(), body.password.clone()) {
        (true, Some(password)) => {
            state
                .userapi
                .send(PerformGuestUpgrade {
                    localpart: localpart.clone(),
                    password,
                })
                .await?;
        }
        _ => {
            let display_name = if is_guest {
                None
            } else {
                Some(localpart.clone())
            };
            state
                .userapi
                .send(PerformAccountCreation {
                    localpart: localpart.clone(),
                    password: if is_guest { None } else { body.password.take() },
                    is_guest,
                    display_name,
                })
                .await
                .map_err(|e| match e {
                    UserApiError::UserInUse => {
                        MatrixError::new("M_USER_IN_USE", "User ID already taken.")
                    }
                    other => other.into(),
                })?;
        }
    }
    if let Some(sid) = &session {
        state.uia.set_outcome(sid, localpart.clone());
    }
    login(&state, localpart, body, req.client).await
}

/// The answer to a registration: the user ID and, unless `inhibit_login`, a new session.
/// Written out as Synapse answers: with the (deprecated) `home_server`, and without
/// `device_id` when no session was made.
async fn login(
    state: &AppState,
    localpart: String,
    body: register::v3::Request,
    client: crate::routing::ruma::ClientInfo,
) -> Result<HttpResponse, MatrixError> {
    let user_id: OwnedUserId = format!("@{localpart}:{}", state.server_name())
        .try_into()
        .map_err(|e| MatrixError::internal(e))?;
    let mut out = serde_json::json!({
        "user_id": user_id,
        "home_server": state.server_name(),
    });
    if body.inhibit_login {
        return Ok(HttpResponse::Ok().json(out));
    }
    let session = state
        .userapi
        .send(PerformDeviceCreation {
            localpart,
            device_id: body.device_id.map(|d| d.to_string()),
            display_name: body.initial_device_display_name,
            ip: client.ip,
            user_agent: client.user_agent,
            refresh_token: body.refresh_token,
            password_fingerprint: None,
        })
        .await?;
    out["access_token"] = serde_json::json!(session.access_token);
    out["device_id"] = serde_json::json!(session.device_id);
    if let Some(refresh) = session.refresh_token {
        out["refresh_token"] = serde_json::json!(refresh);
    }
    if let Some(ms) = session.expires_in_ms {
        out["expires_in_ms"] = serde_json::json!(ms);
    }
    Ok(HttpResponse::Ok().json(out))
}

/// # `GET /_matrix/client/v3/register/available`
pub async fn get_username_availability(
    state: web::Data<AppState>,
    req: Ruma<get_username_availability::v3::Request>,
) -> RumaResult<get_username_availability::v3::Response> {
    let localpart = validate_localpart(state.server_name(), &req.body.username)?;
    let free = state
        .userapi
        .send(QueryAccountAvailability { localpart })
        .await?;
    if !free {
        return Err(MatrixError::new("M_USER_IN_USE", "User ID already taken."));
    }
    Ok(RumaResponse(get_username_availability::v3::Response::new(
        true,
    )))
}

/// # `GET /_matrix/client/v1/register/m.login.registration_token/validity`
pub async fn check_registration_token_validity(
    state: web::Data<AppState>,
    req: Ruma<check_registration_token_validity::v1::Request>,
) -> RumaResult<check_registration_token_validity::v1::Response> {
    if !state.config.registration.enabled {
        return Err(MatrixError::forbidden("Registration has been disabled"));
    }
    let valid = state.config.registration.tokens.contains(&req.body.token);
    Ok(RumaResponse(
        check_registration_token_validity::v1::Response::new(valid),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn localpart_rules() {
        let cases: &[(&str, Option<&str>)] = &[
            ("alice", Some("alice")),
            ("Alice", Some("alice")),
            ("a.b_c=d-e/f+g", Some("a.b_c=d-e/f+g")),
            ("", None),
            ("al ice", None),
            ("al:ice", None),
            ("_bridge", None),
            ("héllo", None),
        ];
        for (input, expect) in cases {
            let got = validate_localpart("example.org", input).ok();
            assert_eq!(got.as_deref(), *expect, "{input:?}");
        }
        assert!(validate_localpart("example.org", &"a".repeat(242)).is_ok());
        assert!(validate_localpart("example.org", &"a".repeat(243)).is_err());
    }
}
