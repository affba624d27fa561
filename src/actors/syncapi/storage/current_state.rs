//! `syncapi_current_state`: each room's current state, kept from the roomserver's reports.

use crate::storage::{Conn, StorageError};

const UPSERT: &str = "INSERT INTO syncapi_current_state
    (room_id, event_type, state_key, event_id, membership, position, forgotten)
    VALUES ($1, $2, $3, $4, $5, $6, 0)
    ON CONFLICT (room_id, event_type, state_key) DO UPDATE SET
        event_id = EXCLUDED.event_id, membership = EXCLUDED.membership,
        position = EXCLUDED.position, forgotten = 0";
const FORGET: &str = "UPDATE syncapi_current_state SET forgotten = 1
    WHERE room_id = $1 AND event_type = 'm.room.member' AND state_key = $2
        AND membership IN ('leave', 'ban')";
const SELECT_FORGOTTEN: &str = "SELECT forgotten FROM syncapi_current_state
    WHERE room_id = $1 AND event_type = 'm.room.member' AND state_key = $2";
const DELETE_EVENT: &str = "DELETE FROM syncapi_current_state WHERE event_id = $1";
const SELECT_ROOM: &str =
    "SELECT event_id FROM syncapi_current_state WHERE room_id = $1 ORDER BY event_type, state_key";
const SELECT_STATE_EVENTS: &str = "SELECT e.position, e.room_id, e.event_id, e.event_type,
    e.sender, e.state_key, e.json, e.sender_device, e.txn_id, e.redacted_because, e.prev_state
    FROM syncapi_current_state c JOIN syncapi_room_events e ON e.event_id = c.event_id
    WHERE c.room_id = $1 ORDER BY c.event_type, c.state_key";
const SELECT_HOLDER: &str = "SELECT event_id FROM syncapi_current_state
    WHERE room_id = $1 AND event_type = $2 AND state_key = $3";
const SELECT_MEMBERSHIPS_OF: &str = "SELECT c.room_id, c.membership, c.position, c.event_id,
    e.json FROM syncapi_current_state c JOIN syncapi_room_events e ON e.event_id = c.event_id
    WHERE c.event_type = 'm.room.member' AND c.state_key = $1 AND c.forgotten = 0";
const SELECT_MEMBERSHIP: &str = "SELECT membership, position FROM syncapi_current_state
    WHERE room_id = $1 AND event_type = 'm.room.member' AND state_key = $2 AND forgotten = 0";
const SELECT_MEMBERS: &str = "SELECT state_key, membership FROM syncapi_current_state
    WHERE room_id = $1 AND event_type = 'm.room.member' ORDER BY position";
const SELECT_ALL_JOINED: &str = "SELECT room_id, state_key FROM syncapi_current_state
    WHERE event_type = 'm.room.member' AND membership = 'join'";
const SELECT_SUMMARY: &str = "SELECT c.event_type, c.state_key, c.membership, e.json
    FROM syncapi_current_state c LEFT JOIN syncapi_room_events e
        ON e.event_id = c.event_id AND c.event_type <> 'm.room.member'
    WHERE c.room_id = $1
        AND c.event_type IN ('m.room.member', 'm.room.name', 'm.room.canonical_alias')
    ORDER BY c.position";
const SELECT_ROOMS_OF: &str = "SELECT room_id FROM syncapi_current_state
    WHERE event_type = 'm.room.member' AND state_key = $1 AND membership = $2 ORDER BY room_id";

/// Makes an event the current holder of its (type, state_key) in its room.
#[allow(clippy::too_many_arguments)]
pub async fn upsert(
    db: &impl Conn,
    room_id: &str,
    event_type: &str,
    state_key: &str,
    event_id: &str,
    membership: Option<&str>,
    position: i64,
) -> Result<(), StorageError> {
    db.execute(
        UPSERT,
        &[
            &room_id,
            &event_type,
            &state_key,
            &event_id,
            &membership,
            &position,
        ],
    )
    .await?;
    Ok(())
}

