//! Rooms: creation, sending events, reading state and events.

use crate::actors::roomserver::messages::{
    InitialEvent, PerformCreateRoom, PerformReport, PerformRoomEvent, QueryCurrentState,
    QueryEventByTimestamp, QueryMembership, QueryStateAfterEvent, StoredEvent,
};
use crate::actors::roomserver::RoomserverError;
use crate::actors::userapi::messages::QueryProfile;
use crate::routing::error::MatrixError;
use crate::routing::ruma::{Authed, Ruma, RumaResponse, RumaResult};
use crate::routing::AppState;
use actix_web::{web, HttpResponse};
use ruma::api::client::message::send_message_event;
use ruma::api::client::redact::redact_event;
use ruma::api::client::room::create_room::{self, v3::RoomPreset};
use ruma::api::client::room::get_room_event;
use ruma::api::client::room::Visibility;
use ruma::api::client::room::{get_event_by_timestamp, report_content, report_room};
use ruma::api::client::state::{get_state_event_for_key, get_state_events, send_state_event};
use serde_json::{json, Map, Value};

/// An event in the client format (what clients read), from its stored federation form.
pub fn client_event(e: &StoredEvent) -> Value {
    let j = &e.json;
    let mut out = json!({
        "event_id": e.event_id,
        "room_id": e.room_id,
        "sender": j["sender"],
        "type": j["type"],
        "content": j["content"],
        "origin_server_ts": j["origin_server_ts"],
        "unsigned": {},
    });
    // How long ago it was sent, as `/sync` and Synapse give it.
    if let Some(ts) = j["origin_server_ts"].as_i64() {
        out["unsigned"]["age"] = json!((crate::storage::now_ms() - ts).max(0));
    }
    if let Some(key) = j.get("state_key") {
        out["state_key"] = key.clone();
    }
    if let Some(because) = &e.redacted_because {
        let redaction = StoredEvent {
            event_id: because["event_id"].as_str().unwrap_or_default().to_owned(),
            room_id: e.room_id.clone(),
            json: because.clone(),
            rejected: false,
            redacted_because: None,
        };
        out["unsigned"]["redacted_because"] = client_event(&redaction);
    }
    if let Some(redacts) = j.get("redacts") {
        out["redacts"] = redacts.clone();
    }
    out
}

/// Adds the sender's display name and avatar to a member event's content, as a join carries
/// them.
pub async fn add_profile(
    state: &AppState,
    sender: &Authed,
    content: &mut Value,
) -> Result<(), MatrixError> {
    let profile = state
        .userapi
        .send(QueryProfile {
            localpart: sender.localpart.clone(),
        })
        .await?;
    if let Some(profile) = profile {
        if let Some(name) = profile.displayname {
            content["displayname"] = json!(name);
        }
        if let Some(url) = profile.avatar_url {
            content["avatar_url"] = json!(url);
        }
    }
    Ok(())
}

/// Sends one event as `sender` and returns its ID.
pub async fn send(
    state: &AppState,
    sender: &Authed,
    room_id: &str,
    event_type: &str,
    state_key: Option<&str>,
    content: Value,
    txn: Option<(String, String)>,
) -> Result<String, MatrixError> {
    Ok(send_event(state, sender, room_id, event_type, state_key, content, txn).await?)
}

/// [`send`], with the roomserver's own error (for callers that answer some of them their
/// own way, e.g. `NoRoom`).
pub async fn send_event(
    state: &AppState,
    sender: &Authed,
    room_id: &str,
    event_type: &str,
    state_key: Option<&str>,
    content: Value,
    txn: Option<(String, String)>,
) -> Result<String, RoomserverError> {
    Ok(state
        .roomserver
        .send(PerformRoomEvent {
            room_id: Some(room_id.to_owned()),
            room_version: None,
            sender: sender.user_id.to_string(),
            event_type: event_type.to_owned(),
            state_key: state_key.map(str::to_owned),
            content,
            txn,
            redacts: None,
        })
        .await?
        .event_id)
}

/// The room's current state, or 404 for an unknown room.
pub async fn current_state(
    state: &AppState,
    room_id: &str,
    types: Vec<(String, String)>,
) -> Result<Vec<StoredEvent>, MatrixError> {
    current_state_if_known(state, room_id, types)
        .await?
        .ok_or_else(|| MatrixError::not_found("Unknown room"))
}

