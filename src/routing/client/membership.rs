//! Membership: join, leave, invite, kick, ban, unban, and the member lists. Each is a
//! member event authorized by the room's auth rules in the roomserver.

use super::rooms::{
    add_profile, client_event, current_state, current_state_if_known, ensure_can_read,
    readable_state, send, send_event,
};
use crate::actors::federationapi::messages::{
    PerformInvite, PerformJoin, PerformKnock, PerformLeave,
};
use crate::actors::roomserver::messages::{
    InputJoinedRoom, InputOutcome, InputRemoteKnock, InputRoomEvent, JoinAuthorisation,
    PerformForget, PerformRetireRemoteInvite, PerformRetireRemoteKnock, QueryJoinAuthorisation,
    QueryJoinedRooms, QueryJoinedServers, QueryMembershipTemplate, QueryRemoteInvite,
    QueryRemoteKnock, QueryStateAtPosition,
};
use crate::actors::roomserver::RoomserverError;
use crate::identity::InviteDetails;
use crate::routing::error::MatrixError;
use crate::routing::ruma::{Authed, Ruma, RumaResponse, RumaResult};
use crate::routing::AppState;
use actix_web::{web, HttpResponse};
use ruma::api::client::knock::knock_room;
use ruma::api::client::membership::Invite3pid;
use ruma::api::client::membership::{
    ban_user, forget_room, get_member_events, invite_user, join_room_by_id,
    join_room_by_id_or_alias, joined_members, joined_rooms, kick_user, leave_room, unban_user,
};
use ruma::thirdparty::Medium;
use ruma::{OwnedRoomId, RoomOrAliasId};
use serde_json::{json, Map, Value};

/// Sets `target`'s membership in a room, as `sender`.
async fn set_membership(
    state: &AppState,
    sender: &Authed,
    room_id: &str,
    target: &str,
    membership: &str,
    reason: Option<String>,
) -> Result<(), MatrixError> {
    set_membership_with(
        state,
        sender,
        room_id,
        target,
        membership,
        reason,
        Map::new(),
        "Unknown room",
    )
    .await
}

/// The keys of a join request's body that become member-event content as they are (Synapse
/// passes every key through; the ones the server sets win).
fn extra_content(raw: &[u8]) -> Map<String, Value> {
    match serde_json::from_slice(raw) {
        Ok(Value::Object(mut m)) => {
            for key in [
                "membership",
                "third_party_signed",
                "join_authorised_via_users_server",
            ] {
                m.remove(key);
            }
            m
        }
        _ => Map::new(),
    }
}

/// Sets a membership with `extra` keys in its content (under the ones set here). A room
/// unknown here is a 404 saying `unknown_room`.
#[allow(clippy::too_many_arguments)]
async fn set_membership_with(
    state: &AppState,
    sender: &Authed,
    room_id: &str,
    target: &str,
    membership: &str,
    reason: Option<String>,
    extra: Map<String, Value>,
    unknown_room: &str,
) -> Result<(), MatrixError> {
    let mut content = Value::Object(extra);
    content["membership"] = json!(membership);
    if let Some(reason) = reason {
        content["reason"] = json!(reason);
    }
    if membership == "join" {
        // The joining user's profile travels with their membership.
        add_profile(state, sender, &mut content).await?;
        // As Synapse marks them: a guest's join says so, and revoking guest access (see
        // `rooms::kick_guests`) finds them by it.
        if sender.is_guest && target == sender.user_id.as_str() {
            content["kind"] = json!("guest");
        }
    }
    match send_event(
        state,
        sender,
        room_id,
        "m.room.member",
        Some(target),
        content,
        None,
    )
    .await
    {
        Ok(_) => Ok(()),
        Err(RoomserverError::NoRoom) => Err(MatrixError::not_found(unknown_room)),
        Err(e) => Err(e.into()),
    }
}

/// A user's current membership of a room (`None`: never had one).
async fn membership_of(
    state: &AppState,
    room_id: &str,
    user: &str,
) -> Result<Option<String>, MatrixError> {
    Ok(current_state(
        state,
        room_id,
        vec![("m.room.member".into(), user.to_owned())],
    )
    .await?
    .first()
    .and_then(|e| e.json["content"]["membership"].as_str().map(str::to_owned)))
}