/// Marks a room forgotten by a user who left it (or was banned); the next member event of
/// the user clears the mark (`upsert`).
pub async fn forget(db: &impl Conn, room_id: &str, user_id: &str) -> Result<(), StorageError> {
    db.execute(FORGET, &[&room_id, &user_id]).await?;
    Ok(())
}

/// Whether a user forgot a room.
pub async fn select_forgotten(
    db: &impl Conn,
    room_id: &str,
    user_id: &str,
) -> Result<bool, StorageError> {
    Ok(db
        .query_opt(SELECT_FORGOTTEN, &[&room_id, &user_id])
        .await?
        .map(|r| r.bool(0))
        .transpose()?
        .unwrap_or(false))
}

/// Removes an event from the current state (when a resolution pushed it out).
pub async fn delete_event(db: &impl Conn, event_id: &str) -> Result<(), StorageError> {
    db.execute(DELETE_EVENT, &[&event_id]).await?;
    Ok(())
}

/// The IDs of a room's current state events.
pub async fn select_room(db: &impl Conn, room_id: &str) -> Result<Vec<String>, StorageError> {
    db.query(SELECT_ROOM, &[&room_id])
        .await?
        .iter()
        .map(|r| r.string(0))
        .collect()
}

/// A room's current state events (joined with their stored events).
pub async fn select_state_events(
    db: &impl Conn,
    room_id: &str,
) -> Result<Vec<super::room_events::RoomEvent>, StorageError> {
    db.query(SELECT_STATE_EVENTS, &[&room_id])
        .await?
        .iter()
        .map(super::room_events::row)
        .collect()
}

/// The event currently holding (type, key) in a room.
pub async fn select_holder(
    db: &impl Conn,
    room_id: &str,
    event_type: &str,
    state_key: &str,
) -> Result<Option<String>, StorageError> {
    db.query_opt(SELECT_HOLDER, &[&room_id, &event_type, &state_key])
        .await?
        .map(|r| r.string(0))
        .transpose()
}

/// A user's current membership of a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub room_id: String,
    pub membership: String,
    /// The stream position of the member event.
    pub position: i64,
    pub event_id: String,
    /// The display name the member event gives.
    pub display_name: Option<String>,
}

impl Membership {
    /// The membership a stored member event gives.
    pub fn from_event(e: &super::room_events::RoomEvent) -> Membership {
        let j: serde_json::Value = serde_json::from_str(&e.json).unwrap_or_default();
        Membership {
            room_id: e.room_id.clone(),
            membership: j["content"]["membership"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            position: e.position,
            event_id: e.event_id.clone(),
            display_name: j["content"]["displayname"].as_str().map(str::to_owned),
        }
    }
}

/// Every room the user has a membership in (of any kind), with its position; rooms the user
/// forgot are left out.
pub async fn select_memberships_of(
    db: &impl Conn,
    user_id: &str,
) -> Result<Vec<Membership>, StorageError> {
    db.query(SELECT_MEMBERSHIPS_OF, &[&user_id])
        .await?
        .iter()
        .map(|r| {
            let json: serde_json::Value = serde_json::from_str(&r.string(4)?).unwrap_or_default();
            Ok(Membership {
                room_id: r.string(0)?,
                membership: r.opt_string(1)?.unwrap_or_default(),
                position: r.i64(2)?,
                event_id: r.string(3)?,
                display_name: json["content"]["displayname"].as_str().map(str::to_owned),
            })
        })
        .collect()
}

/// A user's current membership of one room and its position; `None` for a room the user
/// forgot, as for one they never were in.
pub async fn select_membership(
    db: &impl Conn,
    room_id: &str,
    user_id: &str,
) -> Result<Option<(String, i64)>, StorageError> {
    db.query_opt(SELECT_MEMBERSHIP, &[&room_id, &user_id])
        .await?
        .map(|r| Ok((r.opt_string(0)?.unwrap_or_default(), r.i64(1)?)))
        .transpose()
}

/// A room's members and their memberships, in the order they got them.
pub async fn select_members(
    db: &impl Conn,
    room_id: &str,
) -> Result<Vec<(String, String)>, StorageError> {
    db.query(SELECT_MEMBERS, &[&room_id])
        .await?
        .iter()
        .map(|r| Ok((r.string(0)?, r.opt_string(1)?.unwrap_or_default())))
        .collect()
}

/// Every (room, user) with a joined membership (the notifier's start-up map).
pub async fn select_all_joined(db: &impl Conn) -> Result<Vec<(String, String)>, StorageError> {
    db.query(SELECT_ALL_JOINED, &[])
        .await?
        .iter()
        .map(|r| Ok((r.string(0)?, r.string(1)?)))
        .collect()
}

/// The rooms where `user_id`'s current membership is `membership`.
pub async fn select_rooms_of(
    db: &impl Conn,
    user_id: &str,
    membership: &str,
) -> Result<Vec<String>, StorageError> {
    db.query(SELECT_ROOMS_OF, &[&user_id, &membership])
        .await?
        .iter()
        .map(|r| r.string(0))
        .collect()
}

/// What a room's `summary` is made of: its members and memberships in the order they got
/// them, and whether it has a name or a canonical alias (non-empty), which make heroes
/// unnecessary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SummaryState {
    pub members: Vec<(String, String)>,
    pub named: bool,
}

