//! `userapi_profiles`: localpart -> display name, avatar URL.

use crate::storage::{Conn, StorageError};

const INSERT: &str = "INSERT INTO userapi_profiles (localpart, display_name, avatar_url)
    VALUES ($1, $2, NULL) ON CONFLICT (localpart) DO NOTHING";
const SELECT: &str = "SELECT display_name, avatar_url FROM userapi_profiles WHERE localpart = $1";
const SET_DISPLAY_NAME: &str = "UPDATE userapi_profiles SET display_name = $2 WHERE localpart = $1";
const SET_AVATAR_URL: &str = "UPDATE userapi_profiles SET avatar_url = $2 WHERE localpart = $1";

/// Creates the profile of a new account.
pub async fn insert(
    db: &impl Conn,
    localpart: &str,
    display_name: Option<&str>,
) -> Result<(), StorageError> {
    db.execute(INSERT, &[&localpart, &display_name]).await?;
    Ok(())
}

/// Finds a profile: (display name, avatar URL).
pub async fn select(
    db: &impl Conn,
    localpart: &str,
) -> Result<Option<(Option<String>, Option<String>)>, StorageError> {
    db.query_opt(SELECT, &[&localpart])
        .await?
        .map(|r| Ok((r.opt_string(0)?, r.opt_string(1)?)))
        .transpose()
}

/// Sets or clears the display name; `false` when there is no such profile.
pub async fn set_display_name(
    db: &impl Conn,
    localpart: &str,
    value: Option<&str>,
) -> Result<bool, StorageError> {
    Ok(db.execute(SET_DISPLAY_NAME, &[&localpart, &value]).await? == 1)
}

/// Sets or clears the avatar URL; `false` when there is no such profile.
pub async fn set_avatar_url(
    db: &impl Conn,
    localpart: &str,
    value: Option<&str>,
) -> Result<bool, StorageError> {
    Ok(db.execute(SET_AVATAR_URL, &[&localpart, &value]).await? == 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::testing::*;

    #[tokio::test]
    async fn profiles_table() {
        for backend in BACKENDS {
            let t = test_db(backend).await;
            let db = &t.db;
            insert(db, "alice", Some("Alice")).await.unwrap();
            assert_eq!(
                select(db, "alice").await.unwrap(),
                Some((Some("Alice".into()), None))
            );
            assert!(set_avatar_url(db, "alice", Some("mxc://x/y"))
                .await
                .unwrap());
            assert!(set_display_name(db, "alice", None).await.unwrap());
            assert_eq!(
                select(db, "alice").await.unwrap(),
                Some((None, Some("mxc://x/y".into()))),
                "{backend}"
            );
            assert!(!set_display_name(db, "bob", Some("B")).await.unwrap());
            assert_eq!(select(db, "bob").await.unwrap(), None);
        }
    }
}
