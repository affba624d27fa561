//! `roomserver_events`: every event of every room, with its place in the DAG and the state
//! before it.

use super::placeholders;
use crate::storage::{Conn, Row, StorageError};

const INSERT: &str = "INSERT INTO roomserver_events
    (room_nid, event_id, type_nid, state_key_nid, depth, json, rejected)
    VALUES ($1, $2, $3, $4, $5, $6, $7)
    ON CONFLICT (event_id) DO NOTHING RETURNING event_nid";
const COLUMNS: &str = "event_nid, room_nid, event_id, type_nid, state_key_nid, depth,
    state_snapshot_nid, json, rejected, redacted_by";
const SET_REDACTED: &str = "UPDATE roomserver_events SET redacted_by = $2 WHERE event_nid = $1";
const SET_SNAPSHOT: &str =
    "UPDATE roomserver_events SET state_snapshot_nid = $2 WHERE event_nid = $1";

/// An event row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    pub event_nid: i64,
    pub room_nid: i64,
    pub event_id: String,
    pub type_nid: i64,
    pub state_key_nid: Option<i64>,
    pub depth: i64,
    pub state_snapshot_nid: Option<i64>,
    pub json: String,
    pub rejected: bool,
    pub redacted_by: Option<String>,
}

fn row(r: &Row) -> Result<EventRow, StorageError> {
    Ok(EventRow {
        event_nid: r.i64(0)?,
        room_nid: r.i64(1)?,
        event_id: r.string(2)?,
        type_nid: r.i64(3)?,
        state_key_nid: r.opt_i64(4)?,
        depth: r.i64(5)?,
        state_snapshot_nid: r.opt_i64(6)?,
        json: r.string(7)?,
        rejected: r.bool(8)?,
        redacted_by: r.opt_string(9)?,
    })
}

/// What storing an event needs.
pub struct NewEvent<'a> {
    pub room_nid: i64,
    pub event_id: &'a str,
    pub type_nid: i64,
    pub state_key_nid: Option<i64>,
    pub depth: i64,
    pub json: &'a str,
    pub rejected: bool,
}

/// Stores an event; `None` when an event with that ID is already stored.
pub async fn insert(db: &impl Conn, e: &NewEvent<'_>) -> Result<Option<i64>, StorageError> {
    db.query_opt(
        INSERT,
        &[
            &e.room_nid,
            &e.event_id,
            &e.type_nid,
            &e.state_key_nid,
            &e.depth,
            &e.json,
            &e.rejected,
        ],
    )
    .await?
    .map(|r| r.i64(0))
    .transpose()
}

/// Finds an event by ID.
pub async fn select_by_id(
    db: &impl Conn,
    event_id: &str,
) -> Result<Option<EventRow>, StorageError> {
    let sql = format!("SELECT {COLUMNS} FROM roomserver_events WHERE event_id = $1");
    db.query_opt(&sql, &[&event_id])
        .await?
        .as_ref()
        .map(row)
        .transpose()
}

/// Finds events by numeric ID, in no particular order; unknown IDs are left out.
pub async fn select_by_nids(db: &impl Conn, nids: &[i64]) -> Result<Vec<EventRow>, StorageError> {
    if nids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM roomserver_events WHERE event_nid IN {}",
        placeholders(nids.len())
    );
    let params: Vec<&dyn crate::storage::ToValue> = nids
        .iter()
        .map(|n| n as &dyn crate::storage::ToValue)
        .collect();
    db.query(&sql, &params).await?.iter().map(row).collect()
}

/// Records the state before an event.
pub async fn set_state_snapshot(
    db: &impl Conn,
    event_nid: i64,
    snapshot_nid: i64,
) -> Result<(), StorageError> {
    db.execute(SET_SNAPSHOT, &[&event_nid, &snapshot_nid])
        .await?;
    Ok(())
}

/// Marks an event redacted by the redaction `redaction_id`.
pub async fn set_redacted(
    db: &impl Conn,
    event_nid: i64,
    redaction_id: &str,
) -> Result<(), StorageError> {
    db.execute(SET_REDACTED, &[&event_nid, &redaction_id])
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::testing::*;

    #[tokio::test]
    async fn events_table() {
        for backend in BACKENDS {
            let t = test_db(backend).await;
            let db = &t.db;
            let new = |id: &'static str, sk: Option<i64>| NewEvent {
                room_nid: 1,
                event_id: id,
                type_nid: 2,
                state_key_nid: sk,
                depth: 3,
                json: "{}",
                rejected: false,
            };
            let a = insert(db, &new("$a", Some(5))).await.unwrap().unwrap();
            assert_eq!(
                insert(db, &new("$a", Some(5))).await.unwrap(),
                None,
                "{backend}: duplicate"
            );
            let b = insert(db, &new("$b", None)).await.unwrap().unwrap();
            set_state_snapshot(db, b, 42).await.unwrap();
            set_redacted(db, b, "$r").await.unwrap();
            let ea = select_by_id(db, "$a").await.unwrap().unwrap();
            assert_eq!(
                (ea.state_key_nid, ea.redacted_by.as_deref()),
                (Some(5), None)
            );
            let mut both = select_by_nids(db, &[a, b, 999]).await.unwrap();
            both.sort_by_key(|e| e.event_nid);
            assert_eq!(both.len(), 2);
            assert_eq!(
                (both[1].state_key_nid, both[1].state_snapshot_nid),
                (None, Some(42))
            );
            assert_eq!(both[1].redacted_by.as_deref(), Some("$r"));
            assert_eq!(select_by_id(db, "$nope").await.unwrap(), None);
        }
    }
}
