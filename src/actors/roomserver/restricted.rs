//! Joins of `restricted` and `knock_restricted` rooms (room versions 8+, 10+): whether a
//! join needs a user of this server who vouches for it (`join_authorised_via_users_server`)
//! and who. The allow rules (`m.room_membership`) are judged by the user's membership of
//! the allowed rooms this server is in; the one who vouches is the local member with the
//! highest power level, which must reach the room's `invite` level (the auth rules check
//! that again when the join is input).

use super::error::RoomserverError;
use super::input::{level, power_of, state_events};
use super::messages::JoinAuthorisation;
use super::server_reads::joined_servers;
use super::storage::{memberships, rooms};
use crate::storage::Db;
use ruma::events::StateEventType;
use ruma::{ServerName, UserId};
use serde_json::Value;

/// [`super::messages::QueryJoinAuthorisation`].
pub async fn join_authorisation(
    db: &Db,
    server_name: &ServerName,
    room_id: &str,
    user_id: &str,
) -> Result<JoinAuthorisation, RoomserverError> {
    let room = rooms::select(db, room_id)
        .await?
        .ok_or(RoomserverError::NoRoom)?;
    let Some(snapshot) = room.state_snapshot_nid else {
        return Err(RoomserverError::NoRoom);
    };
    let (_, rules) = crate::pdu::rules(&room.room_version)?;
    <&UserId>::try_from(user_id)
        .map_err(|e| RoomserverError::BadRequest(format!("{user_id}: {e}")))?;
    let wanted = [
        (StateEventType::RoomCreate, String::new()),
        (StateEventType::RoomPowerLevels, String::new()),
        (StateEventType::RoomJoinRules, String::new()),
        (StateEventType::RoomMember, user_id.to_owned()),
    ];
    let (state, events) = state_events(db, snapshot, &wanted).await?;
    let content = |t: StateEventType, k: &str| -> Value {
        state
            .get(&(t, k.to_owned()))
            .and_then(|id| events.get(id))
            .and_then(|e| serde_json::from_str(e.content.get()).ok())
            .unwrap_or_default()
    };
    let join_rules = content(StateEventType::RoomJoinRules, "");
    let restricted = match join_rules["join_rule"].as_str() {
        Some("restricted") => rules.authorization.restricted_join_rule,
        Some("knock_restricted") => rules.authorization.knock_restricted_join_rule,
        _ => false,
    };
    let membership = content(StateEventType::RoomMember, user_id);
    if !restricted || matches!(membership["membership"].as_str(), Some("join" | "invite")) {
        return Ok(JoinAuthorisation::NotNeeded);
    }

    // The allow rules this server can judge.
    let allowed: Vec<&str> = join_rules["allow"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|r| r["type"] == "m.room_membership")
                .filter_map(|r| r["room_id"].as_str())
                .collect()
        })
        .unwrap_or_default();
    let mut unknown = false;
    let mut satisfied = false;
    for allowed_room in allowed {
        let held = joined_servers(db, allowed_room)
            .await?
            .is_some_and(|s| s.iter().any(|s| s == server_name.as_str()));
        if !held {
            unknown = true;
            continue;
        }
        if memberships::select(db, allowed_room, user_id)
            .await?
            .is_some_and(|(m, _)| m == "join")
        {
            satisfied = true;
            break;
        }
    }
    if !satisfied {
        return Ok(if unknown {
            JoinAuthorisation::CannotCheck
        } else {
            JoinAuthorisation::NotAllowed
        });
    }

    // Who vouches: the local member with the most power, if that is enough to invite.
    let create = state
        .get(&(StateEventType::RoomCreate, String::new()))
        .and_then(|id| events.get(id));
    let power_levels = content(StateEventType::RoomPowerLevels, "");
    let needed = level(&power_levels["invite"], 0);
    let mut best: Option<(i64, String)> = None;
    for local in
        memberships::select_of_server(db, room.room_nid, "join", server_name.as_str()).await?
    {
        let Ok(local_id) = <&UserId>::try_from(local.as_str()) else {
            continue;
        };
        let power = power_of(local_id, create, &power_levels, &rules);
        if power >= needed && best.as_ref().is_none_or(|(p, _)| power > *p) {
            best = Some((power, local.clone()));
        }
    }
    // (The joining user is not joined, so never their own voucher.)
    Ok(match best {
        Some((_, via)) => JoinAuthorisation::Authorised { via },
        None => JoinAuthorisation::NoLocalInviter,
    })
}
