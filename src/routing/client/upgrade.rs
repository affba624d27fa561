//! Room upgrades: a new room of another version replaces an old one.

use super::rooms::{current_state, send};
use crate::actors::roomserver::messages::{
    InitialEvent, PerformCreateRoom, PerformPublishRoom, PerformRemoveRoomAlias,
    PerformSetRoomAlias, QueryAliasesForRoom, QueryMaySendState, QueryPublishedRoom,
};
use crate::actors::userapi::messages::PerformRoomUpgradeCopy;
use crate::routing::error::MatrixError;
use crate::routing::ruma::{Ruma, RumaResponse, RumaResult};
use crate::routing::AppState;
use actix_web::web;
use ruma::api::client::room::upgrade_room;
use serde_json::{json, Value};

/// The state carried from the old room to the new one (as Synapse carries it), after the
/// power levels.
const CARRIED: &[&str] = &[
    "m.room.join_rules",
    "m.room.history_visibility",
    "m.room.guest_access",
    "m.room.name",
    "m.room.topic",
    "m.room.avatar",
    "m.room.encryption",
    "m.room.server_acl",
];

/// # `POST /_matrix/client/v3/rooms/{roomId}/upgrade`
pub async fn upgrade_room(
    state: web::Data<AppState>,
    req: Ruma<upgrade_room::v3::Request>,
) -> RumaResult<upgrade_room::v3::Response> {
    let b = req.body;
    let sender = &req.sender;
    let me = sender.user_id.to_string();
    let old = b.room_id.to_string();
    let version = b.new_version.to_string();
    let (_, rules) = crate::pdu::rules(&version).map_err(|_| {
        MatrixError::new(
            "M_UNSUPPORTED_ROOM_VERSION",
            format!("This server does not support room version {version}"),
        )
    })?;
    // Check the one permission the upgrade needs before changing anything.
    let may = state
        .roomserver
        .send(QueryMaySendState {
            room_id: old.clone(),
            user_id: me.clone(),
            event_type: "m.room.tombstone".into(),
        })
        .await?;
    let old_state = current_state(&state, &old, Vec::new()).await?;
    let joined = old_state.iter().any(|e| {
        e.json["type"] == "m.room.member"
            && e.json["state_key"] == me.as_str()
            && e.json["content"]["membership"] == "join"
    });
    if !joined || !may {
        return Err(MatrixError::forbidden(
            "You do not have permission to upgrade this room",
        ));
    }
    let content_of = |kind: &str| {
        old_state
            .iter()
            .find(|e| e.json["type"] == kind && e.json["state_key"] == "")
            .map(|e| e.json["content"].clone())
    };

    // The new room, pointing back at the old one.
    let mut create = json!({ "predecessor": { "room_id": old } });
    if let Some(kind) = content_of("m.room.create").and_then(|c| c.get("type").cloned()) {
        create["type"] = kind;
    }
    if rules.authorization.additional_room_creators && !b.additional_creators.is_empty() {
        create["additional_creators"] = json!(b.additional_creators);
    }
    // Power levels as they were; creators of v12+ rooms are privileged by the create event.
    let mut power_levels = content_of("m.room.power_levels").unwrap_or_else(|| json!({}));
    if rules.authorization.explicitly_privilege_room_creators {
        if let Some(users) = power_levels.get_mut("users").and_then(Value::as_object_mut) {
            users.remove(&me);
            for extra in &b.additional_creators {
                users.remove(extra.as_str());
            }
        }
    } else {
        let mine = power_levels["users"][&me].as_i64().unwrap_or(0).max(100);
        power_levels["users"][&me] = json!(mine);
    }
    let state_event = |event_type: &str, state_key: &str, content: Value| InitialEvent {
        event_type: event_type.to_owned(),
        state_key: Some(state_key.to_owned()),
        content,
    };
    let mut initial = vec![
        state_event("m.room.member", &me, json!({ "membership": "join" })),
        state_event("m.room.power_levels", "", power_levels.clone()),
    ];
    for kind in CARRIED {
        if let Some(content) = content_of(kind) {
            initial.push(state_event(kind, "", content));
        }
    }
    // The new room with its state in one call: it exists whole or not at all.
    let created = state
        .roomserver
        .send(PerformCreateRoom {
            room_version: Some(version),
            sender: me.clone(),
            creation_content: create,
            initial,
        })
        .await?;
    let new = created.room_id;

    // Aliases move to the new room, with the canonical alias.
    let aliases = state
        .roomserver
        .send(QueryAliasesForRoom {
            room_id: old.clone(),
        })
        .await?;
    for alias in &aliases {
        state
            .roomserver
            .send(PerformRemoveRoomAlias {
                alias: alias.clone(),
                user_id: me.clone(),
            })
            .await?;
        state
            .roomserver
            .send(PerformSetRoomAlias {
                alias: alias.clone(),
                room_id: new.clone(),
                user_id: me.clone(),
            })
            .await?;
    }
    if let Some(canonical) = content_of("m.room.canonical_alias") {
        send(
            &state,
            sender,
            &new,
            "m.room.canonical_alias",
            Some(""),
            canonical,
            None,
        )
        .await?;
    }
    if state
        .roomserver
        .send(QueryPublishedRoom {
            room_id: old.clone(),
        })
        .await?
        == Some(true)
    {
        for (room, publish) in [(&new, true), (&old, false)] {
            state
                .roomserver
                .send(PerformPublishRoom {
                    room_id: room.clone(),
                    user_id: me.clone(),
                    publish,
                })
                .await?;
        }
    }

    // The old room ends: a tombstone, then only moderators may speak or invite.
    send(
        &state,
        sender,
        &old,
        "m.room.tombstone",
        Some(""),
        json!({ "body": "This room has been replaced", "replacement_room": new }),
        None,
    )
    .await?;
    let restricted = (power_levels["users_default"].as_i64().unwrap_or(0) + 1).max(50);
    let mut old_levels = content_of("m.room.power_levels").unwrap_or_else(|| json!({}));
    old_levels["events_default"] = json!(restricted);
    old_levels["invite"] = json!(restricted);
    send(
        &state,
        sender,
        &old,
        "m.room.power_levels",
        Some(""),
        old_levels,
        None,
    )
    .await?;

    // What each local member had on the old room follows them (as Synapse): tags, m.direct,
    // push rules naming the room. A failure for one user is logged, not the upgrade's.
    let server = format!(":{}", state.server_name());
    for member in old_state
        .iter()
        .filter(|e| e.json["type"] == "m.room.member" && e.json["content"]["membership"] == "join")
    {
        let Some(localpart) = member.json["state_key"]
            .as_str()
            .and_then(|u| u.strip_suffix(server.as_str()))
            .and_then(|u| u.strip_prefix('@'))
        else {
            continue;
        };
        let copied = state
            .userapi
            .send(PerformRoomUpgradeCopy {
                localpart: localpart.to_owned(),
                old_room_id: old.clone(),
                new_room_id: new.clone(),
            })
            .await;
        if let Err(e) = copied {
            let e = MatrixError::from(e);
            tracing::warn!(room_id = %old, localpart, errcode = e.errcode, error = %e.error, "tags and push rules not copied on upgrade");
        }
    }

    let replacement = ruma::OwnedRoomId::try_from(new).map_err(|e| MatrixError::internal(e))?;
    Ok(RumaResponse(upgrade_room::v3::Response::new(replacement)))
}