/// Joins a room: here when this server is in it (or no other server is known to ask), else
/// through other servers (`via`, then the server of the user's invite, the servers the room
/// had joined when we last held it, and the room ID's server for room IDs that name one).
async fn join(
    state: &AppState,
    sender: &Authed,
    room_id: &str,
    reason: Option<String>,
    extra: Map<String, Value>,
    via: Vec<String>,
) -> Result<(), MatrixError> {
    let ours = state.server_name();
    let known = state
        .roomserver
        .send(QueryJoinedServers {
            room_id: room_id.to_owned(),
        })
        .await?;
    let in_room = known
        .as_ref()
        .is_some_and(|servers| servers.iter().any(|s| s == ours));
    let mut servers = via;
    if !in_room {
        let invite = state
            .roomserver
            .send(QueryRemoteInvite {
                room_id: room_id.to_owned(),
                user_id: sender.user_id.to_string(),
            })
            .await?;
        servers.extend(
            invite
                .as_ref()
                .and_then(|i| i.event["sender"].as_str())
                .and_then(|s| s.split_once(':'))
                .map(|(_, server)| server.to_owned()),
        );
        servers.extend(known.clone().unwrap_or_default());
        servers.extend(
            OwnedRoomId::try_from(room_id)
                .ok()
                .and_then(|r| r.server_name().map(|s| s.to_string())),
        );
        servers.retain(|s| s != ours);
    }
    let mut extra = extra;
    if in_room {
        // A restricted room (versions 8+): one of our users vouches for the join when the
        // user is in an allowed room; when none can, a server that can is asked instead.
        let authorisation = state
            .roomserver
            .send(QueryJoinAuthorisation {
                room_id: room_id.to_owned(),
                user_id: sender.user_id.to_string(),
            })
            .await?;
        match authorisation {
            JoinAuthorisation::NotNeeded => {
                return join_here(state, sender, room_id, reason, extra).await
            }
            JoinAuthorisation::Authorised { via } => {
                extra.insert("join_authorised_via_users_server".to_owned(), json!(via));
                return join_here(state, sender, room_id, reason, extra).await;
            }
            JoinAuthorisation::NotAllowed => {
                return Err(MatrixError::forbidden(
                    "You are not in any of the rooms this room's join rules allow",
                ))
            }
            JoinAuthorisation::CannotCheck | JoinAuthorisation::NoLocalInviter => {
                servers.extend(known.clone().unwrap_or_default());
                servers.retain(|s| s != ours);
                if servers.is_empty() {
                    return Err(MatrixError::forbidden(
                        "Nobody in this room can let you in: its join rules allow members of other rooms, and no user here who may invite can vouch for you",
                    ));
                }
            }
        }
    } else if known.is_some() && servers.is_empty() {
        return join_here(state, sender, room_id, reason, extra).await;
    }
    if servers.is_empty() {
        return Err(MatrixError::not_found(
            "Unknown room, and no server to join it through",
        ));
    }
    if sender.is_guest {
        return Err(MatrixError::forbidden(
            "Guests cannot join rooms on other servers",
        ));
    }
    let mut content = Value::Object(extra);
    if let Some(reason) = reason {
        content["reason"] = json!(reason);
    }
    add_profile(state, sender, &mut content).await?;
    let joined = state
        .federationapi
        .send(PerformJoin {
            room_id: room_id.to_owned(),
            user_id: sender.user_id.to_string(),
            servers,
            content,
        })
        .await?;
    state
        .roomserver
        .send(InputJoinedRoom {
            room_id: room_id.to_owned(),
            room_version: joined.room_version,
            join_event: joined.join_event,
            state: joined.state,
            auth_chain: joined.auth_chain,
        })
        .await
        .map_err(|e| match e {
            // The resident server's answer did not check: its fault, not the client's.
            RoomserverError::BadRequest(why) => MatrixError::new(
                "M_UNKNOWN",
                format!(
                    "{} gave an answer that does not check: {why}",
                    joined.server
                ),
            )
            .with_status(actix_web::http::StatusCode::BAD_GATEWAY),
            e => e.into(),
        })?;
    Ok(())
}

