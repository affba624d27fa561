//! `syncapi_room_events`: accepted room events at their stream positions.

use crate::storage::{Conn, Row, StorageError};

const INSERT: &str = "INSERT INTO syncapi_room_events
    (position, room_id, event_id, event_type, sender, state_key, json)
    VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_id) DO NOTHING";
const SELECT_BY_ID: &str = "SELECT position, room_id, event_id, event_type, sender, state_key, json
    FROM syncapi_room_events WHERE event_id = $1";
const SELECT_RANGE: &str = "SELECT position, room_id, event_id, event_type, sender, state_key, json
    FROM syncapi_room_events WHERE room_id = $1 AND position > $2 AND position <= $3
    ORDER BY position DESC LIMIT $4";
const MAX_POSITION: &str = "SELECT MAX(position) FROM syncapi_room_events";

/// A stored room event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomEvent {
    pub position: i64,
    pub room_id: String,
    pub event_id: String,
    pub event_type: String,
    pub sender: String,
    pub state_key: Option<String>,
    pub json: String,
}

fn row(r: &Row) -> Result<RoomEvent, StorageError> {
    Ok(RoomEvent {
        position: r.i64(0)?,
        room_id: r.string(1)?,
        event_id: r.string(2)?,
        event_type: r.string(3)?,
        sender: r.string(4)?,
        state_key: r.opt_string(5)?,
        json: r.string(6)?,
    })
}

/// Stores an event (once; a replayed output changes nothing).
pub async fn insert(db: &impl Conn, e: &RoomEvent) -> Result<(), StorageError> {
    db.execute(
        INSERT,
        &[
            &e.position,
            &e.room_id,
            &e.event_id,
            &e.event_type,
            &e.sender,
            &e.state_key,
            &e.json,
        ],
    )
    .await?;
    Ok(())
}

/// Finds an event by ID.
pub async fn select_by_id(
    db: &impl Conn,
    event_id: &str,
) -> Result<Option<RoomEvent>, StorageError> {
    db.query_opt(SELECT_BY_ID, &[&event_id])
        .await?
        .as_ref()
        .map(row)
        .transpose()
}

/// The newest `limit` events of a room with `after < position <= upto`, newest first.
pub async fn select_range(
    db: &impl Conn,
    room_id: &str,
    after: i64,
    upto: i64,
    limit: i64,
) -> Result<Vec<RoomEvent>, StorageError> {
    db.query(SELECT_RANGE, &[&room_id, &after, &upto, &limit])
        .await?
        .iter()
        .map(row)
        .collect()
}

/// The newest position stored (0 when none).
pub async fn max_position(db: &impl Conn) -> Result<i64, StorageError> {
    Ok(db
        .query_opt(MAX_POSITION, &[])
        .await?
        .map(|r| r.opt_i64(0))
        .transpose()?
        .flatten()
        .unwrap_or(0))
}
