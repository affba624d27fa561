//! `roomserver_remote_invites`: invites of our users into rooms this server does not hold
//! (room, user) -> the invite event. See `sql/026_roomserver_remote_invites.sql`.

use crate::storage::{Conn, StorageError};

const UPSERT: &str = "INSERT INTO roomserver_remote_invites
    (room_id, user_id, event_id, room_version, json) VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (room_id, user_id) DO UPDATE SET
        event_id = EXCLUDED.event_id, room_version = EXCLUDED.room_version, json = EXCLUDED.json";
const SELECT: &str = "SELECT event_id, room_version, json FROM roomserver_remote_invites
    WHERE room_id = $1 AND user_id = $2";
const DELETE: &str = "DELETE FROM roomserver_remote_invites WHERE room_id = $1 AND user_id = $2";

/// A stored remote invite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteInviteRow {
    pub event_id: String,
    pub room_version: String,
    /// The invite event (federation format, with `unsigned.invite_room_state`).
    pub json: String,
}

/// Records (or replaces) the invite of `user_id` into `room_id`.
pub async fn upsert(
    db: &impl Conn,
    room_id: &str,
    user_id: &str,
    row: &RemoteInviteRow,
) -> Result<(), StorageError> {
    db.execute(
        UPSERT,
        &[
            &room_id,
            &user_id,
            &row.event_id,
            &row.room_version,
            &row.json,
        ],
    )
    .await?;
    Ok(())
}

/// Finds the invite of `user_id` into `room_id`.
pub async fn select(
    db: &impl Conn,
    room_id: &str,
    user_id: &str,
) -> Result<Option<RemoteInviteRow>, StorageError> {
    db.query_opt(SELECT, &[&room_id, &user_id])
        .await?
        .map(|r| {
            Ok(RemoteInviteRow {
                event_id: r.string(0)?,
                room_version: r.string(1)?,
                json: r.string(2)?,
            })
        })
        .transpose()
}

/// Removes the invite of `user_id` into `room_id`; whether there was one.
pub async fn delete(db: &impl Conn, room_id: &str, user_id: &str) -> Result<bool, StorageError> {
    Ok(db.execute(DELETE, &[&room_id, &user_id]).await? > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::testing::*;

    #[tokio::test]
    async fn remote_invites_table() {
        for backend in BACKENDS {
            let t = test_db(backend).await;
            let db = &t.db;
            let row = RemoteInviteRow {
                event_id: "$e".into(),
                room_version: "11".into(),
                json: "{}".into(),
            };
            assert_eq!(select(db, "!r:a", "@u:b").await.unwrap(), None);
            upsert(db, "!r:a", "@u:b", &row).await.unwrap();
            assert_eq!(select(db, "!r:a", "@u:b").await.unwrap(), Some(row.clone()));
            // A second invite replaces the first.
            let newer = RemoteInviteRow {
                event_id: "$f".into(),
                ..row
            };
            upsert(db, "!r:a", "@u:b", &newer).await.unwrap();
            assert_eq!(select(db, "!r:a", "@u:b").await.unwrap(), Some(newer));
            assert!(delete(db, "!r:a", "@u:b").await.unwrap());
            assert!(!delete(db, "!r:a", "@u:b").await.unwrap());
            assert_eq!(select(db, "!r:a", "@u:b").await.unwrap(), None);
        }
    }
}
