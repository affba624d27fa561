//! `userapi_openid_tokens`: OpenID token hash -> (localpart, expiry).

use crate::storage::{Conn, StorageError};

const INSERT: &str =
    "INSERT INTO userapi_openid_tokens (token_hash, localpart, expires_at) VALUES ($1, $2, $3)";
const SELECT: &str = "SELECT localpart FROM userapi_openid_tokens
    WHERE token_hash = $1 AND expires_at > $2";
const DELETE_EXPIRED: &str = "DELETE FROM userapi_openid_tokens WHERE expires_at <= $1";

/// Stores a new token (by its hash).
pub async fn insert(
    db: &impl Conn,
    token_hash: &str,
    localpart: &str,
    expires_at: i64,
) -> Result<(), StorageError> {
    db.execute(INSERT, &[&token_hash, &localpart, &expires_at])
        .await?;
    Ok(())
}

/// Finds the owner of a token that has not expired at `now`.
pub async fn select(
    db: &impl Conn,
    token_hash: &str,
    now: i64,
) -> Result<Option<String>, StorageError> {
    db.query_opt(SELECT, &[&token_hash, &now])
        .await?
        .map(|r| r.string(0))
        .transpose()
}

/// Forgets every token that expired by `now`.
pub async fn delete_expired(db: &impl Conn, now: i64) -> Result<u64, StorageError> {
    db.execute(DELETE_EXPIRED, &[&now]).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::testing::*;

    #[tokio::test]
    async fn tokens_resolve_until_they_expire() {
        for backend in BACKENDS {
            let db = test_db(backend).await;
            insert(&db.db, "h1", "alice", 2_000).await.unwrap();
            insert(&db.db, "h2", "bob", 1_000).await.unwrap();
            assert_eq!(
                select(&db.db, "h1", 1_500).await.unwrap().as_deref(),
                Some("alice")
            );
            assert_eq!(select(&db.db, "h2", 1_500).await.unwrap(), None);
            assert_eq!(select(&db.db, "nope", 0).await.unwrap(), None);
            assert_eq!(delete_expired(&db.db, 1_500).await.unwrap(), 1);
            assert_eq!(
                select(&db.db, "h1", 1_999).await.unwrap().as_deref(),
                Some("alice")
            );
        }
    }
}
