//! `syncapi_room_events`: accepted room events at their stream positions.

use crate::storage::{Conn, Row, StorageError};

const COLUMNS: &str = "position, room_id, event_id, event_type, sender, state_key, json, \
    sender_device, txn_id, redacted_because, prev_state";
const INSERT: &str = "INSERT INTO syncapi_room_events
    (position, room_id, event_id, event_type, sender, state_key, json, sender_device, txn_id,
     prev_state)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) ON CONFLICT (event_id) DO NOTHING";
const REDACT: &str =
    "UPDATE syncapi_room_events SET json = $2, redacted_because = $3 WHERE event_id = $1";
const MAX_POSITION: &str = "SELECT MAX(position) FROM syncapi_room_events";
const MIN_POSITION: &str = "SELECT MIN(position) FROM syncapi_room_events";
const MOVE: &str = "UPDATE syncapi_room_events SET position = $2 WHERE event_id = $1";
const ROOM_VERSION: &str = "SELECT json FROM syncapi_room_events
    WHERE room_id = $1 AND event_type = 'm.room.create' ORDER BY position LIMIT 1";

/// A stored room event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RoomEvent {
    pub position: i64,
    pub room_id: String,
    pub event_id: String,
    pub event_type: String,
    pub sender: String,
    pub state_key: Option<String>,
    /// The event in federation format (redacted, when a redaction applies).
    pub json: String,
    /// The device and transaction ID of the local client that sent it.
    pub sender_device: Option<String>,
    pub txn_id: Option<String>,
    /// The redaction that applies to it (JSON), if any.
    pub redacted_because: Option<String>,
    /// For state events, what it replaced (JSON `{prev_content, prev_sender, replaces_state}`).
    pub prev_state: Option<String>,
}

pub(super) fn row(r: &Row) -> Result<RoomEvent, StorageError> {
    Ok(RoomEvent {
        position: r.i64(0)?,
        room_id: r.string(1)?,
        event_id: r.string(2)?,
        event_type: r.string(3)?,
        sender: r.string(4)?,
        state_key: r.opt_string(5)?,
        json: r.string(6)?,
        sender_device: r.opt_string(7)?,
        txn_id: r.opt_string(8)?,
        redacted_because: r.opt_string(9)?,
        prev_state: r.opt_string(10)?,
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
            &e.sender_device,
            &e.txn_id,
            &e.prev_state,
        ],
    )
    .await?;
    Ok(())
}

/// Replaces an event's JSON by its redacted form and records the redaction.
pub async fn redact(
    db: &impl Conn,
    event_id: &str,
    redacted_json: &str,
    redaction: &str,
) -> Result<(), StorageError> {
    db.execute(REDACT, &[&event_id, &redacted_json, &redaction])
        .await?;
    Ok(())
}

/// Finds an event by ID.
pub async fn select_by_id(
    db: &impl Conn,
    event_id: &str,
) -> Result<Option<RoomEvent>, StorageError> {
    let sql = format!("SELECT {COLUMNS} FROM syncapi_room_events WHERE event_id = $1");
    db.query_opt(&sql, &[&event_id])
        .await?
        .as_ref()
        .map(row)
        .transpose()
}

/// Finds events by ID (in no particular order; unknown IDs are left out).
pub async fn select_by_ids(
    db: &impl Conn,
    event_ids: &[String],
) -> Result<Vec<RoomEvent>, StorageError> {
    let sql = format!("SELECT {COLUMNS} FROM syncapi_room_events WHERE event_id IN {{ids}}");
    crate::storage::query_chunked(db, &sql, &[], event_ids)
        .await?
        .iter()
        .map(row)
        .collect()
}

/// Up to `limit` events of a room with `after < position <= upto`: the newest first when
/// `backwards`, else the oldest first.
pub async fn select_range(
    db: &impl Conn,
    room_id: &str,
    after: i64,
    upto: i64,
    limit: i64,
    backwards: bool,
) -> Result<Vec<RoomEvent>, StorageError> {
    let order = if backwards { "DESC" } else { "ASC" };
    let sql = format!(
        "SELECT {COLUMNS} FROM syncapi_room_events
        WHERE room_id = $1 AND position > $2 AND position <= $3
        ORDER BY position {order} LIMIT $4"
    );
    db.query(&sql, &[&room_id, &after, &upto, &limit])
        .await?
        .iter()
        .map(row)
        .collect()
}

