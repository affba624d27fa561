//! `federationapi_queue`: the PDUs and EDUs waiting for each destination, in order.

use crate::storage::{Conn, StorageError};

const INSERT: &str =
    "INSERT INTO federationapi_queue (server_name, position, is_pdu, json, collapse_key)
    VALUES ($1, $2, $3, $4, $5)";
const DELETE_COLLAPSED: &str = "DELETE FROM federationapi_queue
    WHERE server_name = $1 AND collapse_key = $2 AND position > $3";
const COMPACT: &str = "DELETE FROM federationapi_queue
    WHERE server_name = $1 AND position > $2 AND collapse_key IS NOT NULL
    AND position < (SELECT MAX(newer.position) FROM federationapi_queue newer
        WHERE newer.server_name = federationapi_queue.server_name
        AND newer.collapse_key = federationapi_queue.collapse_key)";
const SELECT_FROM: &str = "SELECT position, is_pdu, json FROM federationapi_queue
    WHERE server_name = $1 ORDER BY position LIMIT $2";
const SELECT_UP_TO: &str = "SELECT position, is_pdu, json FROM federationapi_queue
    WHERE server_name = $1 AND position <= $2 ORDER BY position";
const DELETE_UP_TO: &str =
    "DELETE FROM federationapi_queue WHERE server_name = $1 AND position <= $2";
const SELECT_DESTINATIONS: &str =
    "SELECT DISTINCT server_name FROM federationapi_queue ORDER BY server_name";
const COUNT: &str = "SELECT COUNT(*) FROM federationapi_queue";

/// One queued PDU or EDU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub position: i64,
    pub is_pdu: bool,
    /// The PDU, or the EDU object, as JSON text.
    pub json: String,
}

fn items(rows: Vec<crate::storage::Row>) -> Result<Vec<Item>, StorageError> {
    rows.iter()
        .map(|r| {
            Ok(Item {
                position: r.i64(0)?,
                is_pdu: r.bool(1)?,
                json: r.string(2)?,
            })
        })
        .collect()
}

/// Queues one item for `server_name` at `position` (see `destinations::next_position`);
/// `collapse_key` names what it says again of an older item, if anything (see [`collapse`]).
pub async fn insert(
    db: &impl Conn,
    server_name: &str,
    position: i64,
    is_pdu: bool,
    json: &str,
    collapse_key: Option<&str>,
) -> Result<(), StorageError> {
    db.execute(
        INSERT,
        &[
            &server_name,
            &position,
            &(is_pdu as i64),
            &json,
            &collapse_key,
        ],
    )
    .await?;
    Ok(())
}

/// Drops the items of `server_name` with `collapse_key` after `after` (a newer one is about
/// to be queued); how many.
pub async fn collapse(
    db: &impl Conn,
    server_name: &str,
    collapse_key: &str,
    after: i64,
) -> Result<u64, StorageError> {
    db.execute(DELETE_COLLAPSED, &[&server_name, &collapse_key, &after])
        .await
}

/// Drops every item of `server_name` after `after` that a newer item with the same collapse
/// key says again; how many.
pub async fn compact(db: &impl Conn, server_name: &str, after: i64) -> Result<u64, StorageError> {
    db.execute(COMPACT, &[&server_name, &after]).await
}

/// The first `limit` items queued for `server_name`.
pub async fn select_first(
    db: &impl Conn,
    server_name: &str,
    limit: i64,
) -> Result<Vec<Item>, StorageError> {
    items(db.query(SELECT_FROM, &[&server_name, &limit]).await?)
}

/// The items queued for `server_name` up to `position` (a transaction's contents).
pub async fn select_up_to(
    db: &impl Conn,
    server_name: &str,
    position: i64,
) -> Result<Vec<Item>, StorageError> {
    items(db.query(SELECT_UP_TO, &[&server_name, &position]).await?)
}