/// Joins a room this server is in.
async fn join_here(
    state: &AppState,
    sender: &Authed,
    room_id: &str,
    reason: Option<String>,
    extra: Map<String, Value>,
) -> Result<(), MatrixError> {
    if sender.is_guest {
        // Guests join only rooms that let them in (the spec's guest access module).
        let wanted = vec![("m.room.guest_access".into(), String::new())];
        match current_state_if_known(state, room_id, wanted).await? {
            Some(events)
                if events
                    .iter()
                    .any(|e| e.json["content"]["guest_access"] == "can_join") => {}
            // An unknown room gets the unknown-room answer below.
            None => {}
            _ => {
                return Err(MatrixError::forbidden(
                    "Guest access is not allowed in this room",
                ));
            }
        }
    }
    set_membership_with(
        state,
        sender,
        room_id,
        sender.user_id.as_str(),
        "join",
        reason,
        extra,
        "Unknown room",
    )
    .await
}

/// # `POST /_matrix/client/v3/rooms/{roomId}/join`
pub async fn join_room_by_id(
    state: web::Data<AppState>,
    req: Ruma<join_room_by_id::v3::Request>,
) -> RumaResult<join_room_by_id::v3::Response> {
    join(
        &state,
        &req.sender,
        req.body.room_id.as_str(),
        req.body.reason,
        extra_content(&req.raw),
        Vec::new(),
    )
    .await?;
    Ok(RumaResponse(join_room_by_id::v3::Response::new(
        req.body.room_id,
    )))
}

/// # `POST /_matrix/client/v3/join/{roomIdOrAlias}`
///
/// `via` (and the older `server_name`) name servers to join through; an alias adds the
/// servers its lookup gives.
pub async fn join_room_by_id_or_alias(
    state: web::Data<AppState>,
    req: Ruma<join_room_by_id_or_alias::v3::Request>,
) -> RumaResult<join_room_by_id_or_alias::v3::Response> {
    let target: &RoomOrAliasId = &req.body.room_id_or_alias;
    let mut via: Vec<String> = req.body.via.iter().map(|s| s.to_string()).collect();
    let room_id: OwnedRoomId = match <&ruma::RoomAliasId>::try_from(target.as_str()) {
        Ok(alias) => {
            let (room_id, servers) = super::directory::resolve_with_servers(&state, alias).await?;
            via.extend(servers);
            room_id
        }
        Err(_) => OwnedRoomId::try_from(target.as_str())
            .map_err(|_| MatrixError::invalid_param("Not a room ID or alias"))?,
    };
    join(
        &state,
        &req.sender,
        room_id.as_str(),
        req.body.reason,
        extra_content(&req.raw),
        via,
    )
    .await?;
    Ok(RumaResponse(join_room_by_id_or_alias::v3::Response::new(
        room_id,
    )))
}

/// # `POST /_matrix/client/v3/rooms/{roomId}/leave`
///
/// In a room this server does not hold, where the user only has an invite from another
/// server, the invite is rejected through that server (`make_leave`/`send_leave`); when it
/// cannot be reached the invite is still cleared here, as Synapse does.
pub async fn leave_room(
    state: web::Data<AppState>,
    req: Ruma<leave_room::v3::Request>,
) -> RumaResult<leave_room::v3::Response> {
    let me = req.sender.user_id.to_string();
    let room_id = req.body.room_id.as_str();
    match set_membership(
        &state,
        &req.sender,
        room_id,
        &me,
        "leave",
        req.body.reason.clone(),
    )
    .await
    {
        Ok(()) => {}
        // A room not held here (or held but no longer followed, where the stale state
        // refuses the leave): the remote invite, if there is one, is what to reject, else
        // the remote knock is what to rescind.
        Err(e) => {
            let reason = req.body.reason;
            match reject_remote_invite(&state, room_id, &me, reason.clone()).await? {
                Some(()) => {}
                None => rescind_remote_knock(&state, room_id, &me, reason)
                    .await?
                    .ok_or(e)?,
            }
        }
    }
    Ok(RumaResponse(leave_room::v3::Response::new()))
}

