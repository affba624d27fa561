//! `roomserver_backward_extremities`: per room, the events named as prev events in the
//! room's history here that are not part of it (see `sql/030_roomserver_backfill.sql`).

use crate::storage::{Conn, StorageError};

const INSERT: &str = "INSERT INTO roomserver_backward_extremities (room_nid, event_id)
    VALUES ($1, $2) ON CONFLICT (room_nid, event_id) DO NOTHING";
const DELETE: &str =
    "DELETE FROM roomserver_backward_extremities WHERE room_nid = $1 AND event_id = $2";
const SELECT: &str = "SELECT event_id FROM roomserver_backward_extremities
    WHERE room_nid = $1 ORDER BY event_id LIMIT $2";

/// Records a missing event of a room's history (once).
pub async fn insert(db: &impl Conn, room_nid: i64, event_id: &str) -> Result<(), StorageError> {
    db.execute(INSERT, &[&room_nid, &event_id]).await?;
    Ok(())
}

/// Forgets one (it is part of the history now, or was asked for in vain).
pub async fn delete(db: &impl Conn, room_nid: i64, event_id: &str) -> Result<(), StorageError> {
    db.execute(DELETE, &[&room_nid, &event_id]).await?;
    Ok(())
}

/// Up to `limit` of a room's backward extremities.
pub async fn select(
    db: &impl Conn,
    room_nid: i64,
    limit: i64,
) -> Result<Vec<String>, StorageError> {
    db.query(SELECT, &[&room_nid, &limit])
        .await?
        .iter()
        .map(|r| r.string(0))
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::storage::testing::*;

    #[actix_web::test]
    async fn extremities_are_kept_once_and_forgotten() {
        for backend in BACKENDS {
            let t = test_db(backend).await;
            let db = &t.db;
            super::insert(db, 1, "$b").await.unwrap();
            super::insert(db, 1, "$a").await.unwrap();
            super::insert(db, 1, "$a").await.unwrap();
            super::insert(db, 2, "$c").await.unwrap();
            assert_eq!(super::select(db, 1, 10).await.unwrap(), ["$a", "$b"]);
            assert_eq!(super::select(db, 1, 1).await.unwrap(), ["$a"]);
            super::delete(db, 1, "$a").await.unwrap();
            assert_eq!(super::select(db, 1, 10).await.unwrap(), ["$b"], "{backend}");
            assert_eq!(super::select(db, 2, 10).await.unwrap(), ["$c"], "{backend}");
        }
    }
}
