//! `syncapi_receipts`: the newest receipt of each (room, type, user, thread).

use crate::storage::{Conn, Row, StorageError};

const UPSERT: &str = "INSERT INTO syncapi_receipts
    (room_id, receipt_type, user_id, thread_id, event_id, ts, position)
    VALUES ($1, $2, $3, $4, $5, $6, $7)
    ON CONFLICT (room_id, receipt_type, user_id, thread_id) DO UPDATE SET
        event_id = EXCLUDED.event_id, ts = EXCLUDED.ts, position = EXCLUDED.position";
const COLUMNS: &str = "room_id, receipt_type, user_id, thread_id, event_id, ts, position";
const SELECT_OWN: &str = "SELECT room_id, receipt_type, user_id, thread_id, event_id, ts, position
    FROM syncapi_receipts WHERE room_id = $1 AND user_id = $2";

/// A receipt; `thread_id` is empty for an unthreaded one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub room_id: String,
    pub receipt_type: String,
    pub user_id: String,
    pub thread_id: String,
    pub event_id: String,
    pub ts: i64,
    pub position: i64,
}

fn row(r: &Row) -> Result<Receipt, StorageError> {
    Ok(Receipt {
        room_id: r.string(0)?,
        receipt_type: r.string(1)?,
        user_id: r.string(2)?,
        thread_id: r.string(3)?,
        event_id: r.string(4)?,
        ts: r.i64(5)?,
        position: r.i64(6)?,
    })
}

/// Stores a receipt, replacing the user's previous one of that type and thread.
pub async fn upsert(db: &impl Conn, r: &Receipt) -> Result<(), StorageError> {
    db.execute(
        UPSERT,
        &[
            &r.room_id,
            &r.receipt_type,
            &r.user_id,
            &r.thread_id,
            &r.event_id,
            &r.ts,
            &r.position,
        ],
    )
    .await?;
    Ok(())
}

/// Receipts of `rooms` that changed in `(after, upto]`.
pub async fn select_since(
    db: &impl Conn,
    rooms: &[String],
    after: i64,
    upto: i64,
) -> Result<Vec<Receipt>, StorageError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM syncapi_receipts
        WHERE position > $1 AND position <= $2 AND room_id IN {{ids}} ORDER BY position"
    );
    crate::storage::query_chunked(db, &sql, &[&after, &upto], rooms)
        .await?
        .iter()
        .map(row)
        .collect()
}

/// For every room: the position of the newest event a user's read receipts (public or
/// private) mark, per thread ('' for unthreaded, `main`, or a thread root).
pub async fn select_read_positions(
    db: &impl Conn,
    user_id: &str,
) -> Result<std::collections::HashMap<String, Vec<(String, i64)>>, StorageError> {
    let mut out: std::collections::HashMap<String, Vec<(String, i64)>> = Default::default();
    for r in db
        .query(
            "SELECT r.room_id, r.thread_id, MAX(e.position) FROM syncapi_receipts r
            JOIN syncapi_room_events e ON e.event_id = r.event_id
            WHERE r.user_id = $1 AND r.receipt_type IN ('m.read', 'm.read.private')
            GROUP BY r.room_id, r.thread_id",
            &[&user_id],
        )
        .await?
    {
        out.entry(r.string(0)?)
            .or_default()
            .push((r.string(1)?, r.i64(2)?));
    }
    Ok(out)
}

/// A user's own receipts in a room.
pub async fn select_own(
    db: &impl Conn,
    room_id: &str,
    user_id: &str,
) -> Result<Vec<Receipt>, StorageError> {
    db.query(SELECT_OWN, &[&room_id, &user_id])
        .await?
        .iter()
        .map(row)
        .collect()
}