/// The room's current state; `None` for an unknown room.
pub async fn current_state_if_known(
    state: &AppState,
    room_id: &str,
    types: Vec<(String, String)>,
) -> Result<Option<Vec<StoredEvent>>, MatrixError> {
    Ok(state
        .roomserver
        .send(QueryCurrentState {
            room_id: room_id.to_owned(),
            types,
        })
        .await?)
}

/// From where a user may read a room's state: its current state (a member, or anyone when
/// the room's history is world-readable), or the state as of their leave (a user who left,
/// was kicked or banned reads the room as it was then, as Synapse allows).
pub enum ReadAt {
    Now,
    AfterEvent(String),
}

/// Where `user` may read the room from; 403 for a user who was never in it.
pub async fn read_point(
    state: &AppState,
    room_id: &str,
    user: &Authed,
) -> Result<ReadAt, MatrixError> {
    let wanted = vec![
        ("m.room.member".to_owned(), user.user_id.to_string()),
        ("m.room.history_visibility".to_owned(), String::new()),
    ];
    // An unknown room is not revealed: the same 403 as a room one was never in (as Synapse).
    let Some(events) = current_state_if_known(state, room_id, wanted).await? else {
        return Err(MatrixError::forbidden("You are not a member of this room"));
    };
    let member = events.iter().find(|e| e.json["type"] == "m.room.member");
    let membership = member.and_then(|e| e.json["content"]["membership"].as_str());
    let world_readable = events.iter().any(|e| {
        use crate::history_visibility::HistoryVisibility;
        e.json["type"] == "m.room.history_visibility"
            && HistoryVisibility::from_content(&e.json["content"])
                == HistoryVisibility::WorldReadable
    });
    match (membership, member) {
        (Some("join"), _) => Ok(ReadAt::Now),
        _ if world_readable => Ok(ReadAt::Now),
        // A room the user forgot reads as one they were never in (as Synapse).
        (Some("leave" | "ban"), Some(e)) if !forgot(state, room_id, user).await? => {
            Ok(ReadAt::AfterEvent(e.event_id.clone()))
        }
        _ => Err(MatrixError::forbidden("You are not a member of this room")),
    }
}

/// Whether `user` forgot the room (after leaving it).
async fn forgot(state: &AppState, room_id: &str, user: &Authed) -> Result<bool, MatrixError> {
    Ok(state
        .roomserver
        .send(QueryMembership {
            room_id: room_id.to_owned(),
            user_id: user.user_id.to_string(),
        })
        .await?
        .is_some_and(|m| m.forgotten))
}

/// Whether `user` may read the room now: a joined member, or anyone when the room's history
/// is world-readable.
pub async fn ensure_can_read(
    state: &AppState,
    room_id: &str,
    user: &Authed,
) -> Result<(), MatrixError> {
    match read_point(state, room_id, user).await? {
        ReadAt::Now => Ok(()),
        ReadAt::AfterEvent(_) => Err(MatrixError::forbidden("You are not a member of this room")),
    }
}

/// The room state `user` may read, `types` of it (empty: all): the current state, or the
/// state as of their leave.
pub async fn readable_state(
    state: &AppState,
    room_id: &str,
    user: &Authed,
    types: Vec<(String, String)>,
) -> Result<Vec<StoredEvent>, MatrixError> {
    match read_point(state, room_id, user).await? {
        ReadAt::Now => current_state(state, room_id, types).await,
        ReadAt::AfterEvent(event_id) => Ok(state
            .roomserver
            .send(QueryStateAfterEvent {
                room_id: room_id.to_owned(),
                event_id,
            })
            .await?
            .ok_or_else(|| MatrixError::not_found("Unknown room"))?
            .into_iter()
            .filter(|e| {
                types.is_empty()
                    || types.iter().any(|(t, k)| {
                        e.json["type"] == t.as_str() && e.json["state_key"] == k.as_str()
                    })
            })
            .collect()),
    }
}

fn object(
    raw: &serde_json::value::RawValue,
    what: &str,
) -> Result<Map<String, Value>, MatrixError> {
    match serde_json::from_str(raw.get()) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(MatrixError::bad_json(format!(
            "{what} must be a JSON object"
        ))),
    }
}

