//! Registration: `/register` with user-interactive auth, availability, token validity.

use super::super::uia;
use crate::actors::userapi::messages::{
    PerformAccountCreation, PerformDeviceCreation, QueryAccountAvailability,
};
use crate::actors::userapi::UserApiError;
use crate::routing::error::MatrixError;
use crate::routing::ruma::{Ruma, RumaResponse, RumaResult};
use crate::routing::AppState;
use actix_web::web;
use ruma::api::client::account::register::{self, RegistrationKind};
use ruma::api::client::account::{check_registration_token_validity, get_username_availability};
use ruma::OwnedUserId;
use std::time::Duration;

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

/// # `POST /_matrix/client/v3/register`
pub async fn register(
    state: web::Data<AppState>,
    req: Ruma<register::v3::Request>,
) -> RumaResult<register::v3::Response> {
    let body = req.body;
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
        let localpart = match &body.username {
            Some(name) => {
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
            None => generated_localpart(),
        };
        let flows: &[&[&'static str]] = if registration.tokens.is_empty() {
            &[&[uia::DUMMY]]
        } else {
            &[&[uia::REGISTRATION_TOKEN]]
        };
        state
            .uia
            .check(&state, body.auth.as_ref(), flows, "register", None)
            .await?;
        if body.password.is_none() {
            return Err(MatrixError::new("M_MISSING_PARAM", "Missing password"));
        }
        localpart
    };

    let display_name = if is_guest {
        None
    } else {
        Some(localpart.clone())
    };
    state
        .userapi
        .send(PerformAccountCreation {
            localpart: localpart.clone(),
            password: if is_guest { None } else { body.password },
            is_guest,
            display_name,
        })
        .await
        .map_err(|e| match e {
            UserApiError::UserInUse => MatrixError::new("M_USER_IN_USE", "User ID already taken."),
            other => other.into(),
        })?;

    let user_id: OwnedUserId = format!("@{localpart}:{}", state.server_name())
        .try_into()
        .map_err(|_| MatrixError::internal())?;
    if body.inhibit_login {
        return Ok(RumaResponse(register::v3::Response::new(user_id)));
    }
    let session = state
        .userapi
        .send(PerformDeviceCreation {
            localpart,
            device_id: body.device_id.map(|d| d.to_string()),
            display_name: body.initial_device_display_name,
            ip: req.client.ip,
            user_agent: req.client.user_agent,
            refresh_token: body.refresh_token,
            password_fingerprint: None,
        })
        .await?;
    let mut response = register::v3::Response::new(user_id);
    response.access_token = Some(session.access_token);
    response.device_id = Some(session.device_id.into());
    response.refresh_token = session.refresh_token;
    response.expires_in = session.expires_in_ms.map(Duration::from_millis);
    Ok(RumaResponse(response))
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
