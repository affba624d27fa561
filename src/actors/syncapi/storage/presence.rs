//! `syncapi_presence`: each user's presence at its stream position.

use crate::storage::{Conn, Row, StorageError};

const UPSERT: &str = "INSERT INTO syncapi_presence
    (user_id, presence, status_msg, last_active_ts, position) VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (user_id) DO UPDATE SET presence = EXCLUDED.presence,
        status_msg = EXCLUDED.status_msg, last_active_ts = EXCLUDED.last_active_ts,
        position = EXCLUDED.position";
const COLUMNS: &str = "user_id, presence, status_msg, last_active_ts, position";

/// A user's presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presence {
    pub user_id: String,
    pub presence: String,
    pub status_msg: Option<String>,
    pub last_active_ts: i64,
    pub position: i64,
}

fn row(r: &Row) -> Result<Presence, StorageError> {
    Ok(Presence {
        user_id: r.string(0)?,
        presence: r.string(1)?,
        status_msg: r.opt_string(2)?,
        last_active_ts: r.i64(3)?,
        position: r.i64(4)?,
    })
}

/// Stores a user's presence.
pub async fn upsert(db: &impl Conn, p: &Presence) -> Result<(), StorageError> {
    db.execute(
        UPSERT,
        &[
            &p.user_id,
            &p.presence,
            &p.status_msg,
            &p.last_active_ts,
            &p.position,
        ],
    )
    .await?;
    Ok(())
}

/// Refreshes a user's last activity without moving the stream (nobody is woken for it).
pub async fn touch(db: &impl Conn, user_id: &str, at: i64) -> Result<(), StorageError> {
    db.execute(
        "UPDATE syncapi_presence SET last_active_ts = $2 WHERE user_id = $1",
        &[&user_id, &at],
    )
    .await?;
    Ok(())
}

/// One user's presence.
pub async fn select(db: &impl Conn, user_id: &str) -> Result<Option<Presence>, StorageError> {
    let sql = format!("SELECT {COLUMNS} FROM syncapi_presence WHERE user_id = $1");
    db.query_opt(&sql, &[&user_id])
        .await?
        .as_ref()
        .map(row)
        .transpose()
}

/// The presence of `users` that changed in `(after, upto]`.
pub async fn select_since(
    db: &impl Conn,
    users: &[String],
    after: i64,
    upto: i64,
) -> Result<Vec<Presence>, StorageError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM syncapi_presence
        WHERE position > $1 AND position <= $2 AND user_id IN {{ids}} ORDER BY position"
    );
    crate::storage::query_chunked(db, &sql, &[&after, &upto], users)
        .await?
        .iter()
        .map(row)
        .collect()
}

/// The presence of `users` as of position `upto` (users without any are left out).
pub async fn select_users(
    db: &impl Conn,
    users: &[String],
    upto: i64,
) -> Result<Vec<Presence>, StorageError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM syncapi_presence WHERE position <= $1 AND user_id IN {{ids}}"
    );
    crate::storage::query_chunked(db, &sql, &[&upto], users)
        .await?
        .iter()
        .map(row)
        .collect()
}
