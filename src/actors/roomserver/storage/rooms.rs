//! `roomserver_rooms`: room ID -> room_nid, version, current state, forward extremities.

use super::insert_or_get;
use crate::storage::{Conn, StorageError};

const INSERT: &str = "INSERT INTO roomserver_rooms (room_id, room_version) VALUES ($1, $2)
    ON CONFLICT (room_id) DO NOTHING RETURNING room_nid";
const SELECT_NID: &str = "SELECT room_nid FROM roomserver_rooms WHERE room_id = $1";
const SELECT: &str =
    "SELECT room_nid, room_version, state_snapshot_nid, latest_event_nids, max_depth
    FROM roomserver_rooms WHERE room_id = $1";
const SELECT_BY_NID: &str =
    "SELECT room_id, room_version FROM roomserver_rooms WHERE room_nid = $1";
const UPDATE_HEAD: &str = "UPDATE roomserver_rooms
    SET state_snapshot_nid = $2, latest_event_nids = $3, max_depth = $4 WHERE room_nid = $1";

/// A room as the roomserver tracks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Room {
    pub room_nid: i64,
    pub room_version: String,
    pub state_snapshot_nid: Option<i64>,
    pub latest_event_nids: Vec<i64>,
    pub max_depth: i64,
}

/// Registers a room (idempotent) and returns its numeric ID.
pub async fn insert(
    db: &impl Conn,
    room_id: &str,
    room_version: &str,
) -> Result<i64, StorageError> {
    insert_or_get(db, INSERT, SELECT_NID, &[&room_id, &room_version]).await
}

/// Finds a room by ID.
pub async fn select(db: &impl Conn, room_id: &str) -> Result<Option<Room>, StorageError> {
    let Some(r) = db.query_opt(SELECT, &[&room_id]).await? else {
        return Ok(None);
    };
    let latest: Vec<i64> =
        serde_json::from_str(&r.string(3)?).map_err(|e| StorageError::Decode {
            column: 3,
            reason: e.to_string(),
        })?;
    Ok(Some(Room {
        room_nid: r.i64(0)?,
        room_version: r.string(1)?,
        state_snapshot_nid: r.opt_i64(2)?,
        latest_event_nids: latest,
        max_depth: r.i64(4)?,
    }))
}

/// The (room ID, room version) of a numeric room ID.
pub async fn select_by_nid(
    db: &impl Conn,
    room_nid: i64,
) -> Result<Option<(String, String)>, StorageError> {
    db.query_opt(SELECT_BY_NID, &[&room_nid])
        .await?
        .map(|r| Ok((r.string(0)?, r.string(1)?)))
        .transpose()
}

/// Moves a room's current state and forward extremities.
pub async fn update_head(
    db: &impl Conn,
    room_nid: i64,
    state_snapshot_nid: i64,
    latest_event_nids: &[i64],
    max_depth: i64,
) -> Result<(), StorageError> {
    let latest = serde_json::to_string(latest_event_nids).unwrap_or_else(|_| "[]".into());
    db.execute(
        UPDATE_HEAD,
        &[&room_nid, &state_snapshot_nid, &latest, &max_depth],
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::testing::*;

    #[tokio::test]
    async fn rooms_table() {
        for backend in BACKENDS {
            let t = test_db(backend).await;
            let db = &t.db;
            let a = insert(db, "!a:x", "12").await.unwrap();
            assert_eq!(
                insert(db, "!a:x", "12").await.unwrap(),
                a,
                "{backend}: idempotent"
            );
            let b = insert(db, "!b:x", "11").await.unwrap();
            assert_ne!(a, b);
            let room = select(db, "!a:x").await.unwrap().unwrap();
            assert_eq!(
                room,
                Room {
                    room_nid: a,
                    room_version: "12".into(),
                    state_snapshot_nid: None,
                    latest_event_nids: vec![],
                    max_depth: 0
                }
            );
            update_head(db, a, 7, &[3, 4], 9).await.unwrap();
            let room = select(db, "!a:x").await.unwrap().unwrap();
            assert_eq!(
                (
                    room.state_snapshot_nid,
                    room.latest_event_nids,
                    room.max_depth
                ),
                (Some(7), vec![3, 4], 9)
            );
            assert_eq!(select(db, "!nope:x").await.unwrap(), None);
            assert_eq!(
                select_by_nid(db, b).await.unwrap(),
                Some(("!b:x".into(), "11".into()))
            );
            assert_eq!(select_by_nid(db, 999).await.unwrap(), None);
        }
    }
}