/// The leave of a room not held here (a rejected invite, a rescinded knock), made with
/// `make_leave`/`send_leave` through `servers`; `None` when none of them could take it (the
/// invite or knock is then cleared here anyway; `what` names it in the log).
async fn leave_through(
    state: &AppState,
    room_id: &str,
    user_id: &str,
    servers: Vec<String>,
    reason: Option<String>,
    what: &str,
) -> Option<serde_json::Value> {
    let mut content = json!({});
    if let Some(reason) = reason {
        content["reason"] = json!(reason);
    }
    let leave = PerformLeave {
        room_id: room_id.to_owned(),
        user_id: user_id.to_owned(),
        servers,
        content,
    };
    match state.federationapi.send(leave).await {
        Ok(event) => Some(event),
        Err(e) => {
            tracing::warn!(room_id, error = %e, "leaving {what} through the room's servers failed; clearing it here");
            None
        }
    }
}

/// Rejects the user's invite into a room not held here; `None` when there is none.
async fn reject_remote_invite(
    state: &AppState,
    room_id: &str,
    user_id: &str,
    reason: Option<String>,
) -> Result<Option<()>, MatrixError> {
    let Some(invite) = state
        .roomserver
        .send(QueryRemoteInvite {
            room_id: room_id.to_owned(),
            user_id: user_id.to_owned(),
        })
        .await?
    else {
        return Ok(None);
    };
    let mut servers: Vec<String> = invite.event["sender"]
        .as_str()
        .and_then(|s| s.split_once(':'))
        .map(|(_, server)| vec![server.to_owned()])
        .unwrap_or_default();
    servers.extend(
        OwnedRoomId::try_from(room_id)
            .ok()
            .and_then(|r| r.server_name().map(|s| s.to_string())),
    );
    let leave_event = leave_through(state, room_id, user_id, servers, reason, "an invite").await;
    state
        .roomserver
        .send(PerformRetireRemoteInvite {
            room_id: room_id.to_owned(),
            user_id: user_id.to_owned(),
            leave_event,
        })
        .await?;
    Ok(Some(()))
}

/// Rescinds the user's knock on a room not held here, through the servers that took it
/// (`make_leave`/`send_leave`); cleared here anyway when none can be reached. `None` when
/// there is no such knock.
async fn rescind_remote_knock(
    state: &AppState,
    room_id: &str,
    user_id: &str,
    reason: Option<String>,
) -> Result<Option<()>, MatrixError> {
    let Some(knock) = state
        .roomserver
        .send(QueryRemoteKnock {
            room_id: room_id.to_owned(),
            user_id: user_id.to_owned(),
        })
        .await?
    else {
        return Ok(None);
    };
    let leave_event =
        leave_through(state, room_id, user_id, knock.servers, reason, "a knock").await;
    state
        .roomserver
        .send(PerformRetireRemoteKnock {
            room_id: room_id.to_owned(),
            user_id: user_id.to_owned(),
            leave_event,
        })
        .await?;
    Ok(Some(()))
}

/// # `POST /_matrix/client/v3/rooms/{roomId}/invite`
///
/// By user ID, or by third-party identifier (`id_server`, `id_access_token`, `medium`,
/// `address`; see [`invite_3pid`]).
pub async fn invite_user(
    state: web::Data<AppState>,
    req: Ruma<invite_user::v3::Request>,
) -> RumaResult<invite_user::v3::Response> {
    let room_id = req.body.room_id.as_str();
    match req.body.recipient {
        invite_user::v3::InvitationRecipient::UserId(invitee) => {
            if super::local_part(state.server_name(), &invitee.user_id).is_some() {
                set_membership(
                    &state,
                    &req.sender,
                    room_id,
                    invitee.user_id.as_str(),
                    "invite",
                    invitee.reason,
                )
                .await?
            } else {
                invite_remote(
                    &state,
                    &req.sender,
                    room_id,
                    &invitee.user_id,
                    invitee.reason,
                    false,
                )
                .await?
            }
        }
        invite_user::v3::InvitationRecipient::ThirdPartyId(invite) => {
            let medium = check_3pid(&state, &invite)?;
            invite_3pid(&state, &req.sender, room_id, &invite, medium).await?
        }
        _ => return Err(MatrixError::bad_json("Unknown kind of invitation")),
    }
    Ok(RumaResponse(invite_user::v3::Response::new()))
}

