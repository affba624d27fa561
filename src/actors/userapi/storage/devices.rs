//! `userapi_devices`: (localpart, device_id) -> display name, hashed tokens, last seen.

use crate::storage::{Conn, Row, StorageError};

const UPSERT: &str = "INSERT INTO userapi_devices
    (localpart, device_id, display_name, access_token_hash, access_expires_ts,
     refresh_token_hash, created_ts, last_seen_ts, last_seen_ip, last_seen_user_agent)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $7, $8, $9)
    ON CONFLICT (localpart, device_id) DO UPDATE SET
        access_token_hash = EXCLUDED.access_token_hash,
        access_expires_ts = EXCLUDED.access_expires_ts,
        refresh_token_hash = EXCLUDED.refresh_token_hash,
        last_seen_ts = EXCLUDED.last_seen_ts,
        last_seen_ip = EXCLUDED.last_seen_ip,
        last_seen_user_agent = EXCLUDED.last_seen_user_agent";
const SELECT_BY_TOKEN: &str = "SELECT d.localpart, d.device_id, d.access_expires_ts, a.is_guest,
        d.prev_refresh_token_hash
    FROM userapi_devices d JOIN userapi_accounts a ON a.localpart = d.localpart
    WHERE d.access_token_hash = $1 AND a.deactivated = 0";
const SELECT_BY_REFRESH: &str = "SELECT localpart, device_id FROM userapi_devices
    WHERE refresh_token_hash = $1 OR prev_refresh_token_hash = $1";
const ROTATE_TOKENS: &str = "UPDATE userapi_devices
    SET access_token_hash = $3, access_expires_ts = $4, refresh_token_hash = $5,
        prev_refresh_token_hash = $6
    WHERE localpart = $1 AND device_id = $2
      AND (refresh_token_hash = $6 OR prev_refresh_token_hash = $6)";
const CLEAR_PREV_REFRESH: &str = "UPDATE userapi_devices SET prev_refresh_token_hash = NULL
    WHERE localpart = $1 AND device_id = $2";
const SELECT_ALL: &str = "SELECT device_id, display_name, last_seen_ip, last_seen_ts
    FROM userapi_devices WHERE localpart = $1 ORDER BY device_id";
const SELECT_ONE: &str = "SELECT device_id, display_name, last_seen_ip, last_seen_ts
    FROM userapi_devices WHERE localpart = $1 AND device_id = $2";
const UPDATE_NAME: &str =
    "UPDATE userapi_devices SET display_name = $3 WHERE localpart = $1 AND device_id = $2";
const UPDATE_LAST_SEEN: &str = "UPDATE userapi_devices
    SET last_seen_ts = $3, last_seen_ip = $4, last_seen_user_agent = COALESCE($5, last_seen_user_agent)
    WHERE localpart = $1 AND device_id = $2";
const DELETE_ONE: &str = "DELETE FROM userapi_devices WHERE localpart = $1 AND device_id = $2";
const DELETE_ALL_EXCEPT: &str =
    "DELETE FROM userapi_devices WHERE localpart = $1 AND device_id <> $2";
const DELETE_ALL: &str = "DELETE FROM userapi_devices WHERE localpart = $1";

/// A device as listed to its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub device_id: String,
    pub display_name: Option<String>,
    pub last_seen_ip: Option<String>,
    pub last_seen_ts: Option<i64>,
}

/// The owner of an access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRow {
    pub localpart: String,
    pub device_id: String,
    pub expires_ts: Option<i64>,
    pub is_guest: bool,
    /// The device still honours a refresh token it rotated away from.
    pub refresh_grace: bool,
}

/// What a new session writes.
pub struct NewDevice<'a> {
    pub localpart: &'a str,
    pub device_id: &'a str,
    pub display_name: Option<&'a str>,
    pub access_token_hash: &'a str,
    pub access_expires_ts: Option<i64>,
    pub refresh_token_hash: Option<&'a str>,
    pub now: i64,
    pub ip: Option<&'a str>,
    pub user_agent: Option<&'a str>,
}

fn device(r: &Row) -> Result<Device, StorageError> {
    Ok(Device {
        device_id: r.string(0)?,
        display_name: r.opt_string(1)?,
        last_seen_ip: r.opt_string(2)?,
        last_seen_ts: r.opt_i64(3)?,
    })
}