/// Drops the items up to `position` (their transaction was answered); how many.
pub async fn delete_up_to(
    db: &impl Conn,
    server_name: &str,
    position: i64,
) -> Result<u64, StorageError> {
    db.execute(DELETE_UP_TO, &[&server_name, &position]).await
}

/// Every destination with something queued.
pub async fn select_destinations(db: &impl Conn) -> Result<Vec<String>, StorageError> {
    db.query(SELECT_DESTINATIONS, &[])
        .await?
        .iter()
        .map(|r| r.string(0))
        .collect()
}

/// How many items are queued, over every destination.
pub async fn count(db: &impl Conn) -> Result<i64, StorageError> {
    match db.query_opt(COUNT, &[]).await? {
        Some(r) => r.i64(0),
        None => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::testing::{test_db, BACKENDS};

    #[tokio::test]
    async fn items_come_out_in_order() {
        for backend in BACKENDS {
            let db = test_db(backend).await;
            insert(&db.db, "b.test", 2, false, "{\"edu\":1}", None)
                .await
                .unwrap();
            insert(&db.db, "b.test", 1, true, "{\"pdu\":1}", None)
                .await
                .unwrap();
            insert(&db.db, "b.test", 3, true, "{\"pdu\":2}", None)
                .await
                .unwrap();
            insert(&db.db, "c.test", 1, true, "{}", None).await.unwrap();
            let first = select_first(&db.db, "b.test", 2).await.unwrap();
            assert_eq!(
                first
                    .iter()
                    .map(|i| (i.position, i.is_pdu))
                    .collect::<Vec<_>>(),
                [(1, true), (2, false)],
                "{backend}"
            );
            assert_eq!(select_up_to(&db.db, "b.test", 3).await.unwrap().len(), 3);
            assert_eq!(count(&db.db).await.unwrap(), 4);
            assert_eq!(
                select_destinations(&db.db).await.unwrap(),
                ["b.test", "c.test"]
            );
            assert_eq!(delete_up_to(&db.db, "b.test", 2).await.unwrap(), 2);
            assert_eq!(
                select_first(&db.db, "b.test", 10).await.unwrap()[0].json,
                "{\"pdu\":2}"
            );
            delete_up_to(&db.db, "b.test", 3).await.unwrap();
            assert_eq!(select_destinations(&db.db).await.unwrap(), ["c.test"]);
        }
    }

    #[tokio::test]
    async fn items_said_again_collapse() {
        for backend in BACKENDS {
            let db = test_db(backend).await;
            let q = |p: i64, key: Option<&'static str>| {
                let db = &db.db;
                async move {
                    insert(
                        db,
                        "b.test",
                        p,
                        key != Some("dm"),
                        &format!("{{\"n\":{p}}}"),
                        key,
                    )
                    .await
                    .unwrap()
                }
            };
            q(1, Some("pdu|!r")).await; // in flight
            q(2, Some("pdu|!r")).await;
            q(3, Some("pdu|!s")).await;
            q(4, None).await;
            q(5, Some("pdu|!r")).await;
            q(6, Some("pdu|!s")).await;
            insert(&db.db, "c.test", 7, true, "{}", Some("pdu|!r"))
                .await
                .unwrap();
            // Past the transaction in flight (position 1), each key keeps its newest item.
            assert_eq!(compact(&db.db, "b.test", 1).await.unwrap(), 2, "{backend}");
            let left = |db| async move {
                select_first(db, "b.test", 10)
                    .await
                    .unwrap()
                    .iter()
                    .map(|i| i.position)
                    .collect::<Vec<_>>()
            };
            assert_eq!(left(&db.db).await, [1, 4, 5, 6]);
            // A newer item of a key replaces the queued one, not the one in flight.
            assert_eq!(collapse(&db.db, "b.test", "pdu|!r", 1).await.unwrap(), 1);
            assert_eq!(left(&db.db).await, [1, 4, 6]);
            assert_eq!(count(&db.db).await.unwrap(), 4);
        }
    }
}
