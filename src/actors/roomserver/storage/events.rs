//! `roomserver_events`: every event of every room, with its place in the DAG, the state
//! before it, and whether it was rejected, soft-failed or redacted.

use super::placeholders;
use crate::storage::{Conn, Row, StorageError};

const INSERT: &str = "INSERT INTO roomserver_events
    (room_nid, event_id, type_nid, state_key_nid, depth, json, rejected, origin_server_ts,
     state_snapshot_nid, state_after_snapshot_nid, stream_position)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
    ON CONFLICT (event_id) DO NOTHING RETURNING event_nid";
const INSERT_OUTLIER: &str = "INSERT INTO roomserver_events
    (room_nid, event_id, type_nid, state_key_nid, depth, json, rejected, origin_server_ts,
     outlier)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1)
    ON CONFLICT (event_id) DO NOTHING RETURNING event_nid";
const COLUMNS: &str = "event_nid, room_nid, event_id, type_nid, state_key_nid, depth,
    state_snapshot_nid, json, rejected, redacted_by, soft_failed";
const SET_SOFT_FAILED: &str = "UPDATE roomserver_events SET soft_failed = $2 WHERE event_nid = $1";
const SET_REDACTED: &str =
    "UPDATE roomserver_events SET redacted_by = $2, redacted_at = $3 WHERE event_nid = $1";
const SET_POSITION: &str = "UPDATE roomserver_events SET stream_position = $2 WHERE event_nid = $1";
const BACKFILL_POSITION: &str = "UPDATE roomserver_events SET stream_position = $2
    WHERE event_id = $1 AND stream_position IS NULL";
const SELECT_AT_POSITION: &str = "SELECT event_id FROM roomserver_events
    WHERE room_nid = $1 AND stream_position <= $2 ORDER BY stream_position DESC LIMIT 1";
const SELECT_PRUNABLE: &str = "SELECT e.event_nid, e.json, e.stream_position, r.room_version
    FROM roomserver_events e JOIN roomserver_rooms r ON r.room_nid = e.room_nid
    WHERE e.redacted_at IS NOT NULL AND e.redacted_at < $1 ORDER BY e.redacted_at LIMIT $2";
const SET_PRUNED: &str =
    "UPDATE roomserver_events SET json = $2, redacted_at = NULL WHERE event_nid = $1";
/// Ordered by (origin_server_ts, event_nid), from just past ($2, $3); `{COLUMNS}` is filled in.
const SELECT_AFTER_TS: &str = "SELECT {COLUMNS}, origin_server_ts FROM roomserver_events
    WHERE room_nid = $1 AND origin_server_ts >= $2 AND (origin_server_ts > $2 OR event_nid > $3)
    AND rejected = 0 AND soft_failed = 0 AND outlier = 0 ORDER BY origin_server_ts ASC, event_nid ASC LIMIT $4";
const SELECT_BEFORE_TS: &str = "SELECT {COLUMNS}, origin_server_ts FROM roomserver_events
    WHERE room_nid = $1 AND origin_server_ts <= $2 AND (origin_server_ts < $2 OR event_nid < $3)
    AND rejected = 0 AND soft_failed = 0 AND outlier = 0 ORDER BY origin_server_ts DESC, event_nid DESC LIMIT $4";
const SELECT_OF_STATE_KEY: &str = "SELECT {COLUMNS} FROM roomserver_events
    WHERE room_nid = $1 AND type_nid = $2 AND state_key_nid = $3 AND rejected = 0
    AND soft_failed = 0 ORDER BY event_nid";
const SELECT_KEYS_OF_SERVER: &str = "SELECT DISTINCT k.state_key_nid, k.state_key
    FROM roomserver_events e JOIN roomserver_state_keys k ON k.state_key_nid = e.state_key_nid
    WHERE e.room_nid = $1 AND e.type_nid = $2 AND k.state_key LIKE $3 ESCAPE '\\'";
