//! `userapi_accounts`: localpart -> password hash, guest flag, deactivation.

use crate::storage::{Conn, StorageError};

const INSERT: &str = "INSERT INTO userapi_accounts (localpart, password_hash, is_guest, created_ts)
    VALUES ($1, $2, $3, $4) ON CONFLICT (localpart) DO NOTHING";
const SELECT: &str =
    "SELECT password_hash, is_guest, deactivated FROM userapi_accounts WHERE localpart = $1";
const ERASE: &str = "UPDATE userapi_accounts SET erased = 1 WHERE localpart = $1";
const UPGRADE_GUEST: &str = "UPDATE userapi_accounts SET password_hash = $2, is_guest = 0
    WHERE localpart = $1 AND is_guest = 1 AND deactivated = 0";
const UPDATE_PASSWORD: &str = "UPDATE userapi_accounts SET password_hash = $2 WHERE localpart = $1";
const LOCK: &str = "UPDATE userapi_accounts SET password_hash = password_hash WHERE localpart = $1";
const DEACTIVATE: &str =
    "UPDATE userapi_accounts SET deactivated = 1, password_hash = NULL WHERE localpart = $1";

/// An account row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub password_hash: Option<String>,
    pub is_guest: bool,
    pub deactivated: bool,
}

/// Creates an account; `false` when the localpart is already taken.
pub async fn insert(
    db: &impl Conn,
    localpart: &str,
    password_hash: Option<&str>,
    is_guest: bool,
    now: i64,
) -> Result<bool, StorageError> {
    Ok(db
        .execute(INSERT, &[&localpart, &password_hash, &is_guest, &now])
        .await?
        == 1)
}

/// Finds the account of a localpart, deactivated or not.
pub async fn select(db: &impl Conn, localpart: &str) -> Result<Option<Account>, StorageError> {
    db.query_opt(SELECT, &[&localpart])
        .await?
        .map(|r| {
            Ok(Account {
                password_hash: r.opt_string(0)?,
                is_guest: r.bool(1)?,
                deactivated: r.bool(2)?,
            })
        })
        .transpose()
}

/// Replaces the password hash of an account.
pub async fn update_password(
    db: &impl Conn,
    localpart: &str,
    password_hash: &str,
) -> Result<(), StorageError> {
    db.execute(UPDATE_PASSWORD, &[&localpart, &password_hash])
        .await?;
    Ok(())
}

/// Marks an account erased.
pub async fn erase(db: &impl Conn, localpart: &str) -> Result<(), StorageError> {
    db.execute(ERASE, &[&localpart]).await?;
    Ok(())
}

/// Turns a guest account into a full one with a password; `false` when there is no such
/// (active) guest.
pub async fn upgrade_guest(
    db: &impl Conn,
    localpart: &str,
    password_hash: &str,
) -> Result<bool, StorageError> {
    Ok(db
        .execute(UPGRADE_GUEST, &[&localpart, &password_hash])
        .await?
        == 1)
}

/// Locks an account's row until the transaction ends (a no-op update), so a password change
/// and a session creation of the same account happen one after the other.
pub async fn lock(db: &impl Conn, localpart: &str) -> Result<(), StorageError> {
    db.execute(LOCK, &[&localpart]).await?;
    Ok(())
}

/// Marks an account deactivated and forgets its password.
pub async fn deactivate(db: &impl Conn, localpart: &str) -> Result<(), StorageError> {
    db.execute(DEACTIVATE, &[&localpart]).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::testing::*;

    #[tokio::test]
    async fn accounts_table() {
        for backend in BACKENDS {
            let t = test_db(backend).await;
            let db = &t.db;
            assert!(insert(db, "alice", Some("h1"), false, 1).await.unwrap());
            assert!(
                !insert(db, "alice", None, true, 2).await.unwrap(),
                "{backend}: taken"
            );
            assert!(insert(db, "guest1", None, true, 3).await.unwrap());
            let a = select(db, "alice").await.unwrap().unwrap();
            assert_eq!(
                a,
                Account {
                    password_hash: Some("h1".into()),
                    is_guest: false,
                    deactivated: false
                }
            );
            assert!(select(db, "guest1").await.unwrap().unwrap().is_guest);
            assert_eq!(select(db, "bob").await.unwrap(), None);
            update_password(db, "alice", "h2").await.unwrap();
            assert!(
                !upgrade_guest(db, "alice", "h3").await.unwrap(),
                "not a guest"
            );
            assert!(upgrade_guest(db, "guest1", "h4").await.unwrap());
            assert!(!select(db, "guest1").await.unwrap().unwrap().is_guest);
            assert!(!upgrade_guest(db, "guest1", "h5").await.unwrap(), "once");
            assert_eq!(
                select(db, "alice")
                    .await
                    .unwrap()
                    .unwrap()
                    .password_hash
                    .as_deref(),
                Some("h2")
            );
            deactivate(db, "alice").await.unwrap();
            let a = select(db, "alice").await.unwrap().unwrap();
            assert!(a.deactivated && a.password_hash.is_none(), "{backend}");
        }
    }
}
