//! `roomserver_room_aliases`: alias -> (room ID, creator).

use crate::storage::{Conn, StorageError};

const INSERT: &str =
    "INSERT INTO roomserver_room_aliases (alias, room_id, creator) VALUES ($1, $2, $3)
    ON CONFLICT (alias) DO NOTHING";
const SELECT: &str = "SELECT room_id, creator FROM roomserver_room_aliases WHERE alias = $1";
const SELECT_FOR_ROOM: &str =
    "SELECT alias FROM roomserver_room_aliases WHERE room_id = $1 ORDER BY alias";
const DELETE: &str = "DELETE FROM roomserver_room_aliases WHERE alias = $1";

/// Assigns an alias to a room; `false` when the alias is taken.
pub async fn insert(
    db: &impl Conn,
    alias: &str,
    room_id: &str,
    creator: &str,
) -> Result<bool, StorageError> {
    Ok(db.execute(INSERT, &[&alias, &room_id, &creator]).await? == 1)
}

/// Finds the room and creator of an alias.
pub async fn select(db: &impl Conn, alias: &str) -> Result<Option<(String, String)>, StorageError> {
    db.query_opt(SELECT, &[&alias])
        .await?
        .map(|r| Ok((r.string(0)?, r.string(1)?)))
        .transpose()
}

/// Lists the aliases of a room.
pub async fn select_for_room(db: &impl Conn, room_id: &str) -> Result<Vec<String>, StorageError> {
    db.query(SELECT_FOR_ROOM, &[&room_id])
        .await?
        .iter()
        .map(|r| r.string(0))
        .collect()
}

/// Removes an alias.
pub async fn delete(db: &impl Conn, alias: &str) -> Result<(), StorageError> {
    db.execute(DELETE, &[&alias]).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::testing::*;

    #[tokio::test]
    async fn room_aliases_table() {
        for backend in BACKENDS {
            let t = test_db(backend).await;
            let db = &t.db;
            assert!(insert(db, "#a:x", "!r:x", "@u:x").await.unwrap());
            assert!(
                !insert(db, "#a:x", "!s:x", "@v:x").await.unwrap(),
                "{backend}: taken"
            );
            assert!(insert(db, "#b:x", "!r:x", "@u:x").await.unwrap());
            assert_eq!(
                select(db, "#a:x").await.unwrap(),
                Some(("!r:x".into(), "@u:x".into()))
            );
            assert_eq!(
                select_for_room(db, "!r:x").await.unwrap(),
                vec!["#a:x".to_string(), "#b:x".into()]
            );
            delete(db, "#a:x").await.unwrap();
            assert_eq!(select(db, "#a:x").await.unwrap(), None);
        }
    }
}