/// Creates a device, or gives an existing one of the same ID new tokens (its display name
/// is kept).
pub async fn upsert(db: &impl Conn, d: &NewDevice<'_>) -> Result<(), StorageError> {
    db.execute(
        UPSERT,
        &[
            &d.localpart,
            &d.device_id,
            &d.display_name,
            &d.access_token_hash,
            &d.access_expires_ts,
            &d.refresh_token_hash,
            &d.now,
            &d.ip,
            &d.user_agent,
        ],
    )
    .await?;
    Ok(())
}

/// Finds the device an access token (by hash) belongs to, if its account is active.
pub async fn select_by_token(
    db: &impl Conn,
    token_hash: &str,
) -> Result<Option<TokenRow>, StorageError> {
    db.query_opt(SELECT_BY_TOKEN, &[&token_hash])
        .await?
        .map(|r| {
            Ok(TokenRow {
                localpart: r.string(0)?,
                device_id: r.string(1)?,
                expires_ts: r.opt_i64(2)?,
                is_guest: r.bool(3)?,
                refresh_grace: r.opt_string(4)?.is_some(),
            })
        })
        .transpose()
}

/// Finds the (localpart, device_id) a refresh token (by hash) belongs to.
pub async fn select_by_refresh_token(
    db: &impl Conn,
    refresh_hash: &str,
) -> Result<Option<(String, String)>, StorageError> {
    db.query_opt(SELECT_BY_REFRESH, &[&refresh_hash])
        .await?
        .map(|r| Ok((r.string(0)?, r.string(1)?)))
        .transpose()
}

/// Replaces a device's tokens, only if `old_refresh_hash` is still its refresh token or the
/// one in grace (so two concurrent refreshes with one token cannot both win); the used token
/// enters the grace. `false` when it was neither.
pub async fn rotate_tokens(
    db: &impl Conn,
    localpart: &str,
    device_id: &str,
    access_hash: &str,
    access_expires_ts: Option<i64>,
    refresh_hash: &str,
    old_refresh_hash: &str,
) -> Result<bool, StorageError> {
    Ok(db
        .execute(
            ROTATE_TOKENS,
            &[
                &localpart,
                &device_id,
                &access_hash,
                &access_expires_ts,
                &refresh_hash,
                &old_refresh_hash,
            ],
        )
        .await?
        == 1)
}

/// Ends the grace of a device's previous refresh token (its new tokens are in use).
pub async fn clear_refresh_grace(
    db: &impl Conn,
    localpart: &str,
    device_id: &str,
) -> Result<(), StorageError> {
    db.execute(CLEAR_PREV_REFRESH, &[&localpart, &device_id])
        .await?;
    Ok(())
}

/// Lists a user's devices, ordered by ID.
pub async fn select_all(db: &impl Conn, localpart: &str) -> Result<Vec<Device>, StorageError> {
    db.query(SELECT_ALL, &[&localpart])
        .await?
        .iter()
        .map(device)
        .collect()
}

/// Finds one device of a user.
pub async fn select_one(
    db: &impl Conn,
    localpart: &str,
    device_id: &str,
) -> Result<Option<Device>, StorageError> {
    db.query_opt(SELECT_ONE, &[&localpart, &device_id])
        .await?
        .as_ref()
        .map(device)
        .transpose()
}

/// Renames a device; `false` when the user has no such device.
pub async fn update_display_name(
    db: &impl Conn,
    localpart: &str,
    device_id: &str,
    display_name: Option<&str>,
) -> Result<bool, StorageError> {
    Ok(db
        .execute(UPDATE_NAME, &[&localpart, &device_id, &display_name])
        .await?
        == 1)
}

/// Records a request made with a device's token.
pub async fn update_last_seen(
    db: &impl Conn,
    localpart: &str,
    device_id: &str,
    ts: i64,
    ip: Option<&str>,
    user_agent: Option<&str>,
) -> Result<(), StorageError> {
    db.execute(
        UPDATE_LAST_SEEN,
        &[&localpart, &device_id, &ts, &ip, &user_agent],
    )
    .await?;
    Ok(())
}

/// Deletes one device (and so its tokens).
pub async fn delete_one(
    db: &impl Conn,
    localpart: &str,
    device_id: &str,
) -> Result<(), StorageError> {
    db.execute(DELETE_ONE, &[&localpart, &device_id]).await?;
    Ok(())
}

