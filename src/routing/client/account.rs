//! The account: whoami, password, deactivation, third-party identifiers.

use super::super::uia::{self, PasswordOwner};
use crate::actors::roomserver::messages::QueryRoomsWithMembership;
use crate::actors::userapi::messages::{PerformAccountDeactivation, PerformPasswordUpdate};
use crate::routing::error::MatrixError;
use crate::routing::ruma::{Authed, Ruma, RumaResponse, RumaResult};
use crate::routing::AppState;
use actix_web::web;
use ruma::api::client::account::{
    add_3pid, bind_3pid, change_password, deactivate, get_3pids,
    request_3pid_management_token_via_email, request_3pid_management_token_via_msisdn, whoami,
    ThirdPartyIdRemovalStatus,
};

/// # `GET /_matrix/client/v3/account/whoami`
///
/// Written out so that `is_guest` is there when false too (ruma leaves it out; Synapse and
/// clients expect it).
pub async fn whoami(
    req: Ruma<whoami::v3::Request>,
) -> Result<actix_web::HttpResponse, MatrixError> {
    Ok(actix_web::HttpResponse::Ok().json(serde_json::json!({
        "user_id": req.sender.user_id,
        "device_id": req.sender.device_id,
        "is_guest": req.sender.is_guest,
    })))
}

fn require(sender: Option<Authed>) -> Result<Authed, MatrixError> {
    sender.ok_or_else(|| MatrixError::new("M_MISSING_TOKEN", "Missing access token"))
}

/// # `POST /_matrix/client/v3/account/password`
pub async fn change_password(
    state: web::Data<AppState>,
    req: Ruma<change_password::v3::Request>,
) -> RumaResult<change_password::v3::Response> {
    let sender = require(req.sender)?;
    let body = req.body;
    if body.new_password.is_empty() {
        return Err(MatrixError::new(
            "M_MISSING_PARAM",
            "new_password must not be empty",
        ));
    }
    if body.new_password.len() > super::register::MAX_PASSWORD_LEN {
        return Err(MatrixError::invalid_param("Password too long"));
    }
    let user_id = sender.user_id.to_string();
    state
        .uia
        .check(
            &state,
            body.auth.as_ref(),
            &[&[uia::PASSWORD]],
            &format!("change_password:{user_id}"),
            Some(PasswordOwner {
                localpart: &sender.localpart,
                user_id: &user_id,
            }),
        )
        .await?;
    state
        .userapi
        .send(PerformPasswordUpdate {
            localpart: sender.localpart.clone(),
            new_password: body.new_password,
            logout_devices: body.logout_devices,
            keep_device: Some(sender.device_id.to_string()),
        })
        .await?;
    Ok(RumaResponse(change_password::v3::Response::new()))
}

/// # `POST /_matrix/client/v3/account/deactivate`
pub async fn deactivate(
    state: web::Data<AppState>,
    req: Ruma<deactivate::v3::Request>,
) -> RumaResult<deactivate::v3::Response> {
    let sender = require(req.sender)?;
    let user_id = sender.user_id.to_string();
    state
        .uia
        .check(
            &state,
            req.body.auth.as_ref(),
            &[&[uia::PASSWORD]],
            &format!("deactivate:{user_id}"),
            Some(PasswordOwner {
                localpart: &sender.localpart,
                user_id: &user_id,
            }),
        )
        .await?;
    state
        .userapi
        .send(PerformAccountDeactivation {
            localpart: sender.localpart.clone(),
            erase: req.body.erase,
        })
        .await?;
    part_all_rooms(&state, &sender).await;
    Ok(RumaResponse(deactivate::v3::Response::new(
        ThirdPartyIdRemovalStatus::NoSupport,
    )))
}

/// A deactivated user leaves every room they are in, and their pending invites and knocks are
/// withdrawn (as Synapse). A room that refuses the leave is logged and skipped.
async fn part_all_rooms(state: &AppState, sender: &Authed) {
    let user = sender.user_id.to_string();
    for membership in ["join", "invite", "knock"] {
        let rooms = state
            .roomserver
            .send(QueryRoomsWithMembership {
                user_id: user.clone(),
                membership: membership.to_owned(),
            })
            .await;
        let rooms = match rooms {
            Ok(r) => r,
            Err(e) => {
                let e = MatrixError::from(e);
                tracing::warn!(user_id = %user, errcode = e.errcode, error = %e.error, "rooms of a deactivated user unknown");
                continue;
            }
        };
        for room in rooms {
            let left = super::rooms::send(
                state,
                sender,
                &room,
                "m.room.member",
                Some(&user),
                serde_json::json!({"membership": "leave"}),
                None,
            )
            .await;
            if let Err(e) = left {
                tracing::warn!(room_id = %room, user_id = %user, errcode = e.errcode, "deactivated user did not leave");
            }
        }
    }
}

/// # `GET /_matrix/client/v3/account/3pid`
///
/// This server binds no third-party identifiers, so the list is always empty.
pub async fn get_3pids(
    _req: Ruma<get_3pids::v3::Request>,
) -> Result<actix_web::HttpResponse, MatrixError> {
    // Written out so the empty list is present (ruma omits it).
    Ok(actix_web::HttpResponse::Ok().json(serde_json::json!({ "threepids": [] })))
}

fn threepid_denied() -> MatrixError {
    MatrixError::new(
        "M_THREEPID_DENIED",
        "Third-party identifiers are not supported on this server",
    )
}

/// # `POST /_matrix/client/v3/account/3pid/add`
pub async fn add_3pid(_req: Ruma<add_3pid::v3::Request>) -> RumaResult<add_3pid::v3::Response> {
    Err(threepid_denied())
}

/// # `POST /_matrix/client/v3/account/3pid/bind`
pub async fn bind_3pid(_req: Ruma<bind_3pid::v3::Request>) -> RumaResult<bind_3pid::v3::Response> {
    Err(threepid_denied())
}

/// # `POST /_matrix/client/v3/account/3pid/email/requestToken`
pub async fn request_3pid_management_token_via_email(
    _req: Ruma<request_3pid_management_token_via_email::v3::Request>,
) -> RumaResult<request_3pid_management_token_via_email::v3::Response> {
    Err(threepid_denied())
}

/// # `POST /_matrix/client/v3/account/3pid/msisdn/requestToken`
pub async fn request_3pid_management_token_via_msisdn(
    _req: Ruma<request_3pid_management_token_via_msisdn::v3::Request>,
) -> RumaResult<request_3pid_management_token_via_msisdn::v3::Response> {
    Err(threepid_denied())
}
