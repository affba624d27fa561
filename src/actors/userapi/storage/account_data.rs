//! `userapi_account_data`: (localpart, room or global, type) -> JSON content.

use crate::storage::{Conn, StorageError};

const UPSERT: &str = "INSERT INTO userapi_account_data (localpart, room_id, data_type, content)
    VALUES ($1, $2, $3, $4)
    ON CONFLICT (localpart, room_id, data_type) DO UPDATE SET content = EXCLUDED.content";
const SELECT: &str = "SELECT content FROM userapi_account_data
    WHERE localpart = $1 AND room_id = $2 AND data_type = $3";
// Touching the row locks it (PostgreSQL) until the transaction ends; SQLite transactions
// already write-lock the database.
const SELECT_FOR_UPDATE: &str = "UPDATE userapi_account_data SET content = content
    WHERE localpart = $1 AND room_id = $2 AND data_type = $3 RETURNING content";
const DELETE_ALL: &str = "DELETE FROM userapi_account_data WHERE localpart = $1";

/// The stored room ID of global account data.
fn room_key(room_id: Option<&str>) -> &str {
    room_id.unwrap_or("")
}

/// Stores account data, replacing what was there.
pub async fn upsert(
    db: &impl Conn,
    localpart: &str,
    room_id: Option<&str>,
    data_type: &str,
    content: &str,
) -> Result<(), StorageError> {
    db.execute(
        UPSERT,
        &[&localpart, &room_key(room_id), &data_type, &content],
    )
    .await?;
    Ok(())
}

/// Finds one piece of account data.
pub async fn select(
    db: &impl Conn,
    localpart: &str,
    room_id: Option<&str>,
    data_type: &str,
) -> Result<Option<String>, StorageError> {
    db.query_opt(SELECT, &[&localpart, &room_key(room_id), &data_type])
        .await?
        .map(|r| r.string(0))
        .transpose()
}

/// Reads one piece of account data and holds its row until the transaction ends.
pub async fn select_for_update(
    db: &impl Conn,
    localpart: &str,
    room_id: Option<&str>,
    data_type: &str,
) -> Result<Option<String>, StorageError> {
    db.query_opt(
        SELECT_FOR_UPDATE,
        &[&localpart, &room_key(room_id), &data_type],
    )
    .await?
    .map(|r| r.string(0))
    .transpose()
}

/// Forgets all of a user's account data (deactivation).
pub async fn delete_all(db: &impl Conn, localpart: &str) -> Result<(), StorageError> {
    db.execute(DELETE_ALL, &[&localpart]).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::testing::*;

    #[tokio::test]
    async fn account_data_table() {
        for backend in BACKENDS {
            let t = test_db(backend).await;
            let db = &t.db;
            upsert(db, "alice", None, "m.test", "{\"a\":1}")
                .await
                .unwrap();
            upsert(db, "alice", Some("!r:x"), "m.test", "{\"b\":2}")
                .await
                .unwrap();
            upsert(db, "alice", None, "m.test", "{\"a\":3}")
                .await
                .unwrap();
            assert_eq!(
                select(db, "alice", None, "m.test")
                    .await
                    .unwrap()
                    .as_deref(),
                Some("{\"a\":3}")
            );
            assert_eq!(
                select(db, "alice", Some("!r:x"), "m.test")
                    .await
                    .unwrap()
                    .as_deref(),
                Some("{\"b\":2}"),
                "{backend}"
            );
            assert_eq!(
                select(db, "alice", Some("!other:x"), "m.test")
                    .await
                    .unwrap(),
                None
            );
            delete_all(db, "alice").await.unwrap();
            assert_eq!(select(db, "alice", None, "m.test").await.unwrap(), None);
        }
    }
}
