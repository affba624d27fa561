//! `syncapi_current_state`: each room's current state, kept from the roomserver's reports.

use crate::storage::{Conn, StorageError};

const UPSERT: &str = "INSERT INTO syncapi_current_state
    (room_id, event_type, state_key, event_id, membership, position)
    VALUES ($1, $2, $3, $4, $5, $6)
    ON CONFLICT (room_id, event_type, state_key) DO UPDATE SET
        event_id = EXCLUDED.event_id, membership = EXCLUDED.membership,
        position = EXCLUDED.position";
const DELETE_EVENT: &str = "DELETE FROM syncapi_current_state WHERE event_id = $1";
const SELECT_ROOM: &str =
    "SELECT event_id FROM syncapi_current_state WHERE room_id = $1 ORDER BY event_type, state_key";
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
