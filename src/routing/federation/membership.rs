//! Other servers' users joining, leaving, knocking and being invited (signed requests):
//! `make_join`, `send_join` v2, `make_leave`, `send_leave` v2, `make_knock`, `send_knock` for
//! our rooms, and `invite` v2 of our users. The checks of the events are the roomserver's
//! (`QueryMembershipTemplate`, `QueryJoinAuthorisation`, `PerformRemoteMembership`,
//! `InputRemoteInvite`); here the request's origin is matched
//! against the user it speaks for, the room's server ACL is asked about it
//! ([`super::acl::ensure_allowed`], 403 before anything else about the room), and the answers
//! are shaped.

use super::acl;
use crate::actors::roomserver::messages::{
    InputRemoteInvite, JoinAuthorisation, PerformRemoteMembership, QueryJoinAuthorisation,
    QueryMembershipTemplate,
};
use crate::actors::roomserver::RoomserverError;
use crate::room_versions::STABLE;
use crate::routing::error::MatrixError;
use crate::routing::ruma::{Ruma, RumaResponse, RumaResult};
use crate::routing::AppState;
use actix_web::web;
use ruma::api::federation::membership::{
    create_invite, create_join_event, create_knock_event, create_leave_event, prepare_join_event,
    prepare_knock_event, prepare_leave_event, RawStrippedState,
};
use ruma::{RoomVersionId, UserId};
use serde_json::value::{to_raw_value, RawValue};
use serde_json::{json, Value};

/// The user a request speaks for must be one of the origin's (403 `M_FORBIDDEN`, as Synapse).
fn ensure_origin(user: &UserId, origin: &ruma::ServerName) -> Result<(), MatrixError> {
    if user.server_name() != origin {
        return Err(MatrixError::forbidden(format!(
            "{user} is not a user of {origin}"
        )));
    }
    Ok(())
}

/// A roomserver refusal of another server's event: its checks are `M_INVALID_PARAM`, as the
/// spec recommends for `send_join`; the rest as usual.
fn refusal(e: RoomserverError) -> MatrixError {
    match e {
        RoomserverError::BadRequest(why) => MatrixError::invalid_param(why),
        RoomserverError::NoRoom => MatrixError::not_found("Unknown room"),
        e => e.into(),
    }
}

fn raw(v: &Value) -> Result<Box<RawValue>, MatrixError> {
    to_raw_value(v).map_err(|e| MatrixError::internal(e))
}

/// A membership template for `user`, of the origin server (`content`: a JSON object with
/// `membership`).
async fn template(
    state: &AppState,
    room_id: &str,
    user: &UserId,
    content: Value,
    versions: Option<Vec<String>>,
) -> Result<(RoomVersionId, Box<RawValue>), MatrixError> {
    let made = state
        .roomserver
        .send(QueryMembershipTemplate {
            room_id: room_id.to_owned(),
            sender: user.to_string(),
            state_key: user.to_string(),
            content,
            supported_versions: versions,
        })
        .await
        .map_err(refusal)?;
    let version = RoomVersionId::try_from(made.room_version.as_str())
        .map_err(|e| MatrixError::internal(e))?;
    Ok((version, raw(&made.event)?))
}

/// # `GET /_matrix/federation/v1/make_join/{roomId}/{userId}`
///
/// A join template for a user of the origin: 404 for a room not known here, 400
/// `M_INCOMPATIBLE_ROOM_VERSION` (with `room_version`) when the room's version is not among
/// `ver` (only `1` when none is given, as the spec says), 403 when the user may not join.
/// A restricted room's template names one of our users who vouches for the join
/// (`join_authorised_via_users_server`) when the user is in an allowed room we are in; 403
/// when they are in none and we are in all, 400 `M_UNABLE_TO_AUTHORISE_JOIN` when we are
/// not in some (another server may tell), 400 `M_UNABLE_TO_GRANT_JOIN` when none of our
/// users may invite (the joining server should try another).
pub async fn make_join(
    state: web::Data<AppState>,
    req: Ruma<prepare_join_event::v1::Request>,
) -> RumaResult<prepare_join_event::v1::Response> {
    ensure_origin(&req.body.user_id, &req.sender)?;
    acl::ensure_allowed(&state, req.body.room_id.as_str(), req.sender.as_str()).await?;
    let versions: Vec<String> = if req.body.ver.is_empty() {
        vec!["1".to_owned()]
    } else {
        req.body.ver.iter().map(|v| v.to_string()).collect()
    };
    let authorisation = state
        .roomserver
        .send(QueryJoinAuthorisation {
            room_id: req.body.room_id.to_string(),
            user_id: req.body.user_id.to_string(),
        })
        .await
        .map_err(refusal)?;
    let mut content = json!({"membership": "join"});
    let refused = match authorisation {
        JoinAuthorisation::NotNeeded => None,
        JoinAuthorisation::Authorised { via } => {
            content["join_authorised_via_users_server"] = json!(via);
            None
        }
        JoinAuthorisation::NotAllowed => Some(MatrixError::forbidden(
            "You are not in any of the rooms this room's join rules allow",
        )),
        JoinAuthorisation::CannotCheck => Some(MatrixError::new(
            "M_UNABLE_TO_AUTHORISE_JOIN",
            "This server is not in the rooms this room's join rules allow, and cannot tell whether the user is",
        )),
        JoinAuthorisation::NoLocalInviter => Some(MatrixError::new(
            "M_UNABLE_TO_GRANT_JOIN",
            "None of this server's users in the room may invite: try another server",
        )),
    };
    if let Some(refused) = refused {
        // The room's version and whether we follow the room are answered first, as for any
        // make_join (the auth rules' own refusal of the bare join is this one).
        return match template(
            &state,
            req.body.room_id.as_str(),
            &req.body.user_id,
            content,
            Some(versions),
        )
        .await
        {
            Err(e) if e.errcode != "M_FORBIDDEN" => Err(e),
            _ => Err(refused),
        };
    }
    let (version, event) = template(
        &state,
        req.body.room_id.as_str(),
        &req.body.user_id,
        content,
        Some(versions),
    )
    .await?;
    let mut response = prepare_join_event::v1::Response::new(event);
    response.room_version = Some(version);
    Ok(RumaResponse(response))
}

