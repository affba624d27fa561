//! `roomserver_state_keys`: state key <-> state_key_nid.

use super::get_or_insert;
use crate::storage::{Conn, StorageError};

const INSERT: &str = "INSERT INTO roomserver_state_keys (state_key) VALUES ($1)
    ON CONFLICT (state_key) DO NOTHING RETURNING state_key_nid";
const SELECT_NID: &str = "SELECT state_key_nid FROM roomserver_state_keys WHERE state_key = $1";

/// The numeric ID of a state key, assigned on first use.
pub async fn intern(db: &impl Conn, state_key: &str) -> Result<i64, StorageError> {
    get_or_insert(db, INSERT, SELECT_NID, &[&state_key]).await
}

/// The numeric ID of a state key, if it was ever used.
pub async fn select_nid(db: &impl Conn, state_key: &str) -> Result<Option<i64>, StorageError> {
    db.query_opt(SELECT_NID, &[&state_key])
        .await?
        .map(|r| r.i64(0))
        .transpose()
}

/// The numeric IDs of those of `names` ever used, in one statement (per 512).
pub async fn select_nids(
    db: &impl Conn,
    names: &[String],
) -> Result<std::collections::HashMap<String, i64>, StorageError> {
    crate::storage::query_chunked(
        db,
        "SELECT state_key, state_key_nid FROM roomserver_state_keys WHERE state_key IN {ids}",
        &[],
        names,
    )
    .await?
    .iter()
    .map(|r| Ok((r.string(0)?, r.i64(1)?)))
    .collect()
}