/// The state events a user of another server sees of a room before joining it (an
/// invite's `invite_room_state`, a knock's `knock_room_state`; full PDUs as the spec asks
/// since v1.16): the room's create event, join rules, name, avatar, canonical alias,
/// encryption and topic, and `member`'s membership (the inviter's) when given.
pub(crate) async fn stripped_room_state(
    state: &AppState,
    room_id: &str,
    member: Option<&str>,
) -> Result<Vec<Value>, MatrixError> {
    let keys = [
        "m.room.create",
        "m.room.join_rules",
        "m.room.name",
        "m.room.avatar",
        "m.room.canonical_alias",
        "m.room.encryption",
        "m.room.topic",
    ];
    let mut wanted: Vec<(String, String)> = keys
        .iter()
        .map(|t| ((*t).to_owned(), String::new()))
        .collect();
    if let Some(member) = member {
        wanted.push(("m.room.member".to_owned(), member.to_owned()));
    }
    Ok(current_state(state, room_id, wanted)
        .await?
        .into_iter()
        .map(|e| e.json)
        .collect())
}

/// Invites another server's user: the invite built here (and authorized against the room's
/// state), signed by the invitee's server (`PUT /invite` v2, through the federationapi),
/// then input as any event from elsewhere.
pub async fn invite_remote(
    state: &AppState,
    sender: &Authed,
    room_id: &str,
    invitee: &ruma::UserId,
    reason: Option<String>,
    is_direct: bool,
) -> Result<(), MatrixError> {
    let mut content = json!({"membership": "invite"});
    if let Some(reason) = reason {
        content["reason"] = json!(reason);
    }
    if is_direct {
        content["is_direct"] = json!(true);
    }
    let template = state
        .roomserver
        .send(QueryMembershipTemplate {
            room_id: room_id.to_owned(),
            sender: sender.user_id.to_string(),
            state_key: invitee.to_string(),
            content,
            supported_versions: None,
        })
        .await?;
    let invite_room_state =
        stripped_room_state(state, room_id, Some(sender.user_id.as_str())).await?;
    let signed = state
        .federationapi
        .send(PerformInvite {
            room_version: template.room_version,
            template: template.event,
            invite_room_state,
        })
        .await?;
    match state
        .roomserver
        .send(InputRoomEvent {
            room_id: room_id.to_owned(),
            event: signed,
            send_on_behalf_of: None,
        })
        .await?
    {
        InputOutcome::Accepted { .. } => Ok(()),
        InputOutcome::Rejected { reason, .. } | InputOutcome::SoftFailed { reason, .. } => {
            Err(MatrixError::forbidden(reason))
        }
    }
}

/// Checks a third-party invite's fields before anything is asked of anyone; returns its
/// medium. Only `email` and `msisdn` are third-party media (400 `M_INVALID_PARAM` otherwise,
/// as for an empty address, an identity server that is not `host[:port]` or one on a
/// private address).
pub fn check_3pid(state: &AppState, invite: &Invite3pid) -> Result<&'static str, MatrixError> {
    let medium = match invite.medium {
        Medium::Email => "email",
        Medium::Msisdn => "msisdn",
        ref other => {
            return Err(MatrixError::invalid_param(format!(
                "Unknown third-party medium {:?}",
                other.as_str()
            )))
        }
    };
    if invite.address.trim().is_empty() {
        return Err(MatrixError::invalid_param("address must not be empty"));
    }
    if invite.id_access_token.is_empty() {
        return Err(MatrixError::new(
            "M_MISSING_PARAM",
            "id_access_token is required for a third-party invite",
        ));
    }
    state.identity.check_server(&invite.id_server)?;
    Ok(medium)
}

