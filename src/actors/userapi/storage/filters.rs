//! `userapi_filters`: (localpart, filter_id) -> filter JSON.

use crate::storage::{Conn, StorageError};

const INSERT_NEXT: &str = "INSERT INTO userapi_filters (localpart, filter_id, filter)
    SELECT $1, COALESCE(MAX(filter_id) + 1, 0), $2 FROM userapi_filters WHERE localpart = $1
    RETURNING filter_id";
const SELECT: &str = "SELECT filter FROM userapi_filters WHERE localpart = $1 AND filter_id = $2";

/// Stores a filter under the user's next ID and returns it. Run it in a transaction with
/// the others of the same user serialized, or retry on a key conflict.
pub async fn insert(db: &impl Conn, localpart: &str, filter: &str) -> Result<i64, StorageError> {
    let row = db.query_opt(INSERT_NEXT, &[&localpart, &filter]).await?;
    row.ok_or_else(|| StorageError::Decode {
        column: 0,
        reason: "INSERT ... RETURNING returned no row".into(),
    })?
    .i64(0)
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
            assert_eq!(insert(db, "alice", "{}").await.unwrap(), 0, "{backend}");
            assert_eq!(insert(db, "alice", "{\"x\":1}").await.unwrap(), 1);
            assert_eq!(insert(db, "bob", "{}").await.unwrap(), 0);
            assert_eq!(
                select(db, "alice", 1).await.unwrap().as_deref(),
                Some("{\"x\":1}")
            );
            assert_eq!(select(db, "alice", 7).await.unwrap(), None);
        }
    }
}