const SET_AFTER: &str =
    "UPDATE roomserver_events SET state_after_snapshot_nid = $2 WHERE event_nid = $1";
const SELECT_AFTER: &str =
    "SELECT state_after_snapshot_nid FROM roomserver_events WHERE event_id = $1";
const SET_SNAPSHOT: &str =
    "UPDATE roomserver_events SET state_snapshot_nid = $2 WHERE event_nid = $1";
const SET_BACKFILLED: &str = "UPDATE roomserver_events SET backfilled = 1 WHERE event_nid = $1";
const SELECT_PLACES: &str = "SELECT event_id, outlier, backfilled FROM roomserver_events
    WHERE room_nid = $1 AND event_id IN {ids}";

/// An event row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    pub event_nid: i64,
    pub room_nid: i64,
    pub event_id: String,
    pub type_nid: i64,
    pub state_key_nid: Option<i64>,
    pub depth: i64,
    pub state_snapshot_nid: Option<i64>,
    pub json: String,
    pub rejected: bool,
    pub redacted_by: Option<String>,
    /// Stored, but held back from the extremities, the current state and the stream (it
    /// failed the auth rules against the room's current state when it arrived).
    pub soft_failed: bool,
}

fn row(r: &Row) -> Result<EventRow, StorageError> {
    Ok(EventRow {
        event_nid: r.i64(0)?,
        room_nid: r.i64(1)?,
        event_id: r.string(2)?,
        type_nid: r.i64(3)?,
        state_key_nid: r.opt_i64(4)?,
        depth: r.i64(5)?,
        state_snapshot_nid: r.opt_i64(6)?,
        json: r.string(7)?,
        rejected: r.bool(8)?,
        redacted_by: r.opt_string(9)?,
        soft_failed: r.bool(10)?,
    })
}

/// What storing an event needs.
pub struct NewEvent<'a> {
    pub room_nid: i64,
    pub event_id: &'a str,
    pub type_nid: i64,
    pub state_key_nid: Option<i64>,
    pub depth: i64,
    pub json: &'a str,
    pub rejected: bool,
    pub origin_server_ts: i64,
    /// The state before the event, when known as it is stored.
    pub state_snapshot_nid: Option<i64>,
    /// The state after it, when known as it is stored.
    pub state_after_snapshot_nid: Option<i64>,
    /// Its output's position in the roomserver stream, when known as it is stored.
    pub stream_position: Option<i64>,
}

/// Stores an event; `None` when an event with that ID is already stored.
pub async fn insert(db: &impl Conn, e: &NewEvent<'_>) -> Result<Option<i64>, StorageError> {
    db.query_opt(
        INSERT,
        &[
            &e.room_nid,
            &e.event_id,
            &e.type_nid,
            &e.state_key_nid,
            &e.depth,
            &e.json,
            &e.rejected,
            &e.origin_server_ts,
            &e.state_snapshot_nid,
            &e.state_after_snapshot_nid,
            &e.stream_position,
        ],
    )
    .await?
    .map(|r| r.i64(0))
    .transpose()
}

/// Stores an outlier (see `sql/025_roomserver_outliers.sql`): an event checked on its own,
/// without the state before it; `state_snapshot_nid`, `state_after_snapshot_nid` and
/// `stream_position` stay NULL. `None` when an event with that ID is already stored.
pub async fn insert_outlier(db: &impl Conn, e: &NewEvent<'_>) -> Result<Option<i64>, StorageError> {
    db.query_opt(
        INSERT_OUTLIER,
        &[
            &e.room_nid,
            &e.event_id,
            &e.type_nid,
            &e.state_key_nid,
            &e.depth,
            &e.json,
            &e.rejected,
            &e.origin_server_ts,
        ],
    )
    .await?
    .map(|r| r.i64(0))
    .transpose()
}

/// Marks an event as backfilled history (see `sql/030_roomserver_backfill.sql`).
pub async fn set_backfilled(db: &impl Conn, event_nid: i64) -> Result<(), StorageError> {
    db.execute(SET_BACKFILLED, &[&event_nid]).await?;
    Ok(())
}

