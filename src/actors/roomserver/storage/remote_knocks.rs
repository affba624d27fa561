//! `roomserver_remote_knocks`: knocks of our users on rooms this server does not hold
//! (room, user) -> the knock event and the servers to leave through. See
//! `sql/029_roomserver_remote_knocks.sql`.

use crate::storage::{Conn, StorageError};

const UPSERT: &str = "INSERT INTO roomserver_remote_knocks
    (room_id, user_id, event_id, room_version, json, servers) VALUES ($1, $2, $3, $4, $5, $6)
    ON CONFLICT (room_id, user_id) DO UPDATE SET
        event_id = EXCLUDED.event_id, room_version = EXCLUDED.room_version,
        json = EXCLUDED.json, servers = EXCLUDED.servers";
const SELECT: &str = "SELECT event_id, room_version, json, servers FROM roomserver_remote_knocks
    WHERE room_id = $1 AND user_id = $2";
const DELETE: &str = "DELETE FROM roomserver_remote_knocks WHERE room_id = $1 AND user_id = $2";

/// A stored remote knock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteKnockRow {
    pub event_id: String,
    pub room_version: String,
    /// The knock event (federation format, with `unsigned.knock_room_state`).
    pub json: String,
    /// The servers to leave through, a JSON array of server names.
    pub servers: String,
}

/// Records (or replaces) the knock of `user_id` on `room_id`.
pub async fn upsert(
    db: &impl Conn,
    room_id: &str,
    user_id: &str,
    row: &RemoteKnockRow,
) -> Result<(), StorageError> {
    db.execute(
        UPSERT,
        &[
            &room_id,
            &user_id,
            &row.event_id,
            &row.room_version,
            &row.json,
            &row.servers,
        ],
    )
    .await?;
    Ok(())
}

/// Finds the knock of `user_id` on `room_id`.
pub async fn select(
    db: &impl Conn,
    room_id: &str,
    user_id: &str,
) -> Result<Option<RemoteKnockRow>, StorageError> {
    db.query_opt(SELECT, &[&room_id, &user_id])
        .await?
        .map(|r| {
            Ok(RemoteKnockRow {
                event_id: r.string(0)?,
                room_version: r.string(1)?,
                json: r.string(2)?,
                servers: r.string(3)?,
            })
        })
        .transpose()
}

/// Removes the knock of `user_id` on `room_id`; whether there was one.
pub async fn delete(db: &impl Conn, room_id: &str, user_id: &str) -> Result<bool, StorageError> {
    Ok(db.execute(DELETE, &[&room_id, &user_id]).await? > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::testing::*;

    #[tokio::test]
    async fn remote_knocks_table() {
        for backend in BACKENDS {
            let t = test_db(backend).await;
            let db = &t.db;
            let row = RemoteKnockRow {
                event_id: "$e".into(),
                room_version: "10".into(),
                json: "{}".into(),
                servers: r#"["a"]"#.into(),
            };
            assert_eq!(select(db, "!r:a", "@u:b").await.unwrap(), None);
            upsert(db, "!r:a", "@u:b", &row).await.unwrap();
            assert_eq!(select(db, "!r:a", "@u:b").await.unwrap(), Some(row.clone()));
            assert_eq!(select(db, "!r:a", "@v:b").await.unwrap(), None, "{backend}");
            // A second knock replaces the first.
            let newer = RemoteKnockRow {
                event_id: "$f".into(),
                servers: r#"["c"]"#.into(),
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