/// Whether a name or canonical alias event's content names the room (Synapse: a non-empty
/// `name`, a non-empty `alias`).
pub fn names_room(event_type: &str, content: &serde_json::Value) -> bool {
    let field = match event_type {
        "m.room.name" => "name",
        "m.room.canonical_alias" => "alias",
        _ => return false,
    };
    content[field].as_str().is_some_and(|s| !s.is_empty())
}

/// A room's [`SummaryState`] in one statement (member events themselves are not read).
pub async fn select_summary(db: &impl Conn, room_id: &str) -> Result<SummaryState, StorageError> {
    let mut out = SummaryState::default();
    for r in db.query(SELECT_SUMMARY, &[&room_id]).await? {
        let event_type = r.string(0)?;
        if event_type == "m.room.member" {
            out.members
                .push((r.string(1)?, r.opt_string(2)?.unwrap_or_default()));
        } else if let Some(json) = r.opt_string(3)? {
            let j: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
            out.named |= names_room(&event_type, &j["content"]);
        }
    }
    Ok(out)
}

/// Which of `event_ids` are part of a room's current state.
pub async fn select_current_among(
    db: &impl Conn,
    room_id: &str,
    event_ids: &[String],
) -> Result<std::collections::HashSet<String>, StorageError> {
    crate::storage::query_chunked(
        db,
        "SELECT event_id FROM syncapi_current_state WHERE room_id = $1 AND event_id IN {ids}",
        &[&room_id],
        event_ids,
    )
    .await?
    .iter()
    .map(|r| r.string(0))
    .collect()
}

/// The current member events of `users` in a room (those who have one).
pub async fn select_member_events(
    db: &impl Conn,
    room_id: &str,
    users: &[String],
) -> Result<Vec<super::room_events::RoomEvent>, StorageError> {
    crate::storage::query_chunked(
        db,
        "SELECT e.position, e.room_id, e.event_id, e.event_type, e.sender, e.state_key, e.json,
            e.sender_device, e.txn_id, e.redacted_because, e.prev_state
        FROM syncapi_current_state c JOIN syncapi_room_events e ON e.event_id = c.event_id
        WHERE c.room_id = $1 AND c.event_type = 'm.room.member' AND c.state_key IN {ids}",
        &[&room_id],
        users,
    )
    .await?
    .iter()
    .map(super::room_events::row)
    .collect()
}