/// Invites a third-party identifier, as Synapse's `do_3pid_invite`: the identity server is
/// asked whom the address is bound to; a bound address becomes a plain invite of that user,
/// an unbound one an invite stored on the identity server (`store-invite`) and an
/// `m.room.third_party_invite` event (state key: the invite's token; content: the display
/// name and the keys that will sign the binding). When the address is bound later, the
/// identity server calls `/3pid/onbind` (`routing::federation::thirdparty`), which turns it
/// into the invite of the user.
///
/// The inviter must be in the room before the identity server is asked anything (so no
/// invitation mail goes out for a request the room would refuse).
pub async fn invite_3pid(
    state: &AppState,
    sender: &Authed,
    room_id: &str,
    invite: &Invite3pid,
    medium: &str,
) -> Result<(), MatrixError> {
    let me = sender.user_id.to_string();
    if membership_of(state, room_id, &me).await?.as_deref() != Some("join") {
        return Err(MatrixError::forbidden("You are not in the room"));
    }
    let bound = state
        .identity
        .lookup(
            &invite.id_server,
            &invite.id_access_token,
            medium,
            &invite.address,
        )
        .await?;
    if let Some(user_id) = bound {
        return set_membership(state, sender, room_id, user_id.as_str(), "invite", None).await;
    }
    // What the identity server's invitation mail shows, as Synapse sends it.
    let wanted: Vec<(String, String)> = [
        ("m.room.member", me.as_str()),
        ("m.room.canonical_alias", ""),
        ("m.room.name", ""),
        ("m.room.create", ""),
        ("m.room.join_rules", ""),
        ("m.room.avatar", ""),
    ]
    .iter()
    .map(|(t, k)| ((*t).to_owned(), (*k).to_owned()))
    .collect();
    let room_state = current_state(state, room_id, wanted).await?;
    let field = |kind: &str, key: &str| -> Option<String> {
        room_state
            .iter()
            .find(|e| e.json["type"] == kind)
            .and_then(|e| e.json["content"][key].as_str())
            .map(str::to_owned)
    };
    let details = InviteDetails {
        medium: medium.to_owned(),
        address: invite.address.clone(),
        room_id: room_id.to_owned(),
        room_alias: field("m.room.canonical_alias", "alias").unwrap_or_default(),
        room_avatar_url: field("m.room.avatar", "url").unwrap_or_default(),
        room_join_rules: field("m.room.join_rules", "join_rule").unwrap_or_default(),
        room_name: field("m.room.name", "name").unwrap_or_default(),
        room_type: field("m.room.create", "type"),
        sender: me.clone(),
        // A member without a display name is shown by user ID.
        sender_display_name: field("m.room.member", "displayname")
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| me.clone()),
        sender_avatar_url: field("m.room.member", "avatar_url").unwrap_or_default(),
    };
    let stored = state
        .identity
        .store_invite(&invite.id_server, &invite.id_access_token, &details)
        .await?;
    let content = json!({
        "display_name": stored.display_name,
        "public_keys": stored.public_keys,
        // For servers that read only the first key.
        "key_validity_url": stored.key_validity_url,
        "public_key": stored.public_key,
    });
    send(
        state,
        sender,
        room_id,
        "m.room.third_party_invite",
        Some(&stored.token),
        content,
        None,
    )
    .await?;
    Ok(())
}

/// Changes another user's membership, if their current one is among `from` (kicking someone
/// not in the room, or unbanning someone not banned, would do something else).
async fn moderate(
    state: &AppState,
    sender: &Authed,
    room_id: &str,
    target: &str,
    (from, refusal): (&[&str], &str),
    to: &str,
    reason: Option<String>,
) -> Result<(), MatrixError> {
    let current = membership_of(state, room_id, target).await?;
    if !from.is_empty() && !current.as_deref().is_some_and(|m| from.contains(&m)) {
        return Err(MatrixError::forbidden(refusal));
    }
    set_membership(state, sender, room_id, target, to, reason).await
}

/// # `POST /_matrix/client/v3/rooms/{roomId}/kick`
pub async fn kick_user(
    state: web::Data<AppState>,
    req: Ruma<kick_user::v3::Request>,
) -> RumaResult<kick_user::v3::Response> {
    let b = req.body;
    let from = (
        &["join", "invite", "knock"][..],
        "The user is not in the room",
    );
    moderate(
        &state,
        &req.sender,
        b.room_id.as_str(),
        b.user_id.as_str(),
        from,
        "leave",
        b.reason,
    )
    .await?;
    Ok(RumaResponse(kick_user::v3::Response::new()))
}

/// # `POST /_matrix/client/v3/rooms/{roomId}/ban`
pub async fn ban_user(
    state: web::Data<AppState>,
    req: Ruma<ban_user::v3::Request>,
) -> RumaResult<ban_user::v3::Response> {
    let b = req.body;
    // Anyone may be banned, whatever their membership (even none yet).
    moderate(
        &state,
        &req.sender,
        b.room_id.as_str(),
        b.user_id.as_str(),
        (&[], ""),
        "ban",
        b.reason,
    )
    .await?;
    Ok(RumaResponse(ban_user::v3::Response::new()))
}

