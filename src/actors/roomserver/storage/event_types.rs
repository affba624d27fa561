//! `roomserver_event_types`: event type <-> type_nid.

use super::get_or_insert;
use crate::storage::{Conn, StorageError};

const INSERT: &str = "INSERT INTO roomserver_event_types (event_type) VALUES ($1)
    ON CONFLICT (event_type) DO NOTHING RETURNING type_nid";
const SELECT_NID: &str = "SELECT type_nid FROM roomserver_event_types WHERE event_type = $1";

/// The numeric ID of an event type, assigned on first use.
pub async fn intern(db: &impl Conn, event_type: &str) -> Result<i64, StorageError> {
    get_or_insert(db, INSERT, SELECT_NID, &[&event_type]).await
}

/// The numeric ID of an event type, if it was ever used.
pub async fn select_nid(db: &impl Conn, event_type: &str) -> Result<Option<i64>, StorageError> {
    db.query_opt(SELECT_NID, &[&event_type])
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
        "SELECT event_type, type_nid FROM roomserver_event_types WHERE event_type IN {ids}",
        &[],
        names,
    )
    .await?
    .iter()
    .map(|r| Ok((r.string(0)?, r.i64(1)?)))
    .collect()
}