/// Of `event_ids`, those stored in the room as part of its history: input in order
/// (not outliers) or backfilled. Unknown IDs and other outliers are left out.
pub async fn select_in_history(
    db: &impl Conn,
    room_nid: i64,
    event_ids: &[String],
) -> Result<std::collections::HashSet<String>, StorageError> {
    let mut out = std::collections::HashSet::new();
    for r in crate::storage::query_chunked(db, SELECT_PLACES, &[&room_nid], event_ids).await? {
        if !r.bool(1)? || r.bool(2)? {
            out.insert(r.string(0)?);
        }
    }
    Ok(out)
}

/// Of some events (numeric IDs), those with no stream position: never output (outliers,
/// soft-failed events, events stored before positions were kept).
pub async fn select_unpositioned(
    db: &impl Conn,
    nids: &[i64],
) -> Result<std::collections::HashSet<i64>, StorageError> {
    let mut out = std::collections::HashSet::new();
    for chunk in nids.chunks(super::CHUNK) {
        let sql = format!(
            "SELECT event_nid FROM roomserver_events WHERE stream_position IS NULL AND event_nid IN {}",
            placeholders(chunk.len())
        );
        let params: Vec<&dyn crate::storage::ToValue> = chunk
            .iter()
            .map(|n| n as &dyn crate::storage::ToValue)
            .collect();
        for r in db.query(&sql, &params).await? {
            out.insert(r.i64(0)?);
        }
    }
    Ok(out)
}

/// Finds an event by ID.
pub async fn select_by_id(
    db: &impl Conn,
    event_id: &str,
) -> Result<Option<EventRow>, StorageError> {
    let sql = format!("SELECT {COLUMNS} FROM roomserver_events WHERE event_id = $1");
    db.query_opt(&sql, &[&event_id])
        .await?
        .as_ref()
        .map(row)
        .transpose()
}

/// Finds events by numeric ID, in no particular order; unknown IDs are left out. Large lists
/// are read in chunks, under both backends' limits on bound parameters.
pub async fn select_by_nids(db: &impl Conn, nids: &[i64]) -> Result<Vec<EventRow>, StorageError> {
    let mut out = Vec::with_capacity(nids.len());
    for chunk in nids.chunks(super::CHUNK) {
        let sql = format!(
            "SELECT {COLUMNS} FROM roomserver_events WHERE event_nid IN {}",
            placeholders(chunk.len())
        );
        let params: Vec<&dyn crate::storage::ToValue> = chunk
            .iter()
            .map(|n| n as &dyn crate::storage::ToValue)
            .collect();
        for r in db.query(&sql, &params).await? {
            out.push(row(&r)?);
        }
    }
    Ok(out)
}

/// Finds a room's events by ID, in no particular order; IDs unknown or of other rooms are
/// left out. Large lists are read in chunks.
pub async fn select_by_ids_in_room(
    db: &impl Conn,
    room_nid: i64,
    event_ids: &[String],
) -> Result<Vec<EventRow>, StorageError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM roomserver_events WHERE room_nid = $1 AND event_id IN {{ids}}"
    );
    crate::storage::query_chunked(db, &sql, &[&room_nid], event_ids)
        .await?
        .iter()
        .map(row)
        .collect()
}

/// Records the state before an event.
pub async fn set_state_snapshot(
    db: &impl Conn,
    event_nid: i64,
    snapshot_nid: i64,
) -> Result<(), StorageError> {
    db.execute(SET_SNAPSHOT, &[&event_nid, &snapshot_nid])
        .await?;
    Ok(())
}