/// The versions of one piece of state (type and key) in a room up to `upto`, oldest first.
pub async fn select_state_history(
    db: &impl Conn,
    room_id: &str,
    event_type: &str,
    state_key: &str,
    upto: i64,
) -> Result<Vec<RoomEvent>, StorageError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM syncapi_room_events
        WHERE room_id = $1 AND event_type = $2 AND state_key = $3 AND position <= $4
        ORDER BY position"
    );
    db.query(&sql, &[&room_id, &event_type, &state_key, &upto])
        .await?
        .iter()
        .map(row)
        .collect()
}

/// The room version, from the room's create event ("1" when it says none).
pub async fn room_version(db: &impl Conn, room_id: &str) -> Result<Option<String>, StorageError> {
    let Some(r) = db.query_opt(ROOM_VERSION, &[&room_id]).await? else {
        return Ok(None);
    };
    let json: serde_json::Value = serde_json::from_str(&r.string(0)?).unwrap_or_default();
    Ok(Some(
        json["content"]["room_version"]
            .as_str()
            .unwrap_or("1")
            .to_owned(),
    ))
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

/// The oldest position stored (0 when none is below it): backfilled events go below.
pub async fn min_position(db: &impl Conn) -> Result<i64, StorageError> {
    Ok(db
        .query_opt(MIN_POSITION, &[])
        .await?
        .map(|r| r.opt_i64(0))
        .transpose()?
        .flatten()
        .unwrap_or(0)
        .min(0))
}

/// Moves an event to another position (a state event of a joined room that backfill
/// placed in the room's history).
pub async fn move_to(db: &impl Conn, event_id: &str, position: i64) -> Result<(), StorageError> {
    db.execute(MOVE, &[&event_id, &position]).await?;
    Ok(())
}

/// The rooms with events in `(after, upto]`.
pub async fn rooms_with_events(
    db: &impl Conn,
    after: i64,
    upto: i64,
) -> Result<Vec<String>, StorageError> {
    db.query(
        "SELECT DISTINCT room_id FROM syncapi_room_events WHERE position > $1 AND position <= $2",
        &[&after, &upto],
    )
    .await?
    .iter()
    .map(|r| r.string(0))
    .collect()
}

/// Every state event of a room with `after < position < before`, oldest first.
pub async fn select_state_changes(
    db: &impl Conn,
    room_id: &str,
    after: i64,
    before: i64,
) -> Result<Vec<RoomEvent>, StorageError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM syncapi_room_events
        WHERE room_id = $1 AND state_key IS NOT NULL AND position > $2 AND position < $3
        ORDER BY position"
    );
    db.query(&sql, &[&room_id, &after, &before])
        .await?
        .iter()
        .map(row)
        .collect()
}

/// The event a state event replaced (`replaces_state` of its `prev_state`).
pub fn replaces_state(e: &RoomEvent) -> Option<String> {
    let prev: serde_json::Value = serde_json::from_str(e.prev_state.as_deref()?).ok()?;
    prev["replaces_state"].as_str().map(str::to_owned)
}

/// The state events of a room with `after < position < before`, the newest of each (type,
/// key) only, ordered by type and key.
pub async fn select_state_in_range(
    db: &impl Conn,
    room_id: &str,
    after: i64,
    before: i64,
) -> Result<Vec<RoomEvent>, StorageError> {
    let mut latest: std::collections::BTreeMap<(String, String), RoomEvent> = Default::default();
    for e in select_state_changes(db, room_id, after, before).await? {
        let key = (
            e.event_type.clone(),
            e.state_key.clone().unwrap_or_default(),
        );
        latest.insert(key, e);
    }
    Ok(latest.into_values().collect())
}