/// # `POST /_matrix/client/v3/rooms/{roomId}/unban`
pub async fn unban_user(
    state: web::Data<AppState>,
    req: Ruma<unban_user::v3::Request>,
) -> RumaResult<unban_user::v3::Response> {
    let b = req.body;
    let from = (&["ban"][..], "The user is not banned");
    moderate(
        &state,
        &req.sender,
        b.room_id.as_str(),
        b.user_id.as_str(),
        from,
        "leave",
        b.reason,
    )
    .await?;
    Ok(RumaResponse(unban_user::v3::Response::new()))
}

/// The room's current member events.
async fn members(
    state: &AppState,
    room_id: &str,
) -> Result<Vec<crate::actors::roomserver::messages::StoredEvent>, MatrixError> {
    Ok(current_state(state, room_id, Vec::new())
        .await?
        .into_iter()
        .filter(|e| e.json["type"] == "m.room.member")
        .collect())
}

/// # `GET /_matrix/client/v3/rooms/{roomId}/members`
pub async fn get_member_events(
    state: web::Data<AppState>,
    req: Ruma<get_member_events::v3::Request>,
) -> Result<HttpResponse, MatrixError> {
    let b = req.body;
    let room = b.room_id.as_str();
    let at = match &b.at {
        None => None,
        // A sync token: its position of the roomserver stream (`s<position>_...`).
        Some(token) => Some(
            crate::actors::syncapi::token::StreamPositions::parse(token)
                .map(|t| t.pdu)
                .ok_or_else(|| {
                    MatrixError::invalid_param(format!("Unknown `at` token {token:?}"))
                })?,
        ),
    };
    let keep = |m: &Value| {
        let m = m.as_str().unwrap_or_default();
        b.membership.as_ref().is_none_or(|want| want.as_str() == m)
            && b.not_membership
                .as_ref()
                .is_none_or(|not| not.as_str() != m)
    };
    let events: Vec<_> = match at {
        Some(position) => {
            super::rooms::read_point(&state, room, &req.sender).await?;
            state
                .roomserver
                .send(QueryStateAtPosition {
                    room_id: room.to_owned(),
                    position,
                    user_id: req.sender.user_id.to_string(),
                })
                .await?
                .ok_or_else(|| MatrixError::not_found("Unknown room"))?
                .into_iter()
                .filter(|e| e.json["type"] == "m.room.member")
                .collect()
        }
        // The current members, or for a user who left, the members as of their leave.
        None => readable_state(&state, room, &req.sender, Vec::new())
            .await?
            .into_iter()
            .filter(|e| e.json["type"] == "m.room.member")
            .collect(),
    };
    let chunk: Vec<Value> = events
        .iter()
        .filter(|e| keep(&e.json["content"]["membership"]))
        .map(client_event)
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "chunk": chunk })))
}

/// # `GET /_matrix/client/v3/rooms/{roomId}/joined_members`
pub async fn joined_members(
    state: web::Data<AppState>,
    req: Ruma<joined_members::v3::Request>,
) -> Result<HttpResponse, MatrixError> {
    let room = req.body.room_id.as_str();
    ensure_can_read(&state, room, &req.sender).await?;
    let mut joined = Map::new();
    for e in members(&state, room).await? {
        let c = &e.json["content"];
        if c["membership"] != "join" {
            continue;
        }
        // Both keys always, null when unset (as Synapse).
        let string = |k: &str| c.get(k).filter(|v| v.is_string()).cloned();
        let mut member = Map::new();
        member.insert(
            "display_name".into(),
            string("displayname").unwrap_or(Value::Null),
        );
        member.insert(
            "avatar_url".into(),
            string("avatar_url").unwrap_or(Value::Null),
        );
        if let Some(user) = e.json["state_key"].as_str() {
            joined.insert(user.to_owned(), Value::Object(member));
        }
    }
    Ok(HttpResponse::Ok().json(json!({ "joined": joined })))
}

