//! `federationapi_received_transactions`: (origin, transaction ID) -> the answer given, so a
//! transaction sent again gets the same answer without being processed twice.

use crate::storage::{Conn, StorageError};

const SELECT: &str = "SELECT response_json FROM federationapi_received_transactions
    WHERE origin = $1 AND txn_id = $2";
const INSERT: &str = "INSERT INTO federationapi_received_transactions
    (origin, txn_id, response_json, received_ts) VALUES ($1, $2, $3, $4)
    ON CONFLICT (origin, txn_id) DO NOTHING";
const DELETE_BEFORE: &str =
    "DELETE FROM federationapi_received_transactions WHERE received_ts < $1";

/// The stored answer to a transaction, if it was processed before.
pub async fn select(
    db: &impl Conn,
    origin: &str,
    txn_id: &str,
) -> Result<Option<String>, StorageError> {
    db.query_opt(SELECT, &[&origin, &txn_id])
        .await?
        .map(|r| r.string(0))
        .transpose()
}

/// Records the answer to a processed transaction (the first answer stays).
pub async fn insert(
    db: &impl Conn,
    origin: &str,
    txn_id: &str,
    response_json: &str,
    received_ts: i64,
) -> Result<(), StorageError> {
    db.execute(INSERT, &[&origin, &txn_id, &response_json, &received_ts])
        .await?;
    Ok(())
}

/// Forgets the transactions processed before `ts`; how many.
pub async fn delete_before(db: &impl Conn, ts: i64) -> Result<u64, StorageError> {
    db.execute(DELETE_BEFORE, &[&ts]).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::testing::{test_db, BACKENDS};

    #[tokio::test]
    async fn the_first_answer_stays() {
        for backend in BACKENDS {
            let db = test_db(backend).await;
            assert_eq!(select(&db.db, "b.test", "1").await.unwrap(), None);
            insert(&db.db, "b.test", "1", "{\"pdus\":{}}", 5)
                .await
                .unwrap();
            insert(&db.db, "b.test", "1", "{\"other\":1}", 6)
                .await
                .unwrap();
            assert_eq!(
                select(&db.db, "b.test", "1").await.unwrap().as_deref(),
                Some("{\"pdus\":{}}"),
                "{backend}"
            );
            // The same ID from another origin is another transaction.
            assert_eq!(select(&db.db, "c.test", "1").await.unwrap(), None);
            insert(&db.db, "b.test", "2", "{}", 9).await.unwrap();
            assert_eq!(delete_before(&db.db, 9).await.unwrap(), 1);
            assert_eq!(select(&db.db, "b.test", "1").await.unwrap(), None);
            assert!(select(&db.db, "b.test", "2").await.unwrap().is_some());
        }
    }
}