/// Up to `limit` of the room's events (not rejected) in the order of (origin_server_ts,
/// event_nid): `forward`, those after (`ts`, `nid`), oldest first; else those before it,
/// newest first; each with its origin_server_ts. `nid` = `i64::MIN` (forward) or `i64::MAX`
/// starts at `ts` itself; the last row's (origin_server_ts, event_nid) continues.
pub async fn select_by_ts(
    db: &impl Conn,
    room_nid: i64,
    (ts, nid): (i64, i64),
    forward: bool,
    limit: i64,
) -> Result<Vec<(EventRow, i64)>, StorageError> {
    let sql = if forward {
        SELECT_AFTER_TS
    } else {
        SELECT_BEFORE_TS
    }
    .replace("{COLUMNS}", COLUMNS);
    // origin_server_ts comes after the row's columns.
    let ts_column = COLUMNS.split(',').count();
    db.query(&sql, &[&room_nid, &ts, &nid, &limit])
        .await?
        .iter()
        .map(|r| Ok((row(r)?, r.i64(ts_column)?)))
        .collect()
}

/// The room's events (not rejected) of one type and state key, oldest first: a user's
/// member events, say.
pub async fn select_of_state_key(
    db: &impl Conn,
    room_nid: i64,
    type_nid: i64,
    state_key_nid: i64,
) -> Result<Vec<EventRow>, StorageError> {
    let sql = SELECT_OF_STATE_KEY.replace("{COLUMNS}", COLUMNS);
    db.query(&sql, &[&room_nid, &type_nid, &state_key_nid])
        .await?
        .iter()
        .map(row)
        .collect()
}

/// Records the state after an event.
pub async fn set_state_after(
    db: &impl Conn,
    event_nid: i64,
    snapshot_nid: i64,
) -> Result<(), StorageError> {
    db.execute(SET_AFTER, &[&event_nid, &snapshot_nid]).await?;
    Ok(())
}

/// The state after an event, when recorded.
pub async fn select_state_after(
    db: &impl Conn,
    event_id: &str,
) -> Result<Option<i64>, StorageError> {
    Ok(db
        .query_opt(SELECT_AFTER, &[&event_id])
        .await?
        .map(|r| r.opt_i64(0))
        .transpose()?
        .flatten())
}

/// Marks an event redacted by the redaction `redaction_id`.
pub async fn set_redacted(
    db: &impl Conn,
    event_nid: i64,
    redaction_id: &str,
) -> Result<(), StorageError> {
    db.execute(
        SET_REDACTED,
        &[&event_nid, &redaction_id, &crate::storage::now_ms()],
    )
    .await?;
    Ok(())
}

/// Records where the event's output is in the roomserver stream.
pub async fn set_stream_position(
    db: &impl Conn,
    event_nid: i64,
    position: i64,
) -> Result<(), StorageError> {
    db.execute(SET_POSITION, &[&event_nid, &position]).await?;
    Ok(())
}

/// Sets the stream position of an event stored before positions were recorded (no-op for
/// others).
pub async fn backfill_stream_position(
    db: &impl Conn,
    event_id: &str,
    position: i64,
) -> Result<(), StorageError> {
    db.execute(BACKFILL_POSITION, &[&event_id, &position])
        .await?;
    Ok(())
}

/// Marks an event soft-failed (held back from extremities, current state and the stream), or
/// no longer so.
pub async fn set_soft_failed(
    db: &impl Conn,
    event_nid: i64,
    soft_failed: bool,
) -> Result<(), StorageError> {
    db.execute(SET_SOFT_FAILED, &[&event_nid, &soft_failed])
        .await?;
    Ok(())
}

/// The room's newest event output at or before a stream position.
pub async fn select_at_position(
    db: &impl Conn,
    room_nid: i64,
    position: i64,
) -> Result<Option<String>, StorageError> {
    db.query_opt(SELECT_AT_POSITION, &[&room_nid, &position])
        .await?
        .map(|r| r.string(0))
        .transpose()
}

/// A redacted event whose original content is still stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prunable {
    pub event_nid: i64,
    pub json: String,
    pub stream_position: Option<i64>,
    pub room_version: String,
}

