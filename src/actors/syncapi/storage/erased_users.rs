//! `syncapi_erased_users`: users whose accounts were erased (from the userapi's stream).

use crate::storage::{Conn, StorageError};

const INSERT: &str = "INSERT INTO syncapi_erased_users (user_id, position) VALUES ($1, $2)
    ON CONFLICT (user_id) DO NOTHING";
const SELECT_ALL: &str = "SELECT user_id FROM syncapi_erased_users";

/// Records an erased user.
pub async fn insert(db: &impl Conn, user_id: &str, position: i64) -> Result<(), StorageError> {
    db.execute(INSERT, &[&user_id, &position]).await?;
    Ok(())
}

/// Every erased user (few: erasure is rare; loaded once and kept by the syncapi).
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
    async fn erased_users_table() {
        for backend in BACKENDS {
            let t = test_db(backend).await;
            insert(&t.db, "@a:x", 3).await.unwrap();
            insert(&t.db, "@a:x", 4).await.unwrap();
            insert(&t.db, "@b:x", 5).await.unwrap();
            let mut all = select_all(&t.db).await.unwrap();
            all.sort();
            assert_eq!(all, vec!["@a:x", "@b:x"]);
        }
    }
}
