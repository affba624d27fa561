//! `federationapi_server_keys`: (server, key ID) -> public key, validity, and the key object
//! it came in. Owned by the federationapi; nobody else reads it.

use crate::storage::{Conn, StorageError};

const UPSERT: &str = "INSERT INTO federationapi_server_keys
    (server_name, key_id, public_key, valid_until_ts, expired_ts, fetched_at, fetched_from, key_json)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
    ON CONFLICT (server_name, key_id) DO UPDATE SET
        public_key = EXCLUDED.public_key,
        valid_until_ts = EXCLUDED.valid_until_ts,
        expired_ts = EXCLUDED.expired_ts,
        fetched_at = EXCLUDED.fetched_at,
        fetched_from = EXCLUDED.fetched_from,
        key_json = EXCLUDED.key_json
    WHERE EXCLUDED.fetched_at >= federationapi_server_keys.fetched_at";
const SELECT_FOR_SERVER: &str = "SELECT key_id, public_key, valid_until_ts, expired_ts,
    fetched_at, key_json FROM federationapi_server_keys WHERE server_name = $1 ORDER BY key_id";

/// One stored key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    pub key_id: String,
    pub public_key: String,
    /// A current key's validity; an old key's `expired_ts`.
    pub valid_until_ts: i64,
    /// `Some` for an old key (`old_verify_keys`).
    pub expired_ts: Option<i64>,
    pub fetched_at: i64,
    pub key_json: String,
}

/// What is stored for one key.
pub struct NewKey<'a> {
    pub server_name: &'a str,
    pub key_id: &'a str,
    pub public_key: &'a str,
    pub valid_until_ts: i64,
    pub expired_ts: Option<i64>,
    pub fetched_at: i64,
    pub fetched_from: &'a str,
    pub key_json: &'a str,
}

/// Stores a fetched key, replacing what an older fetch stored for it.
pub async fn upsert(db: &impl Conn, key: &NewKey<'_>) -> Result<(), StorageError> {
    db.execute(
        UPSERT,
        &[
            &key.server_name,
            &key.key_id,
            &key.public_key,
            &key.valid_until_ts,
            &key.expired_ts,
            &key.fetched_at,
            &key.fetched_from,
            &key.key_json,
        ],
    )
    .await?;
    Ok(())
}

/// Every key stored for a server, by key ID.
pub async fn select_for_server(
    db: &impl Conn,
    server_name: &str,
) -> Result<Vec<StoredKey>, StorageError> {
    db.query(SELECT_FOR_SERVER, &[&server_name])
        .await?
        .iter()
        .map(|r| {
            Ok(StoredKey {
                key_id: r.string(0)?,
                public_key: r.string(1)?,
                valid_until_ts: r.i64(2)?,
                expired_ts: r.opt_i64(3)?,
                fetched_at: r.i64(4)?,
                key_json: r.string(5)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::testing::*;

    fn key<'a>(id: &'a str, public: &'a str, until: i64, at: i64) -> NewKey<'a> {
        NewKey {
            server_name: "a.test",
            key_id: id,
            public_key: public,
            valid_until_ts: until,
            expired_ts: None,
            fetched_at: at,
            fetched_from: "a.test",
            key_json: "{}",
        }
    }

    #[tokio::test]
    async fn the_newest_fetch_wins() {
        for backend in BACKENDS {
            let db = test_db(backend).await;
            upsert(&db.db, &key("ed25519:a", "K1", 100, 10))
                .await
                .unwrap();
            upsert(&db.db, &key("ed25519:b", "K2", 100, 10))
                .await
                .unwrap();
            // A newer fetch extends; an older one (a slow notary) changes nothing.
            upsert(&db.db, &key("ed25519:a", "K1", 200, 20))
                .await
                .unwrap();
            upsert(&db.db, &key("ed25519:a", "K1", 150, 15))
                .await
                .unwrap();
            let mut old = key("ed25519:b", "K2", 50, 30);
            old.expired_ts = Some(50);
            upsert(&db.db, &old).await.unwrap();
            let rows = select_for_server(&db.db, "a.test").await.unwrap();
            assert_eq!(rows.len(), 2, "{backend}");
            assert_eq!((rows[0].valid_until_ts, rows[0].fetched_at), (200, 20));
            assert_eq!(rows[1].expired_ts, Some(50));
            assert!(select_for_server(&db.db, "b.test")
                .await
                .unwrap()
                .is_empty());
        }
    }
}