/// Deletes every device of a user, but `except` when given.
pub async fn delete_all(
    db: &impl Conn,
    localpart: &str,
    except: Option<&str>,
) -> Result<(), StorageError> {
    match except {
        Some(keep) => db.execute(DELETE_ALL_EXCEPT, &[&localpart, &keep]).await?,
        None => db.execute(DELETE_ALL, &[&localpart]).await?,
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::userapi::storage::accounts;
    use crate::storage::testing::*;

    fn new<'a>(device_id: &'a str, token: &'a str, refresh: Option<&'a str>) -> NewDevice<'a> {
        NewDevice {
            localpart: "alice",
            device_id,
            display_name: Some("phone"),
            access_token_hash: token,
            access_expires_ts: None,
            refresh_token_hash: refresh,
            now: 10,
            ip: Some("127.0.0.1"),
            user_agent: None,
        }
    }

    #[tokio::test]
    async fn devices_table() {
        for backend in BACKENDS {
            let t = test_db(backend).await;
            let db = &t.db;
            accounts::insert(db, "alice", None, false, 1).await.unwrap();
            upsert(db, &new("D1", "t1", Some("r1"))).await.unwrap();
            upsert(db, &new("D2", "t2", None)).await.unwrap();
            let owner = select_by_token(db, "t1").await.unwrap().unwrap();
            assert_eq!(
                (owner.localpart.as_str(), owner.device_id.as_str()),
                ("alice", "D1")
            );
            // Reusing a device ID replaces its token and keeps its name.
            update_display_name(db, "alice", "D1", Some("laptop"))
                .await
                .unwrap();
            upsert(db, &new("D1", "t1b", None)).await.unwrap();
            assert_eq!(select_by_token(db, "t1").await.unwrap(), None, "{backend}");
            assert!(select_by_token(db, "t1b").await.unwrap().is_some());
            let d1 = select_one(db, "alice", "D1").await.unwrap().unwrap();
            assert_eq!(d1.display_name.as_deref(), Some("laptop"));
            // Refresh rotation wins once.
            upsert(db, &new("D3", "t3", Some("r3"))).await.unwrap();
            assert_eq!(
                select_by_refresh_token(db, "r3").await.unwrap(),
                Some(("alice".into(), "D3".into()))
            );
            assert!(
                rotate_tokens(db, "alice", "D3", "t3b", Some(5), "r3b", "r3")
                    .await
                    .unwrap()
            );
            // The used token stays in grace: a retry rotates again...
            assert!(rotate_tokens(db, "alice", "D3", "t3c", None, "r3c", "r3")
                .await
                .unwrap());
            // ...until the grace ends; then it is dead.
            clear_refresh_grace(db, "alice", "D3").await.unwrap();
            assert!(!rotate_tokens(db, "alice", "D3", "t3d", None, "r3d", "r3")
                .await
                .unwrap());
            assert_eq!(
                select_by_token(db, "t3c")
                    .await
                    .unwrap()
                    .unwrap()
                    .expires_ts,
                None
            );
            update_last_seen(db, "alice", "D2", 99, Some("10.0.0.1"), Some("ua"))
                .await
                .unwrap();
            let d2 = select_one(db, "alice", "D2").await.unwrap().unwrap();
            assert_eq!(
                (d2.last_seen_ts, d2.last_seen_ip.as_deref()),
                (Some(99), Some("10.0.0.1"))
            );
            assert_eq!(select_all(db, "alice").await.unwrap().len(), 3);
            assert!(!update_display_name(db, "alice", "NOPE", None)
                .await
                .unwrap());
            delete_one(db, "alice", "D2").await.unwrap();
            delete_all(db, "alice", Some("D1")).await.unwrap();
            let left: Vec<String> = select_all(db, "alice")
                .await
                .unwrap()
                .into_iter()
                .map(|d| d.device_id)
                .collect();
            assert_eq!(left, vec!["D1".to_string()], "{backend}");
            // Tokens of deactivated accounts are dead.
            accounts::deactivate(db, "alice").await.unwrap();
            assert_eq!(select_by_token(db, "t1b").await.unwrap(), None);
            delete_all(db, "alice", None).await.unwrap();
            assert!(select_all(db, "alice").await.unwrap().is_empty());
        }
    }
}