/// # `GET /_matrix/client/v3/joined_rooms`
pub async fn joined_rooms(
    state: web::Data<AppState>,
    req: Ruma<joined_rooms::v3::Request>,
) -> RumaResult<joined_rooms::v3::Response> {
    let rooms = state
        .roomserver
        .send(QueryJoinedRooms {
            user_id: req.sender.user_id.to_string(),
        })
        .await?
        .into_iter()
        .filter_map(|r| OwnedRoomId::try_from(r).ok())
        .collect();
    Ok(RumaResponse(joined_rooms::v3::Response::new(rooms)))
}

/// # `POST /_matrix/client/v3/rooms/{roomId}/forget`
pub async fn forget_room(
    state: web::Data<AppState>,
    req: Ruma<forget_room::v3::Request>,
) -> RumaResult<forget_room::v3::Response> {
    state
        .roomserver
        .send(PerformForget {
            user_id: req.sender.user_id.to_string(),
            room_id: req.body.room_id.to_string(),
        })
        .await?;
    Ok(RumaResponse(forget_room::v3::Response::new()))
}

/// # `POST /_matrix/client/v3/knock/{roomIdOrAlias}`
///
/// In a room this server is in, the knock is sent here. Otherwise it goes through another
/// server (`via`/`server_name`, an alias's servers, the servers the room had when we last
/// held it, the room ID's server before v12): `make_knock`/`send_knock`
/// (`PerformKnock`), then kept here (`InputRemoteKnock`) so that `/sync` shows the room
/// under `rooms.knock` with the state the room's server sent back.
pub async fn knock_room(
    state: web::Data<AppState>,
    req: Ruma<knock_room::v3::Request>,
) -> RumaResult<knock_room::v3::Response> {
    let target = req.body.room_id_or_alias.as_str();
    let mut via: Vec<String> = req.body.via.iter().map(|s| s.to_string()).collect();
    let room_id: OwnedRoomId = match <&ruma::RoomAliasId>::try_from(target) {
        Ok(alias) => {
            let (room_id, servers) = super::directory::resolve_with_servers(&state, alias).await?;
            via.extend(servers);
            room_id
        }
        Err(_) => OwnedRoomId::try_from(target)
            .map_err(|_| MatrixError::invalid_param("Not a room ID or alias"))?,
    };
    let me = req.sender.user_id.to_string();
    let ours = state.server_name();
    let known = state
        .roomserver
        .send(QueryJoinedServers {
            room_id: room_id.to_string(),
        })
        .await?;
    let in_room = known
        .as_ref()
        .is_some_and(|servers| servers.iter().any(|s| s == ours));
    let mut servers = via;
    if !in_room {
        servers.extend(known.clone().unwrap_or_default());
        servers.extend(room_id.server_name().map(|s| s.to_string()));
        servers.retain(|s| s != ours);
    }
    if in_room || servers.is_empty() {
        set_membership_with(
            &state,
            &req.sender,
            room_id.as_str(),
            &me,
            "knock",
            req.body.reason,
            Map::new(),
            "Unknown room, and no server to knock through",
        )
        .await?;
        return Ok(RumaResponse(knock_room::v3::Response::new(room_id)));
    }
    if req.sender.is_guest {
        return Err(MatrixError::forbidden(
            "Guests cannot knock on rooms on other servers",
        ));
    }
    let mut content = json!({});
    if let Some(reason) = req.body.reason {
        content["reason"] = json!(reason);
    }
    add_profile(&state, &req.sender, &mut content).await?;
    let knocked = state
        .federationapi
        .send(PerformKnock {
            room_id: room_id.to_string(),
            user_id: me.clone(),
            servers: servers.clone(),
            content,
        })
        .await?;
    // Leaving goes through the server that took the knock first, then the others.
    let mut leave_through = vec![knocked.server.clone()];
    leave_through.extend(servers.into_iter().filter(|s| *s != knocked.server));
    state
        .roomserver
        .send(InputRemoteKnock {
            room_id: room_id.to_string(),
            room_version: knocked.room_version,
            event: knocked.knock_event,
            knock_room_state: knocked.knock_room_state,
            servers: leave_through,
        })
        .await?;
    Ok(RumaResponse(knock_room::v3::Response::new(room_id)))
}
