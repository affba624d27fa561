//! `userapi_filters`: (localpart, filter_id) -> filter JSON.

use crate::storage::{Conn, StorageError};

const INSERT_NEXT: &str = "INSERT INTO userapi_filters (localpart, filter_id, filter)
    SELECT $1, COALESCE(MAX(filter_id) + 1, 0), $2 FROM userapi_filters WHERE localpart = $1
    ON CONFLICT (localpart, filter_id) DO NOTHING RETURNING filter_id";
const SELECT: &str = "SELECT filter FROM userapi_filters WHERE localpart = $1 AND filter_id = $2";

/// Stores a filter under the user's next ID and returns it; `None` when a concurrent insert
/// of the same user took that ID first (try again).
pub async fn insert(
    db: &impl Conn,
    localpart: &str,
    filter: &str,
) -> Result<Option<i64>, StorageError> {
    db.query_opt(INSERT_NEXT, &[&localpart, &filter])
        .await?
        .map(|row| row.i64(0))
        .transpose()
}

/// Finds a filter of a user.
pub async fn select(
    db: &impl Conn,
    localpart: &str,
    filter_id: i64,
) -> Result<Option<String>, StorageError> {
    db.query_opt(SELECT, &[&localpart, &filter_id])
        .await?
        .map(|r| r.string(0))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::testing::*;

    #[tokio::test]
    async fn filters_table() {
        for backend in BACKENDS {
            let t = test_db(backend).await;
            let db = &t.db;
            assert_eq!(
                insert(db, "alice", "{}").await.unwrap(),
                Some(0),
                "{backend}"
            );
            assert_eq!(insert(db, "alice", "{\"x\":1}").await.unwrap(), Some(1));
            assert_eq!(insert(db, "bob", "{}").await.unwrap(), Some(0));
            assert_eq!(
                select(db, "alice", 1).await.unwrap().as_deref(),
                Some("{\"x\":1}")
            );
            assert_eq!(select(db, "alice", 7).await.unwrap(), None);
        }
    }
}