/// Up to `limit` redacted events whose redaction applied before `cutoff_ms`, oldest first.
pub async fn select_prunable(
    db: &impl Conn,
    cutoff_ms: i64,
    limit: i64,
) -> Result<Vec<Prunable>, StorageError> {
    db.query(SELECT_PRUNABLE, &[&cutoff_ms, &limit])
        .await?
        .iter()
        .map(|r| {
            Ok(Prunable {
                event_nid: r.i64(0)?,
                json: r.string(1)?,
                stream_position: r.opt_i64(2)?,
                room_version: r.string(3)?,
            })
        })
        .collect()
}

/// Replaces an event's stored JSON by its redacted form, for good.
pub async fn set_pruned(db: &impl Conn, event_nid: i64, json: &str) -> Result<(), StorageError> {
    db.execute(SET_PRUNED, &[&event_nid, &json]).await?;
    Ok(())
}

/// The state keys of `type_nid` events in a room that name a user of `server_name`
/// (`@user:<server_name>`), as (state_key_nid, state key): for `m.room.member`, every user
/// of that server who ever had a membership of the room.
pub async fn select_keys_of_server(
    db: &impl Conn,
    room_nid: i64,
    type_nid: i64,
    server_name: &str,
) -> Result<Vec<(i64, String)>, StorageError> {
    let pattern = super::memberships::like_suffix(server_name);
    let mut out = Vec::new();
    for r in db
        .query(SELECT_KEYS_OF_SERVER, &[&room_nid, &type_nid, &pattern])
        .await?
    {
        let key = r.string(1)?;
        // LIKE is case-insensitive on SQLite: keep exact matches only.
        if super::memberships::server_of(&key) == Some(server_name) {
            out.push((r.i64(0)?, key));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::testing::*;

    #[tokio::test]
    async fn events_table() {
        for backend in BACKENDS {
            let t = test_db(backend).await;
            let db = &t.db;
            let new = |id: &'static str, sk: Option<i64>| NewEvent {
                room_nid: 1,
                event_id: id,
                type_nid: 2,
                state_key_nid: sk,
                depth: 3,
                json: "{}",
                rejected: false,
                state_snapshot_nid: None,
                state_after_snapshot_nid: None,
                stream_position: None,
                origin_server_ts: if id == "$a" { 100 } else { 200 },
            };
            let a = insert(db, &new("$a", Some(5))).await.unwrap().unwrap();
            assert_eq!(
                insert(db, &new("$a", Some(5))).await.unwrap(),
                None,
                "{backend}: duplicate"
            );
            let b = insert(db, &new("$b", None)).await.unwrap().unwrap();
            set_state_snapshot(db, b, 42).await.unwrap();
            set_redacted(db, b, "$r").await.unwrap();
            let ea = select_by_id(db, "$a").await.unwrap().unwrap();
            assert_eq!(
                (ea.state_key_nid, ea.redacted_by.as_deref()),
                (Some(5), None)
            );
            let mut both = select_by_nids(db, &[a, b, 999]).await.unwrap();
            both.sort_by_key(|e| e.event_nid);
            assert_eq!(both.len(), 2);
            assert_eq!(
                (both[1].state_key_nid, both[1].state_snapshot_nid),
                (None, Some(42))
            );
            assert_eq!(both[1].redacted_by.as_deref(), Some("$r"));
            // A soft-failed event is not found by timestamp.
            set_soft_failed(db, a, true).await.unwrap();
            assert!(select_by_id(db, "$a").await.unwrap().unwrap().soft_failed);
            assert_eq!(
                select_by_ts(db, 1, (50, i64::MIN), true, 1).await.unwrap()[0]
                    .0
                    .event_id,
                "$b"
            );
            set_soft_failed(db, a, false).await.unwrap();
            assert!(!select_by_id(db, "$a").await.unwrap().unwrap().soft_failed);
            assert_eq!(select_by_id(db, "$nope").await.unwrap(), None);
            let ids = |rows: Vec<EventRow>| -> Vec<String> {
                rows.into_iter().map(|e| e.event_id).collect()
            };
            let ids_ts = |rows: Vec<(EventRow, i64)>| -> Vec<(String, i64)> {
                rows.into_iter().map(|(e, ts)| (e.event_id, ts)).collect()
            };
            let by_ts =
                |at: (i64, i64), forward: bool, limit: i64| select_by_ts(db, 1, at, forward, limit);
            let one = |id: &str, ts: i64| vec![(id.to_owned(), ts)];
            assert_eq!(
                ids_ts(by_ts((150, i64::MIN), true, 5).await.unwrap()),
                one("$b", 200)
            );
            assert_eq!(
                ids_ts(by_ts((150, i64::MAX), false, 5).await.unwrap()),
                one("$a", 100)
            );
            let page = |rows: Vec<(EventRow, i64)>| ids(rows.into_iter().map(|(e, _)| e).collect());
            assert_eq!(
                page(by_ts((100, i64::MIN), true, 5).await.unwrap()),
                ["$a", "$b"]
            );
            assert_eq!(page(by_ts((100, i64::MIN), true, 1).await.unwrap()), ["$a"]);
            // Paging on from the last row; the same timestamp orders by event_nid.
            assert_eq!(page(by_ts((100, a), true, 5).await.unwrap()), ["$b"]);
            let c = insert(db, &new("$c", None)).await.unwrap().unwrap();
            assert_eq!(page(by_ts((200, b), true, 5).await.unwrap()), ["$c"]);
            assert_eq!(page(by_ts((200, c), false, 5).await.unwrap()), ["$b", "$a"]);
            assert_eq!(
                page(by_ts((200, i64::MAX), false, 1).await.unwrap()),
                ["$c"]
            );
            assert!(by_ts((250, i64::MIN), true, 5).await.unwrap().is_empty());
            // A state key's events, oldest first.
            assert_eq!(ids(select_of_state_key(db, 1, 2, 5).await.unwrap()), ["$a"]);
            assert!(select_of_state_key(db, 1, 2, 6).await.unwrap().is_empty());
        }
    }

    #[tokio::test]
    async fn keys_of_a_server() {
        for backend in BACKENDS {
            let t = test_db(backend).await;
            let db = &t.db;
            let mut n = 0;
            for (room, kind, key) in [
                (1, 7, "@a:b.test"),
                (1, 7, "@a:b.test"),
                (1, 7, "@c:b.test"),
                (1, 7, "@d:xb.test"),
                (1, 7, "@e:a.test"),
                (1, 8, "@f:b.test"),
                (2, 7, "@g:b.test"),
            ] {
                n += 1;
                let nid = super::super::state_keys::intern(db, key).await.unwrap();
                let id = format!("$e{n}");
                insert(
                    db,
                    &NewEvent {
                        room_nid: room,
                        event_id: &id,
                        type_nid: kind,
                        state_key_nid: Some(nid),
                        depth: n,
                        json: "{}",
                        rejected: false,
                        state_snapshot_nid: None,
                        state_after_snapshot_nid: None,
                        stream_position: None,
                        origin_server_ts: n,
                    },
                )
                .await
                .unwrap();
            }
            let mut keys: Vec<String> = select_keys_of_server(db, 1, 7, "b.test")
                .await
                .unwrap()
                .into_iter()
                .map(|(_, k)| k)
                .collect();
            keys.sort();
            assert_eq!(keys, ["@a:b.test", "@c:b.test"], "{backend}");
            let mut found: Vec<String> =
                select_by_ids_in_room(db, 1, &["$e1".into(), "$e7".into(), "$x".into()])
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|e| e.event_id)
                    .collect();
            found.sort();
            assert_eq!(found, ["$e1"], "$e7 is in another room");
            assert!(select_keys_of_server(db, 1, 7, "z.test")
                .await
                .unwrap()
                .is_empty());
        }
    }
}