/// # `PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}`
///
/// The origin's signed join: checked and input by the roomserver; the answer is the state
/// before it and the auth chain (`omit_members` leaves member events out of `state`).
pub async fn send_join(
    state: web::Data<AppState>,
    req: Ruma<create_join_event::v2::Request>,
) -> RumaResult<create_join_event::v2::Response> {
    acl::ensure_allowed(&state, req.body.room_id.as_str(), req.sender.as_str()).await?;
    let event: Value = serde_json::from_str(req.body.pdu.get())
        .map_err(|e| MatrixError::bad_json(format!("The join event is not JSON: {e}")))?;
    let answer = state
        .roomserver
        .send(PerformRemoteMembership {
            room_id: req.body.room_id.to_string(),
            event_id: req.body.event_id.to_string(),
            origin: req.sender.to_string(),
            membership: "join".to_owned(),
            event,
            omit_members: req.body.omit_members,
        })
        .await
        .map_err(refusal)?;
    let mut room_state = create_join_event::v2::RoomState::new();
    room_state.members_omitted = answer.members_omitted;
    room_state.state = answer.state.iter().map(raw).collect::<Result<_, _>>()?;
    room_state.auth_chain = answer
        .auth_chain
        .iter()
        .map(raw)
        .collect::<Result<_, _>>()?;
    room_state.event = Some(raw(&answer.event)?);
    room_state.servers_in_room = Some(answer.servers_in_room);
    Ok(RumaResponse(create_join_event::v2::Response::new(
        room_state,
    )))
}

/// # `GET /_matrix/federation/v1/make_leave/{roomId}/{userId}`
pub async fn make_leave(
    state: web::Data<AppState>,
    req: Ruma<prepare_leave_event::v1::Request>,
) -> RumaResult<prepare_leave_event::v1::Response> {
    ensure_origin(&req.body.user_id, &req.sender)?;
    acl::ensure_allowed(&state, req.body.room_id.as_str(), req.sender.as_str()).await?;
    let (version, event) = template(
        &state,
        req.body.room_id.as_str(),
        &req.body.user_id,
        json!({"membership": "leave"}),
        None,
    )
    .await?;
    Ok(RumaResponse(prepare_leave_event::v1::Response::new(
        Some(version),
        event,
    )))
}

/// # `PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId}`
pub async fn send_leave(
    state: web::Data<AppState>,
    req: Ruma<create_leave_event::v2::Request>,
) -> RumaResult<create_leave_event::v2::Response> {
    acl::ensure_allowed(&state, req.body.room_id.as_str(), req.sender.as_str()).await?;
    let event: Value = serde_json::from_str(req.body.pdu.get())
        .map_err(|e| MatrixError::bad_json(format!("The leave event is not JSON: {e}")))?;
    state
        .roomserver
        .send(PerformRemoteMembership {
            room_id: req.body.room_id.to_string(),
            event_id: req.body.event_id.to_string(),
            origin: req.sender.to_string(),
            membership: "leave".to_owned(),
            event,
            omit_members: false,
        })
        .await
        .map_err(refusal)?;
    Ok(RumaResponse(create_leave_event::v2::Response::new()))
}

