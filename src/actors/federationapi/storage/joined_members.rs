//! `federationapi_joined_members`: who is joined to each room, as of the roomserver stream
//! position the federationapi applied; the servers a room's events go to.

use crate::storage::{Conn, StorageError};

const UPSERT: &str = "INSERT INTO federationapi_joined_members
    (room_id, user_id, server_name, event_id) VALUES ($1, $2, $3, $4)
    ON CONFLICT (room_id, user_id) DO UPDATE SET event_id = EXCLUDED.event_id";
const DELETE: &str = "DELETE FROM federationapi_joined_members WHERE room_id = $1 AND user_id = $2";
const DELETE_BY_EVENT: &str =
    "DELETE FROM federationapi_joined_members WHERE room_id = $1 AND event_id = $2";
const SELECT_SERVERS_SHARING: &str = "SELECT DISTINCT server_name FROM federationapi_joined_members
    WHERE room_id IN (SELECT room_id FROM federationapi_joined_members WHERE user_id = $1)
    ORDER BY server_name";
const SELECT_MEMBERS: &str =
    "SELECT user_id, server_name, event_id FROM federationapi_joined_members
    WHERE room_id = $1";
const SELECT_SERVERS: &str = "SELECT DISTINCT server_name FROM federationapi_joined_members
    WHERE room_id = $1 ORDER BY server_name";

/// Records `user_id` as joined to `room_id` by `event_id`.
pub async fn upsert(
    db: &impl Conn,
    room_id: &str,
    user_id: &str,
    server_name: &str,
    event_id: &str,
) -> Result<(), StorageError> {
    db.execute(UPSERT, &[&room_id, &user_id, &server_name, &event_id])
        .await?;
    Ok(())
}

/// `user_id` is no longer joined to `room_id`.
pub async fn delete(db: &impl Conn, room_id: &str, user_id: &str) -> Result<(), StorageError> {
    db.execute(DELETE, &[&room_id, &user_id]).await?;
    Ok(())
}

/// The member event `event_id` left the room's state: whoever it made joined is not any more.
pub async fn delete_by_event(
    db: &impl Conn,
    room_id: &str,
    event_id: &str,
) -> Result<(), StorageError> {
    db.execute(DELETE_BY_EVENT, &[&room_id, &event_id]).await?;
    Ok(())
}

/// The joined members of `room_id`: (user ID, server name, the join's event ID).
pub async fn select_members(
    db: &impl Conn,
    room_id: &str,
) -> Result<Vec<(String, String, String)>, StorageError> {
    db.query(SELECT_MEMBERS, &[&room_id])
        .await?
        .iter()
        .map(|r| Ok((r.string(0)?, r.string(1)?, r.string(2)?)))
        .collect()
}

/// The servers with at least one joined member in `room_id`, sorted.
pub async fn select_servers(db: &impl Conn, room_id: &str) -> Result<Vec<String>, StorageError> {
    db.query(SELECT_SERVERS, &[&room_id])
        .await?
        .iter()
        .map(|r| r.string(0))
        .collect()
}

/// The servers with a joined member in any room `user_id` is joined to, sorted.
pub async fn select_servers_sharing(
    db: &impl Conn,
    user_id: &str,
) -> Result<Vec<String>, StorageError> {
    db.query(SELECT_SERVERS_SHARING, &[&user_id])
        .await?
        .iter()
        .map(|r| r.string(0))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::testing::{test_db, BACKENDS};

    #[tokio::test]
    async fn servers_follow_joins_and_leaves() {
        for backend in BACKENDS {
            let db = test_db(backend).await;
            let r = "!r:a.test";
            upsert(&db.db, r, "@a:a.test", "a.test", "$1")
                .await
                .unwrap();
            upsert(&db.db, r, "@b:b.test", "b.test", "$2")
                .await
                .unwrap();
            upsert(&db.db, r, "@c:b.test", "b.test", "$3")
                .await
                .unwrap();
            upsert(&db.db, "!other:a.test", "@d:d.test", "d.test", "$4")
                .await
                .unwrap();
            assert_eq!(
                select_servers(&db.db, r).await.unwrap(),
                ["a.test", "b.test"],
                "{backend}"
            );
            assert_eq!(
                select_servers_sharing(&db.db, "@a:a.test").await.unwrap(),
                ["a.test", "b.test"]
            );
            assert!(select_servers_sharing(&db.db, "@z:z.test")
                .await
                .unwrap()
                .is_empty());
            let mut members = select_members(&db.db, r).await.unwrap();
            members.sort();
            assert_eq!(
                members[1],
                ("@b:b.test".into(), "b.test".into(), "$2".into())
            );
            assert_eq!(members.len(), 3);
            delete(&db.db, r, "@b:b.test").await.unwrap();
            assert_eq!(
                select_servers(&db.db, r).await.unwrap(),
                ["a.test", "b.test"]
            );
            // A later join event replaces the row's event; the old one no longer removes it.
            upsert(&db.db, r, "@c:b.test", "b.test", "$5")
                .await
                .unwrap();
            delete_by_event(&db.db, r, "$3").await.unwrap();
            assert_eq!(
                select_servers(&db.db, r).await.unwrap(),
                ["a.test", "b.test"]
            );
            delete_by_event(&db.db, r, "$5").await.unwrap();
            assert_eq!(select_servers(&db.db, r).await.unwrap(), ["a.test"]);
        }
    }
}