/// # `POST /_matrix/client/v3/createRoom`
pub async fn create_room(
    state: web::Data<AppState>,
    req: Ruma<create_room::v3::Request>,
) -> RumaResult<create_room::v3::Response> {
    let body = req.body;
    let sender = &req.sender;
    // Third-party invites are checked before the room exists, and sent once it is set up.
    let invites_3pid = body
        .invite_3pid
        .iter()
        .map(|i| super::membership::check_3pid(&state, i).map(|medium| (i, medium)))
        .collect::<Result<Vec<_>, _>>()?;
    let alias = match &body.room_alias_name {
        Some(name) => {
            let alias =
                ruma::OwnedRoomAliasId::try_from(format!("#{name}:{}", state.server_name()))
                    .map_err(|_| {
                        MatrixError::invalid_param(format!("Invalid room alias name {name:?}"))
                    })?;
            let taken = state
                .roomserver
                .send(crate::actors::roomserver::messages::QueryRoomIdForAlias {
                    alias: alias.to_string(),
                })
                .await?;
            if taken.is_some() {
                return Err(MatrixError::new(
                    "M_ROOM_IN_USE",
                    format!("Room alias {alias} already taken"),
                ));
            }
            Some(alias)
        }
        None => None,
    };
    let version = body.room_version.as_ref().map(|v| v.to_string());
    let (_, rules) = crate::pdu::rules(
        version
            .as_deref()
            .unwrap_or(&state.config.rooms.default_version),
    )
    .map_err(|_| {
        MatrixError::new(
            "M_UNSUPPORTED_ROOM_VERSION",
            format!(
                "This server does not support room version {}",
                version.clone().unwrap_or_default()
            ),
        )
    })?;
    let preset = match body.preset {
        Some(p) => p,
        None if body.visibility == Visibility::Public => RoomPreset::PublicChat,
        None => RoomPreset::PrivateChat,
    };
    let creation_content = match &body.creation_content {
        Some(raw) => object(raw.json(), "creation_content")?,
        None => Map::new(),
    };
    let pl_override = match &body.power_level_content_override {
        Some(raw) => Some(object(raw.json(), "power_level_content_override")?),
        None => None,
    };
    let mut initial_state = Vec::with_capacity(body.initial_state.len());
    for raw in &body.initial_state {
        let e = object(raw.json(), "initial_state event")?;
        let kind = e
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| MatrixError::bad_json("initial_state event without type"))?
            .to_owned();
        let key = e
            .get("state_key")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let content = e.get("content").cloned().unwrap_or_else(|| json!({}));
        initial_state.push((kind, key, content));
    }
    let creators_privileged = rules.authorization.explicitly_privilege_room_creators;
    // Invites of other servers' users need their servers' signatures: sent once the room
    // exists (see `finish_room`).
    let (local_invites, remote_invites): (Vec<&ruma::OwnedUserId>, Vec<&ruma::OwnedUserId>) = body
        .invite
        .iter()
        .partition(|u| super::local_part(state.server_name(), u).is_some());
    let me = sender.user_id.to_string();
    let mut initial: Vec<InitialEvent> = Vec::new();
    let mut add = |event_type: &str, state_key: Option<&str>, content: Value| {
        initial.push(InitialEvent {
            event_type: event_type.to_owned(),
            state_key: state_key.map(str::to_owned),
            content,
        })
    };

    // 1. The creator joins, with their profile.
    let mut join = json!({ "membership": "join" });
    add_profile(&state, sender, &mut join).await?;
    add("m.room.member", Some(&me), join);

    // 2. Power levels, as Synapse sets them, then the client's override.
    let mut users = Map::new();
    if !creators_privileged {
        users.insert(me.clone(), json!(100));
    }
    if preset == RoomPreset::TrustedPrivateChat {
        for invitee in &body.invite {
            users.insert(invitee.to_string(), json!(100));
        }
    }
    let mut events = json!({
        "m.room.name": 50, "m.room.power_levels": 100, "m.room.history_visibility": 100,
        "m.room.canonical_alias": 50, "m.room.avatar": 50, "m.room.tombstone": 100,
        "m.room.server_acl": 100, "m.room.encryption": 100,
    });
    if creators_privileged {
        events["m.room.tombstone"] = json!(150);
    }
    let mut power_levels = json!({
        "users": users, "users_default": 0, "events": events, "events_default": 0,
        "state_default": 50, "ban": 50, "kick": 50, "redact": 50, "invite": 50,
        "notifications": { "room": 50 },
    });
    if let (Some(over), Value::Object(pl)) = (pl_override, &mut power_levels) {
        pl.extend(over);
    }
    add("m.room.power_levels", Some(""), power_levels);

    // 3. The alias, then the preset's rules.
    if let Some(alias) = &alias {
        add(
            "m.room.canonical_alias",
            Some(""),
            json!({ "alias": alias }),
        );
    }
    let join_rule = if preset == RoomPreset::PublicChat {
        "public"
    } else {
        "invite"
    };
    add(
        "m.room.join_rules",
        Some(""),
        json!({ "join_rule": join_rule }),
    );
    add(
        "m.room.history_visibility",
        Some(""),
        json!({ "history_visibility": "shared" }),
    );
    if preset != RoomPreset::PublicChat {
        add(
            "m.room.guest_access",
            Some(""),
            json!({ "guest_access": "can_join" }),
        );
    }

    // 4. The client's initial state, name and topic.
    for (kind, key, content) in initial_state {
        add(&kind, Some(&key), content);
    }
    if let Some(name) = body.name {
        add("m.room.name", Some(""), json!({ "name": name }));
    }
    if let Some(topic) = body.topic {
        // With its `m.topic` text block (spec v1.15), as Synapse writes it.
        add(
            "m.room.topic",
            Some(""),
            json!({ "topic": topic, "m.topic": {"m.text": [{"body": topic}]} }),
        );
    }

    // 5. Invitations of local users.
    for invitee in &local_invites {
        let mut content = json!({ "membership": "invite" });
        if body.is_direct {
            content["is_direct"] = json!(true);
        }
        add("m.room.member", Some(invitee.as_str()), content);
    }

    // All of it in one roomserver call: the room exists whole, or not at all.
    let created = state
        .roomserver
        .send(PerformCreateRoom {
            room_version: version,
            sender: me.clone(),
            creation_content: Value::Object(creation_content),
            initial,
        })
        .await?;
    let room = created.room_id.clone();

    // 6. What needs more than the room's events: the directory and third-party invites. If
    // one of these fails, what was done is undone and the creator leaves, so the answer's
    // error leaves no usable room.
    let mut alias_set = false;
    if let Err(e) = finish_room(
        &state,
        sender,
        &room,
        alias.as_ref(),
        &mut alias_set,
        invites_3pid,
        (&remote_invites, body.is_direct),
        body.visibility,
    )
    .await
    {
        let alias = alias.as_ref().filter(|_| alias_set);
        abandon(&state, sender, &room, alias, &body.invite).await;
        return Err(e);
    }
    let room_id = ruma::OwnedRoomId::try_from(room).map_err(|e| MatrixError::internal(e))?;
    Ok(RumaResponse(create_room::v3::Response::new(room_id)))
}