/// # `GET /_matrix/federation/v1/make_knock/{roomId}/{userId}?ver=...`
///
/// A knock template for a user of the origin (403 otherwise): `ver` is required (400
/// `M_MISSING_PARAM`); 404 for a room not known here; 400 `M_INCOMPATIBLE_ROOM_VERSION`
/// (with `room_version`) when the room's version is not among `ver` or has no knocking
/// (before 7); 403 when the auth rules refuse the knock (the join rule is not `knock` or
/// `knock_restricted`, the user is banned, invited or joined).
pub async fn make_knock(
    state: web::Data<AppState>,
    req: Ruma<prepare_knock_event::v1::Request>,
) -> RumaResult<prepare_knock_event::v1::Response> {
    ensure_origin(&req.body.user_id, &req.sender)?;
    acl::ensure_allowed(&state, req.body.room_id.as_str(), req.sender.as_str()).await?;
    if req.body.ver.is_empty() {
        return Err(MatrixError::new(
            "M_MISSING_PARAM",
            "ver is required: the room versions the knocking server supports",
        ));
    }
    // Only versions with knocking are worth offering.
    let versions: Vec<String> = req
        .body
        .ver
        .iter()
        .map(|v| v.to_string())
        .filter(|v| crate::pdu::rules(v).is_ok_and(|(_, r)| r.authorization.knocking))
        .collect();
    let (version, event) = template(
        &state,
        req.body.room_id.as_str(),
        &req.body.user_id,
        json!({"membership": "knock"}),
        Some(versions),
    )
    .await
    .map_err(|e| {
        if e.errcode == "M_INCOMPATIBLE_ROOM_VERSION" {
            MatrixError {
                error:
                    "Your homeserver does not support the features required to knock on this room"
                        .to_owned(),
                ..e
            }
        } else {
            e
        }
    })?;
    Ok(RumaResponse(prepare_knock_event::v1::Response::new(
        version, event,
    )))
}

/// # `PUT /_matrix/federation/v1/send_knock/{roomId}/{eventId}`
///
/// The origin's signed knock: checked and input by the roomserver (400 `M_INVALID_PARAM`
/// for an event that is not a knock of a user of the origin into this room, 403 when the
/// auth rules refuse it, 404 for a room not known here); the answer is the room's state
/// events a knocking user may see (`knock_room_state`, full PDUs as for invites).
pub async fn send_knock(
    state: web::Data<AppState>,
    req: Ruma<create_knock_event::v1::Request>,
) -> RumaResult<create_knock_event::v1::Response> {
    acl::ensure_allowed(&state, req.body.room_id.as_str(), req.sender.as_str()).await?;
    let event: Value = serde_json::from_str(req.body.pdu.get())
        .map_err(|e| MatrixError::bad_json(format!("The knock event is not JSON: {e}")))?;
    state
        .roomserver
        .send(PerformRemoteMembership {
            room_id: req.body.room_id.to_string(),
            event_id: req.body.event_id.to_string(),
            origin: req.sender.to_string(),
            membership: "knock".to_owned(),
            event,
            omit_members: false,
        })
        .await
        .map_err(refusal)?;
    let knock_room_state = crate::routing::client::membership::stripped_room_state(
        &state,
        req.body.room_id.as_str(),
        None,
    )
    .await?
    .iter()
    .map(|e| raw(e).map(RawStrippedState::Pdu))
    .collect::<Result<Vec<_>, _>>()?;
    Ok(RumaResponse(create_knock_event::v1::Response::new(
        knock_room_state,
    )))
}

/// # `PUT /_matrix/federation/v2/invite/{roomId}/{eventId}`
///
/// The origin invites one of our users: 400 `M_INCOMPATIBLE_ROOM_VERSION` for a room
/// version we do not support, 403 for an invitee of another server or a sender not of the
/// origin's, 400 `M_INVALID_PARAM` for an event that does not check; otherwise the event
/// signed by us (the user sees the invite in `/sync`).
pub async fn invite(
    state: web::Data<AppState>,
    req: Ruma<create_invite::v2::Request>,
) -> RumaResult<create_invite::v2::Response> {
    let version = req.body.room_version.to_string();
    if !STABLE.contains(&version.as_str()) {
        return Err(MatrixError::new(
            "M_INCOMPATIBLE_ROOM_VERSION",
            format!("This server does not support room version {version}"),
        )
        .with("room_version", version));
    }
    // A room known here judges the inviting server by its ACL (one not known here has none).
    acl::ensure_allowed(&state, req.body.room_id.as_str(), req.sender.as_str()).await?;
    let event: Value = serde_json::from_str(req.body.event.get())
        .map_err(|e| MatrixError::bad_json(format!("The invite event is not JSON: {e}")))?;
    if let Some(sender) = event["sender"]
        .as_str()
        .and_then(|s| <&UserId>::try_from(s).ok())
    {
        ensure_origin(sender, &req.sender)?;
    }
    let invite_room_state = req
        .body
        .invite_room_state
        .iter()
        .map(serde_json::to_value)
        .collect::<Result<Vec<Value>, _>>()
        .map_err(|e| MatrixError::bad_json(e.to_string()))?;
    let signed = state
        .roomserver
        .send(InputRemoteInvite {
            room_id: req.body.room_id.to_string(),
            event_id: req.body.event_id.to_string(),
            origin: req.sender.to_string(),
            room_version: version,
            event,
            invite_room_state,
        })
        .await
        .map_err(refusal)?;
    Ok(RumaResponse(create_invite::v2::Response::new(raw(
        &signed,
    )?)))
}
