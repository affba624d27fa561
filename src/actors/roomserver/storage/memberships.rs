//! `roomserver_memberships`: (room, user) -> current membership, following the room's
//! current state (a user without an `m.room.member` event in it has no row).

use crate::storage::{Conn, StorageError};

const UPSERT: &str =
    "INSERT INTO roomserver_memberships (room_nid, user_id, membership, event_nid, forgotten)
    VALUES ($1, $2, $3, $4, 0)
    ON CONFLICT (room_nid, user_id) DO UPDATE SET
        membership = EXCLUDED.membership, event_nid = EXCLUDED.event_nid, forgotten = 0";
const SELECT_ROOMS: &str = "SELECT r.room_id FROM roomserver_memberships m
    JOIN roomserver_rooms r ON r.room_nid = m.room_nid
    WHERE m.user_id = $1 AND m.membership = $2 ORDER BY r.room_id";
const SELECT_ONE: &str = "SELECT m.membership, m.forgotten FROM roomserver_memberships m
    JOIN roomserver_rooms r ON r.room_nid = m.room_nid
    WHERE r.room_id = $1 AND m.user_id = $2";
const COUNT: &str = "SELECT COUNT(*) FROM roomserver_memberships m
    JOIN roomserver_rooms r ON r.room_nid = m.room_nid
    WHERE r.room_id = $1 AND m.membership = $2";
const SELECT_WITH: &str = "SELECT user_id FROM roomserver_memberships
    WHERE room_nid = $1 AND membership = $2 ORDER BY user_id";
const SELECT_OF_SERVER: &str = "SELECT user_id FROM roomserver_memberships
    WHERE room_nid = $1 AND membership = $2 AND user_id LIKE $3 ESCAPE '\\'";
const DELETE: &str = "DELETE FROM roomserver_memberships WHERE room_nid = $1 AND user_id = $2";
const FORGET: &str = "UPDATE roomserver_memberships SET forgotten = 1
    WHERE user_id = $2 AND room_nid = (SELECT room_nid FROM roomserver_rooms WHERE room_id = $1)
        AND forgotten = 0 AND membership NOT IN ('join', 'invite', 'knock')";

/// Records a user's new membership of a room.
pub async fn upsert(
    db: &impl Conn,
    room_nid: i64,
    user_id: &str,
    membership: &str,
    event_nid: i64,
) -> Result<(), StorageError> {
    db.execute(UPSERT, &[&room_nid, &user_id, &membership, &event_nid])
        .await?;
    Ok(())
}

/// Drops a user's membership of a room: the current state no longer holds one (a state
/// resolution took their `m.room.member` event out).
pub async fn delete(db: &impl Conn, room_nid: i64, user_id: &str) -> Result<(), StorageError> {
    db.execute(DELETE, &[&room_nid, &user_id]).await?;
    Ok(())
}

/// The rooms where a user's membership is `membership`, by room ID.
pub async fn select_rooms(
    db: &impl Conn,
    user_id: &str,
    membership: &str,
) -> Result<Vec<String>, StorageError> {
    db.query(SELECT_ROOMS, &[&user_id, &membership])
        .await?
        .iter()
        .map(|r| r.string(0))
        .collect()
}

/// A user's membership of a room and whether they forgot it.
pub async fn select(
    db: &impl Conn,
    room_id: &str,
    user_id: &str,
) -> Result<Option<(String, bool)>, StorageError> {
    db.query_opt(SELECT_ONE, &[&room_id, &user_id])
        .await?
        .map(|r| Ok((r.string(0)?, r.bool(1)?)))
        .transpose()
}

/// How many users of a room have the given membership.
pub async fn count(db: &impl Conn, room_id: &str, membership: &str) -> Result<i64, StorageError> {
    db.query_opt(COUNT, &[&room_id, &membership])
        .await?
        .map_or(Ok(0), |r| r.i64(0))
}

/// Marks a room forgotten by a user who is no longer in it; `false` when nothing changed
/// (already forgotten, or in the room again).
pub async fn forget(db: &impl Conn, room_id: &str, user_id: &str) -> Result<bool, StorageError> {
    Ok(db.execute(FORGET, &[&room_id, &user_id]).await? == 1)
}

/// The users of a room whose current membership is `membership`, sorted.
pub async fn select_with(
    db: &impl Conn,
    room_nid: i64,
    membership: &str,
) -> Result<Vec<String>, StorageError> {
    db.query(SELECT_WITH, &[&room_nid, &membership])
        .await?
        .iter()
        .map(|r| r.string(0))
        .collect()
}

