//! The roomserver's tables, one file each. Nobody else reads them.

pub mod backward_extremities;
pub mod event_types;
pub mod events;
pub mod memberships;
pub mod pending_redactions;
pub mod published_rooms;
pub mod remote_invites;
pub mod remote_knocks;
pub mod reports;
pub mod room_aliases;
pub mod rooms;
pub mod state_blocks;
pub mod state_keys;
pub mod state_snapshots;
pub mod transactions;

use crate::storage::{Conn, StorageError, ToValue};

/// Inserts a row keyed by a unique text column unless it exists, and returns its numeric
/// ID either way. `insert` must be `INSERT ... ON CONFLICT DO NOTHING RETURNING <nid>` and
/// `select` a lookup of the nid by the same key (`$1`).
pub(crate) async fn insert_or_get(
    db: &impl Conn,
    insert: &str,
    select: &str,
    params: &[&dyn ToValue],
) -> Result<i64, StorageError> {
    if let Some(row) = db.query_opt(insert, params).await? {
        return row.i64(0);
    }
    db.query_opt(select, &params[..1])
        .await?
        .ok_or_else(|| StorageError::Decode {
            column: 0,
            reason: "row vanished between insert and select".into(),
        })?
        .i64(0)
}

/// [`insert_or_get`] for rows that almost always exist already (event types, state keys): the
/// lookup goes first, so the usual call is one statement instead of two.
pub(crate) async fn get_or_insert(
    db: &impl Conn,
    insert: &str,
    select: &str,
    params: &[&dyn ToValue],
) -> Result<i64, StorageError> {
    if let Some(row) = db.query_opt(select, &params[..1]).await? {
        return row.i64(0);
    }
    insert_or_get(db, insert, select, params).await
}

pub(crate) use crate::storage::{placeholders, IN_CHUNK as CHUNK};
