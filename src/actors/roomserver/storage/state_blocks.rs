//! `roomserver_state_blocks`: immutable, deduplicated blocks of state entries.

use super::{insert_or_get, placeholders};
use crate::storage::{Conn, StorageError, ToValue};

const INSERT: &str = "INSERT INTO roomserver_state_blocks (hash, entries) VALUES ($1, $2)
    ON CONFLICT (hash) DO NOTHING RETURNING block_nid";
const SELECT_NID: &str = "SELECT block_nid FROM roomserver_state_blocks WHERE hash = $1";

/// Stores a block unless an identical one exists; returns the block's ID either way.
pub async fn insert(db: &impl Conn, hash: &str, entries: &str) -> Result<i64, StorageError> {
    insert_or_get(db, INSERT, SELECT_NID, &[&hash, &entries]).await
}

/// The entries (JSON text) of blocks, by block ID; unknown IDs are left out.
pub async fn select_many(
    db: &impl Conn,
    block_nids: &[i64],
) -> Result<Vec<(i64, String)>, StorageError> {
    if block_nids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "SELECT block_nid, entries FROM roomserver_state_blocks WHERE block_nid IN {}",
        placeholders(block_nids.len())
    );
    let params: Vec<&dyn ToValue> = block_nids.iter().map(|n| n as &dyn ToValue).collect();
    db.query(&sql, &params)
        .await?
        .iter()
        .map(|r| Ok((r.i64(0)?, r.string(1)?)))
        .collect()
}