/// The users of server `server_name` whose current membership of a room is `membership`.
pub async fn select_of_server(
    db: &impl Conn,
    room_nid: i64,
    membership: &str,
    server_name: &str,
) -> Result<Vec<String>, StorageError> {
    let rows = db
        .query(
            SELECT_OF_SERVER,
            &[&room_nid, &membership, &like_suffix(server_name)],
        )
        .await?;
    let mut out = Vec::new();
    for r in rows {
        let user = r.string(0)?;
        // LIKE is case-insensitive on SQLite: keep exact matches only.
        if server_of(&user) == Some(server_name) {
            out.push(user);
        }
    }
    Ok(out)
}

/// The server part of a user ID (`@user:server` -> `server`).
pub fn server_of(user_id: &str) -> Option<&str> {
    user_id.split_once(':').map(|(_, server)| server)
}

/// A LIKE pattern (with `ESCAPE '\'`) for user IDs of `server_name`: `%:<server>`.
pub(crate) fn like_suffix(server_name: &str) -> String {
    let mut pattern = String::from("%:");
    for c in server_name.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::roomserver::storage::rooms;
    use crate::storage::testing::*;

    #[tokio::test]
    async fn memberships_table() {
        for backend in BACKENDS {
            let t = test_db(backend).await;
            let db = &t.db;
            let a = rooms::insert(db, "!a:x", "12").await.unwrap();
            let b = rooms::insert(db, "!b:x", "12").await.unwrap();
            upsert(db, a, "@u:x", "join", 1).await.unwrap();
            upsert(db, b, "@u:x", "invite", 2).await.unwrap();
            assert_eq!(
                select_rooms(db, "@u:x", "join").await.unwrap(),
                vec!["!a:x".to_string()],
                "{backend}"
            );
            upsert(db, b, "@u:x", "join", 3).await.unwrap();
            assert_eq!(select_rooms(db, "@u:x", "join").await.unwrap().len(), 2);
            assert_eq!(count(db, "!b:x", "join").await.unwrap(), 1);
            assert_eq!(count(db, "!b:x", "ban").await.unwrap(), 0);
            assert!(!forget(db, "!a:x", "@u:x").await.unwrap(), "joined");
            upsert(db, a, "@u:x", "leave", 4).await.unwrap();
            assert!(forget(db, "!a:x", "@u:x").await.unwrap());
            assert!(!forget(db, "!a:x", "@u:x").await.unwrap(), "once");
            assert_eq!(
                select(db, "!a:x", "@u:x").await.unwrap(),
                Some(("leave".into(), true))
            );
            upsert(db, a, "@u:x", "invite", 5).await.unwrap();
            assert_eq!(
                select(db, "!a:x", "@u:x").await.unwrap(),
                Some(("invite".into(), false))
            );
            assert_eq!(select(db, "!a:x", "@v:x").await.unwrap(), None);
            delete(db, b, "@u:x").await.unwrap();
            assert_eq!(select(db, "!b:x", "@u:x").await.unwrap(), None, "{backend}");
            assert_eq!(
                select_rooms(db, "@u:x", "join").await.unwrap(),
                Vec::<String>::new()
            );
            // By server: exact server names only (LIKE's wildcards escaped).
            upsert(db, b, "@v:y.org", "join", 6).await.unwrap();
            upsert(db, b, "@w:y_org", "join", 7).await.unwrap();
            upsert(db, b, "@z:x.y.org", "join", 8).await.unwrap();
            upsert(db, b, "@i:y.org", "invite", 9).await.unwrap();
            upsert(db, b, "@c:Y.ORG", "join", 10).await.unwrap();
            assert_eq!(
                select_of_server(db, b, "join", "y.org").await.unwrap(),
                ["@v:y.org"],
                "{backend}"
            );
            assert_eq!(
                select_of_server(db, b, "join", "y_org").await.unwrap(),
                ["@w:y_org"]
            );
            assert_eq!(
                select_of_server(db, b, "invite", "y.org").await.unwrap(),
                ["@i:y.org"]
            );
            assert!(select_of_server(db, b, "join", "z.org")
                .await
                .unwrap()
                .is_empty());
            assert_eq!(
                select_with(db, b, "join").await.unwrap(),
                ["@c:Y.ORG", "@v:y.org", "@w:y_org", "@z:x.y.org"]
            );
        }
    }
}
