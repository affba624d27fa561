//! `roomserver_published_rooms`: the rooms in this server's public directory.

use crate::storage::{Conn, StorageError};

const INSERT: &str =
    "INSERT INTO roomserver_published_rooms (room_id, published_ts) VALUES ($1, $2)
    ON CONFLICT (room_id) DO NOTHING";
const DELETE: &str = "DELETE FROM roomserver_published_rooms WHERE room_id = $1";
const SELECT_ONE: &str = "SELECT 1 FROM roomserver_published_rooms WHERE room_id = $1";
const SELECT_ALL: &str = "SELECT room_id FROM roomserver_published_rooms ORDER BY room_id";

/// Lists or unlists a room.
pub async fn set(db: &impl Conn, room_id: &str, published: bool) -> Result<(), StorageError> {
    if published {
        db.execute(INSERT, &[&room_id, &crate::storage::now_ms()])
            .await?;
    } else {
        db.execute(DELETE, &[&room_id]).await?;
    }
    Ok(())
}

/// Whether a room is listed.
pub async fn is_published(db: &impl Conn, room_id: &str) -> Result<bool, StorageError> {
    Ok(db.query_opt(SELECT_ONE, &[&room_id]).await?.is_some())
}

/// Every listed room.
pub async fn select_all(db: &impl Conn) -> Result<Vec<String>, StorageError> {
    db.query(SELECT_ALL, &[])
        .await?
        .iter()
        .map(|r| r.string(0))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::testing::*;

    #[tokio::test]
    async fn published_rooms_table() {
        for backend in BACKENDS {
            let t = test_db(backend).await;
            let db = &t.db;
            set(db, "!b:x", true).await.unwrap();
            set(db, "!a:x", true).await.unwrap();
            set(db, "!a:x", true).await.unwrap();
            assert_eq!(
                select_all(db).await.unwrap(),
                vec!["!a:x".to_string(), "!b:x".into()],
                "{backend}"
            );
            set(db, "!b:x", false).await.unwrap();
            assert!(!is_published(db, "!b:x").await.unwrap());
            assert!(is_published(db, "!a:x").await.unwrap());
        }
    }
}