/// The steps of `createRoom` after the room's events: the alias (`alias_set` says whether
/// it was made), invites of other servers' users (each signed by the invitee's server; with
/// `is_direct`), third-party invites (which call identity servers) and the directory listing.
#[allow(clippy::too_many_arguments)]
async fn finish_room(
    state: &AppState,
    sender: &Authed,
    room: &str,
    alias: Option<&ruma::OwnedRoomAliasId>,
    alias_set: &mut bool,
    invites_3pid: Vec<(&ruma::api::client::membership::Invite3pid, &'static str)>,
    (remote_invites, is_direct): (&[&ruma::OwnedUserId], bool),
    visibility: Visibility,
) -> Result<(), MatrixError> {
    let me = sender.user_id.to_string();
    if let Some(alias) = alias {
        state
            .roomserver
            .send(crate::actors::roomserver::messages::PerformSetRoomAlias {
                alias: alias.to_string(),
                room_id: room.to_owned(),
                user_id: me.clone(),
            })
            .await?;
        *alias_set = true;
    }
    for invitee in remote_invites {
        super::membership::invite_remote(state, sender, room, invitee, None, is_direct).await?;
    }
    for (invite, medium) in invites_3pid {
        super::membership::invite_3pid(state, sender, room, invite, medium).await?;
    }
    if visibility == Visibility::Public {
        state
            .roomserver
            .send(crate::actors::roomserver::messages::PerformPublishRoom {
                room_id: room.to_owned(),
                user_id: me,
                publish: true,
            })
            .await?;
    }
    Ok(())
}

/// A room whose creation failed after its events: the alias this request set is removed
/// (only that one: an alias that was not set may name another room), the listing undone, the
/// invitations of local users withdrawn, and the creator leaves, so the room is neither
/// usable nor visible to anyone. Failures are logged: the client gets the original error.
async fn abandon(
    state: &AppState,
    sender: &Authed,
    room: &str,
    alias: Option<&ruma::OwnedRoomAliasId>,
    invited: &[ruma::OwnedUserId],
) {
    let me = sender.user_id.to_string();
    let mut failed: Option<MatrixError> = None;
    let mut note = |r: Result<(), MatrixError>| {
        if let Err(e) = r {
            failed.get_or_insert(e);
        }
    };
    if let Some(alias) = alias {
        let removed = state
            .roomserver
            .send(
                crate::actors::roomserver::messages::PerformRemoveRoomAlias {
                    alias: alias.to_string(),
                    user_id: me.clone(),
                },
            )
            .await;
        note(removed.map(|_| ()).map_err(MatrixError::from));
    }
    let unlisted = state
        .roomserver
        .send(crate::actors::roomserver::messages::PerformPublishRoom {
            room_id: room.to_owned(),
            user_id: me.clone(),
            publish: false,
        })
        .await;
    note(unlisted.map(|_| ()).map_err(MatrixError::from));
    for invitee in invited {
        let withdrawn = send(
            state,
            sender,
            room,
            "m.room.member",
            Some(invitee.as_str()),
            json!({"membership": "leave"}),
            None,
        )
        .await;
        note(withdrawn.map(|_| ()));
    }
    let left = send(
        state,
        sender,
        room,
        "m.room.member",
        Some(&me),
        json!({"membership": "leave"}),
        None,
    )
    .await;
    note(left.map(|_| ()));
    match failed {
        Some(e) => {
            tracing::error!(room_id = room, error = %e, "abandoning a half-created room failed")
        }
        None => tracing::warn!(
            room_id = room,
            "room creation failed after its events; the room was abandoned"
        ),
    }
}

/// # `PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}`
/// and `POST /_matrix/client/v3/rooms/{roomId}/send/{eventType}`
pub async fn send_message_event(
    state: web::Data<AppState>,
    req: Ruma<send_message_event::v3::Request>,
) -> RumaResult<send_message_event::v3::Response> {
    let body = req.body;
    let content = Value::Object(object(body.body.json(), "content")?);
    // `POST .../send/{eventType}` (no transaction ID, as Synapse still serves it) arrives with
    // an empty one: each such request is a new event.
    let txn = (!body.txn_id.as_str().is_empty())
        .then(|| (req.sender.device_id.to_string(), body.txn_id.to_string()));
    let event_id = send(
        &state,
        &req.sender,
        body.room_id.as_str(),
        &body.event_type.to_string(),
        None,
        content,
        txn,
    )
    .await?;
    let event_id = ruma::OwnedEventId::try_from(event_id).map_err(|e| MatrixError::internal(e))?;
    Ok(RumaResponse(send_message_event::v3::Response::new(
        event_id,
    )))
}

/// Guest access was revoked: every joined guest leaves the room (as Synapse, each guest's own
/// leave, marked `kind: guest`). A guest whose leave fails is logged.
async fn kick_guests(state: &AppState, room_id: &str) {
    let Ok(members) = current_state(state, room_id, Vec::new()).await else {
        return;
    };
    for m in members.iter().filter(|e| {
        e.json["type"] == "m.room.member"
            && e.json["content"]["membership"] == "join"
            && e.json["content"]["kind"] == "guest"
    }) {
        let Some(user) = m.json["state_key"]
            .as_str()
            .and_then(|u| ruma::OwnedUserId::try_from(u).ok())
        else {
            continue;
        };
        let guest = Authed {
            localpart: user.localpart().to_owned(),
            user_id: user.clone(),
            device_id: ruma::OwnedDeviceId::from(""),
            is_guest: true,
        };
        let content = json!({"membership": "leave", "kind": "guest"});
        let left = send(
            state,
            &guest,
            room_id,
            "m.room.member",
            Some(user.as_str()),
            content,
            None,
        )
        .await;
        if let Err(e) = left {
            tracing::warn!(room_id, user_id = %user, errcode = e.errcode, "guest not removed after guest access was revoked");
        }
    }
}

/// The aliases of an `m.room.canonical_alias` content must be aliases (400 M_INVALID_PARAM)
/// that exist and point to this room (400 M_BAD_ALIAS), as Synapse checks. Aliases of other
/// servers cannot be resolved without federation, so they are refused as unknown.
async fn check_canonical_alias(
    state: &AppState,
    room_id: &str,
    content: &Value,
) -> Result<(), MatrixError> {
    let mut aliases: Vec<&Value> = Vec::new();
    match content.get("alias") {
        None | Some(Value::Null) => {}
        Some(a) => aliases.push(a),
    }
    match content.get("alt_aliases") {
        None => {}
        Some(Value::Array(list)) => aliases.extend(list),
        Some(_) => return Err(MatrixError::invalid_param("alt_aliases must be a list")),
    }
    for alias in aliases {
        let parsed = alias
            .as_str()
            .and_then(|a| <&ruma::RoomAliasId>::try_from(a).ok())
            .ok_or_else(|| MatrixError::invalid_param(format!("{alias} is not a room alias")))?;
        let points_here = parsed.server_name().as_str() == state.server_name()
            && state
                .roomserver
                .send(crate::actors::roomserver::messages::QueryRoomIdForAlias {
                    alias: parsed.to_string(),
                })
                .await?
                .is_some_and(|r| r == room_id);
        if !points_here {
            return Err(MatrixError::new(
                "M_BAD_ALIAS",
                format!("Room alias {parsed} does not point to the room"),
            ));
        }
    }
    Ok(())
}

/// # `PUT /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}`
pub async fn send_state_event(
    state: web::Data<AppState>,
    req: Ruma<send_state_event::v3::Request>,
) -> RumaResult<send_state_event::v3::Response> {
    let body = req.body;
    let content = Value::Object(object(body.body.json(), "content")?);
    let event_type = body.event_type.to_string();
    if event_type == "m.room.canonical_alias" {
        check_canonical_alias(&state, body.room_id.as_str(), &content).await?;
    }
    let revokes_guests =
        event_type == "m.room.guest_access" && content["guest_access"] != "can_join";
    let event_id = send(
        &state,
        &req.sender,
        body.room_id.as_str(),
        &body.event_type.to_string(),
        Some(&body.state_key),
        content,
        None,
    )
    .await?;
    if revokes_guests {
        kick_guests(&state, body.room_id.as_str()).await;
    }
    let event_id = ruma::OwnedEventId::try_from(event_id).map_err(|e| MatrixError::internal(e))?;
    Ok(RumaResponse(send_state_event::v3::Response::new(event_id)))
}

/// # `GET /_matrix/client/v3/rooms/{roomId}/state`
pub async fn get_state_events(
    state: web::Data<AppState>,
    req: Ruma<get_state_events::v3::Request>,
) -> Result<HttpResponse, MatrixError> {
    let room = req.body.room_id.as_str();
    let events: Vec<Value> = readable_state(&state, room, &req.sender, Vec::new())
        .await?
        .iter()
        .map(client_event)
        .collect();
    Ok(HttpResponse::Ok().json(events))
}

/// # `GET /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}`
pub async fn get_state_event_for_key(
    state: web::Data<AppState>,
    req: Ruma<get_state_event_for_key::v3::Request>,
) -> Result<HttpResponse, MatrixError> {
    let body = req.body;
    let room = body.room_id.as_str();
    let wanted = vec![(body.event_type.to_string(), body.state_key.clone())];
    let event = readable_state(&state, room, &req.sender, wanted)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| MatrixError::not_found("Event not found"))?;
    Ok(HttpResponse::Ok().json(match body.format {
        get_state_event_for_key::v3::StateEventFormat::Event => client_event(&event),
        _ => event.json["content"].clone(),
    }))
}

