//! `syncapi_send_to_device` and `syncapi_to_device_txns`: to-device messages waiting for
//! their device, and the client transactions that sent them.

use crate::storage::{Conn, StorageError};

const INSERT: &str = "INSERT INTO syncapi_send_to_device
    (position, user_id, device_id, sender, event_type, content) VALUES ($1, $2, $3, $4, $5, $6)";
const SELECT: &str = "SELECT position, sender, event_type, content FROM syncapi_send_to_device
    WHERE user_id = $1 AND device_id = $2 AND position > $3 AND position <= $4
    ORDER BY position LIMIT $5";
const DELETE_UPTO: &str = "DELETE FROM syncapi_send_to_device
    WHERE user_id = $1 AND device_id = $2 AND position <= $3";
const INSERT_TXN: &str =
    "INSERT INTO syncapi_to_device_txns (user_id, device_id, txn_id, created_ts)
    VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, device_id, txn_id) DO NOTHING";
const DELETE_DEVICE: &str =
    "DELETE FROM syncapi_send_to_device WHERE user_id = $1 AND device_id = $2";
const DELETE_ALL_BUT: &str =
    "DELETE FROM syncapi_send_to_device WHERE user_id = $1 AND device_id <> $2";

/// A message waiting for a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToDevice {
    pub position: i64,
    pub sender: String,
    pub event_type: String,
    pub content: String,
}

/// Queues a message for one device at a stream position.
pub async fn insert(
    db: &impl Conn,
    position: i64,
    user_id: &str,
    device_id: &str,
    sender: &str,
    event_type: &str,
    content: &str,
) -> Result<(), StorageError> {
    db.execute(
        INSERT,
        &[
            &position,
            &user_id,
            &device_id,
            &sender,
            &event_type,
            &content,
        ],
    )
    .await?;
    Ok(())
}

/// Up to `limit` messages for a device in `(after, upto]`, oldest first.
pub async fn select(
    db: &impl Conn,
    user_id: &str,
    device_id: &str,
    after: i64,
    upto: i64,
    limit: i64,
) -> Result<Vec<ToDevice>, StorageError> {
    db.query(SELECT, &[&user_id, &device_id, &after, &upto, &limit])
        .await?
        .iter()
        .map(|r| {
            Ok(ToDevice {
                position: r.i64(0)?,
                sender: r.string(1)?,
                event_type: r.string(2)?,
                content: r.string(3)?,
            })
        })
        .collect()
}

/// Deletes a device's messages a sync token has acknowledged.
pub async fn delete_upto(
    db: &impl Conn,
    user_id: &str,
    device_id: &str,
    upto: i64,
) -> Result<u64, StorageError> {
    db.execute(DELETE_UPTO, &[&user_id, &device_id, &upto])
        .await
}

/// Deletes everything queued for a device (it was deleted).
pub async fn delete_device(
    db: &impl Conn,
    user_id: &str,
    device_id: &str,
) -> Result<(), StorageError> {
    db.execute(DELETE_DEVICE, &[&user_id, &device_id]).await?;
    Ok(())
}

/// Deletes everything queued for a user's devices but `except` (all when `None`).
pub async fn delete_all_but(
    db: &impl Conn,
    user_id: &str,
    except: Option<&str>,
) -> Result<(), StorageError> {
    db.execute(DELETE_ALL_BUT, &[&user_id, &except.unwrap_or("")])
        .await?;
    Ok(())
}

/// Records a client transaction; `false` when it was already recorded (a retry).
pub async fn insert_txn(
    db: &impl Conn,
    user_id: &str,
    device_id: &str,
    txn_id: &str,
) -> Result<bool, StorageError> {
    Ok(db
        .execute(
            INSERT_TXN,
            &[&user_id, &device_id, &txn_id, &crate::storage::now_ms()],
        )
        .await?
        == 1)
}
