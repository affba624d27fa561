//! `roomserver_pending_redactions`: redactions from elsewhere waiting for the event they
//! redact, which was not stored when they arrived.

use crate::storage::{Conn, StorageError};

const INSERT: &str = "INSERT INTO roomserver_pending_redactions
    (room_nid, target_event_id, redaction_nid) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING";
const SELECT: &str = "SELECT redaction_nid FROM roomserver_pending_redactions
    WHERE room_nid = $1 AND target_event_id = $2 ORDER BY redaction_nid";
const DELETE: &str =
    "DELETE FROM roomserver_pending_redactions WHERE room_nid = $1 AND target_event_id = $2";

/// Records that redaction `redaction_nid` of a room waits for the event `target`.
pub async fn insert(
    db: &impl Conn,
    room_nid: i64,
    target: &str,
    redaction_nid: i64,
) -> Result<(), StorageError> {
    db.execute(INSERT, &[&room_nid, &target, &redaction_nid])
        .await?;
    Ok(())
}

/// The redactions of a room waiting for the event `target`, oldest first.
pub async fn select(db: &impl Conn, room_nid: i64, target: &str) -> Result<Vec<i64>, StorageError> {
    db.query(SELECT, &[&room_nid, &target])
        .await?
        .iter()
        .map(|r| r.i64(0))
        .collect()
}

/// Forgets the redactions of a room that waited for `target` (it has arrived).
pub async fn delete(db: &impl Conn, room_nid: i64, target: &str) -> Result<(), StorageError> {
    db.execute(DELETE, &[&room_nid, &target]).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::testing::*;

    #[tokio::test]
    async fn pending_redactions_table() {
        for backend in BACKENDS {
            let t = test_db(backend).await;
            let db = &t.db;
            insert(db, 1, "$target", 7).await.unwrap();
            insert(db, 1, "$target", 5).await.unwrap();
            // Once per redaction, and per room.
            insert(db, 1, "$target", 7).await.unwrap();
            insert(db, 2, "$target", 9).await.unwrap();
            assert_eq!(
                select(db, 1, "$target").await.unwrap(),
                vec![5, 7],
                "{backend}"
            );
            assert_eq!(select(db, 1, "$other").await.unwrap(), Vec::<i64>::new());
            delete(db, 1, "$target").await.unwrap();
            assert!(select(db, 1, "$target").await.unwrap().is_empty());
            assert_eq!(
                select(db, 2, "$target").await.unwrap(),
                vec![9],
                "{backend}"
            );
        }
    }
}
