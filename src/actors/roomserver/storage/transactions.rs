//! `roomserver_transactions`: (user, device, client transaction ID, request) -> event ID.

use crate::storage::{Conn, StorageError};

const INSERT: &str = "INSERT INTO roomserver_transactions
    (user_id, device_id, txn_id, request, event_id) VALUES ($1, $2, $3, $4, $5)";
const SELECT: &str = "SELECT event_id FROM roomserver_transactions
    WHERE user_id = $1 AND device_id = $2 AND txn_id = $3 AND request = $4";

/// Records the event a transaction produced.
pub async fn insert(
    db: &impl Conn,
    user_id: &str,
    device_id: &str,
    txn_id: &str,
    request: &str,
    event_id: &str,
) -> Result<(), StorageError> {
    db.execute(
        INSERT,
        &[&user_id, &device_id, &txn_id, &request, &event_id],
    )
    .await?;
    Ok(())
}

/// The event a transaction already produced, if any.
pub async fn select(
    db: &impl Conn,
    user_id: &str,
    device_id: &str,
    txn_id: &str,
    request: &str,
) -> Result<Option<String>, StorageError> {
    db.query_opt(SELECT, &[&user_id, &device_id, &txn_id, &request])
        .await?
        .map(|r| r.string(0))
        .transpose()
}