/// # `GET /_matrix/client/v3/rooms/{roomId}/event/{eventId}`
pub async fn get_room_event(
    state: web::Data<AppState>,
    req: Ruma<get_room_event::v3::Request>,
) -> Result<HttpResponse, MatrixError> {
    let body = req.body;
    let room = body.room_id.as_str();
    // Served by the syncapi, like every other read of the timeline: the same history
    // visibility, ignore list and account erasure as /messages and /sync, and the same client
    // format (`unsigned` with age, prev_content, redacted_because, transaction_id). An event the
    // user may not see is not found (its existence is not revealed).
    let event = state
        .syncapi
        .send(crate::actors::syncapi::messages::QueryClientEvent {
            event_id: body.event_id.to_string(),
            user_id: req.sender.user_id.to_string(),
            device_id: req.sender.device_id.to_string(),
        })
        .await
        .map_err(MatrixError::from)?;
    if event["room_id"] != room {
        return Err(MatrixError::not_found("Event not found"));
    }
    Ok(HttpResponse::Ok().json(event))
}

/// # `PUT /_matrix/client/v3/rooms/{roomId}/redact/{eventId}/{txnId}`
pub async fn redact_event(
    state: web::Data<AppState>,
    req: Ruma<redact_event::v3::Request>,
) -> RumaResult<redact_event::v3::Response> {
    let body = req.body;
    let mut content = json!({});
    if let Some(reason) = body.reason {
        content["reason"] = json!(reason);
    }
    let sent = state
        .roomserver
        .send(PerformRoomEvent {
            room_id: Some(body.room_id.to_string()),
            room_version: None,
            sender: req.sender.user_id.to_string(),
            event_type: "m.room.redaction".into(),
            state_key: None,
            content,
            txn: Some((req.sender.device_id.to_string(), body.txn_id.to_string())),
            redacts: Some(body.event_id.to_string()),
        })
        .await?;
    let event_id =
        ruma::OwnedEventId::try_from(sent.event_id).map_err(|e| MatrixError::internal(e))?;
    Ok(RumaResponse(redact_event::v3::Response::new(event_id)))
}

