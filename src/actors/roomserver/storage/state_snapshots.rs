//! `roomserver_state_snapshots`: a room state as the list of its blocks, one per bucket.

use super::insert_or_get;
use crate::storage::{Conn, StorageError};

const INSERT: &str = "INSERT INTO roomserver_state_snapshots (hash, room_nid, blocks)
    VALUES ($1, $2, $3) ON CONFLICT (hash) DO NOTHING RETURNING snapshot_nid";
const SELECT_NID: &str = "SELECT snapshot_nid FROM roomserver_state_snapshots WHERE hash = $1";
const SELECT: &str =
    "SELECT room_nid, blocks FROM roomserver_state_snapshots WHERE snapshot_nid = $1";

/// Stores a snapshot unless an identical one exists; returns its ID either way.
pub async fn insert(
    db: &impl Conn,
    hash: &str,
    room_nid: i64,
    blocks: &str,
) -> Result<i64, StorageError> {
    insert_or_get(db, INSERT, SELECT_NID, &[&hash, &room_nid, &blocks]).await
}

/// The room and block list (JSON text) of a snapshot.
pub async fn select(
    db: &impl Conn,
    snapshot_nid: i64,
) -> Result<Option<(i64, String)>, StorageError> {
    db.query_opt(SELECT, &[&snapshot_nid])
        .await?
        .map(|r| Ok((r.i64(0)?, r.string(1)?)))
        .transpose()
}