/// # `POST /_matrix/client/v3/rooms/{roomId}/report/{eventId}`
pub async fn report_content(
    state: web::Data<AppState>,
    req: Ruma<report_content::v3::Request>,
) -> RumaResult<report_content::v3::Response> {
    let b = req.body;
    state
        .roomserver
        .send(PerformReport {
            room_id: b.room_id.to_string(),
            event_id: Some(b.event_id.to_string()),
            reporter: req.sender.user_id.to_string(),
            reason: b.reason,
        })
        .await
        .map_err(|e| match e {
            // Unknown and invisible events look alike, so a report reveals nothing.
            RoomserverError::NoRoom | RoomserverError::NoEvent(_) => MatrixError::not_found(
                "Unable to report event: it does not exist or you aren't able to see it",
            ),
            other => other.into(),
        })?;
    Ok(RumaResponse(report_content::v3::Response::new()))
}

/// # `POST /_matrix/client/v3/rooms/{roomId}/report`
pub async fn report_room(
    state: web::Data<AppState>,
    req: Ruma<report_room::v3::Request>,
) -> RumaResult<report_room::v3::Response> {
    let b = req.body;
    state
        .roomserver
        .send(PerformReport {
            room_id: b.room_id.to_string(),
            event_id: None,
            reporter: req.sender.user_id.to_string(),
            reason: Some(b.reason),
        })
        .await?;
    Ok(RumaResponse(report_room::v3::Response::new()))
}

/// # `GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event`
pub async fn get_event_by_timestamp(
    state: web::Data<AppState>,
    req: Ruma<get_event_by_timestamp::v1::Request>,
) -> RumaResult<get_event_by_timestamp::v1::Response> {
    let b = req.body;
    ensure_can_read(&state, b.room_id.as_str(), &req.sender).await?;
    let ts = i64::try_from(u64::from(b.ts.0))
        .map_err(|_| MatrixError::invalid_param("ts is too large"))?;
    let (event_id, at) = state
        .roomserver
        .send(QueryEventByTimestamp {
            room_id: b.room_id.to_string(),
            user_id: req.sender.user_id.to_string(),
            ts,
            forward: b.dir == ruma::api::Direction::Forward,
        })
        .await?
        .ok_or_else(|| MatrixError::not_found("No event found in that direction"))?;
    let event_id = ruma::OwnedEventId::try_from(event_id).map_err(|e| MatrixError::internal(e))?;
    let at = ruma::UInt::try_from(at).map_err(|e| MatrixError::internal(e))?;
    Ok(RumaResponse(get_event_by_timestamp::v1::Response::new(
        event_id,
        ruma::MilliSecondsSinceUnixEpoch(at),
    )))
}
