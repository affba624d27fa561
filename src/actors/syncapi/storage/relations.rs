//! `syncapi_relations`: which event relates to which (`m.relates_to`), for `/relations`,
//! `/threads` and the aggregations bundled into served events.

use crate::storage::{Conn, Row, StorageError};

const INSERT: &str = "INSERT INTO syncapi_relations
    (event_id, room_id, relates_to, rel_type, event_type, sender, position)
    VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (event_id) DO NOTHING";
const DELETE: &str = "DELETE FROM syncapi_relations WHERE event_id = $1";
const SET_POSITION: &str = "UPDATE syncapi_relations SET position = $2 WHERE event_id = $1";
const COLUMNS: &str = "event_id, room_id, relates_to, rel_type, event_type, sender, position";

/// One relation: `event_id` relates to `relates_to` with `rel_type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relation {
    pub event_id: String,
    pub room_id: String,
    pub relates_to: String,
    pub rel_type: String,
    pub event_type: String,
    pub sender: String,
    pub position: i64,
}

fn row(r: &Row) -> Result<Relation, StorageError> {
    Ok(Relation {
        event_id: r.string(0)?,
        room_id: r.string(1)?,
        relates_to: r.string(2)?,
        rel_type: r.string(3)?,
        event_type: r.string(4)?,
        sender: r.string(5)?,
        position: r.i64(6)?,
    })
}

/// Records a relation (once).
pub async fn insert(db: &impl Conn, r: &Relation) -> Result<(), StorageError> {
    db.execute(
        INSERT,
        &[
            &r.event_id,
            &r.room_id,
            &r.relates_to,
            &r.rel_type,
            &r.event_type,
            &r.sender,
            &r.position,
        ],
    )
    .await?;
    Ok(())
}

/// Moves an event's relation with the event (see `room_events::move_to`).
pub async fn set_position(
    db: &impl Conn,
    event_id: &str,
    position: i64,
) -> Result<(), StorageError> {
    db.execute(SET_POSITION, &[&event_id, &position]).await?;
    Ok(())
}

/// Forgets the relation of a redacted event.
pub async fn delete(db: &impl Conn, event_id: &str) -> Result<(), StorageError> {
    db.execute(DELETE, &[&event_id]).await?;
    Ok(())
}

/// Every relation pointing at one of `targets`, oldest first.
pub async fn select_to(db: &impl Conn, targets: &[String]) -> Result<Vec<Relation>, StorageError> {
    let sql = format!(
        "SELECT {COLUMNS} FROM syncapi_relations WHERE relates_to IN {{ids}} ORDER BY position"
    );
    let mut out: Vec<Relation> = crate::storage::query_chunked(db, &sql, &[], targets)
        .await?
        .iter()
        .map(row)
        .collect::<Result<_, _>>()?;
    // Chunks are ordered each; the whole list too.
    out.sort_by_key(|r| r.position);
    Ok(out)
}

/// Relations to `target` with `lo < position < hi`, filtered by type, in `dir` order.
#[allow(clippy::too_many_arguments)]
pub async fn select_page(
    db: &impl Conn,
    target: &str,
    rel_type: Option<&str>,
    event_type: Option<&str>,
    lo: i64,
    hi: i64,
    limit: i64,
    backwards: bool,
) -> Result<Vec<Relation>, StorageError> {
    let order = if backwards { "DESC" } else { "ASC" };
    let sql = format!(
        "SELECT {COLUMNS} FROM syncapi_relations WHERE relates_to = $1
        AND ($2 = '' OR rel_type = $2) AND ($3 = '' OR event_type = $3)
        AND position > $4 AND position < $5 ORDER BY position {order} LIMIT $6"
    );
    db.query(
        &sql,
        &[
            &target,
            &rel_type.unwrap_or(""),
            &event_type.unwrap_or(""),
            &lo,
            &hi,
            &limit,
        ],
    )
    .await?
    .iter()
    .map(row)
    .collect()
}

/// A room's thread roots, the most recently active first: (root, latest position), with
/// latest < `before`.
pub async fn select_threads(
    db: &impl Conn,
    room_id: &str,
    participant: Option<&str>,
    before: i64,
    limit: i64,
) -> Result<Vec<(String, i64)>, StorageError> {
    let sql = "SELECT relates_to, MAX(position) AS latest FROM syncapi_relations
        WHERE room_id = $1 AND rel_type = 'm.thread'
        GROUP BY relates_to
        HAVING MAX(position) < $3 AND ($2 = ''
            OR SUM(CASE WHEN sender = $2 THEN 1 ELSE 0 END) > 0
            OR relates_to IN (SELECT event_id FROM syncapi_room_events
                WHERE room_id = $1 AND sender = $2))
        ORDER BY latest DESC LIMIT $4";
    db.query(
        sql,
        &[&room_id, &participant.unwrap_or(""), &before, &limit],
    )
    .await?
    .iter()
    .map(|r| Ok((r.string(0)?, r.i64(1)?)))
    .collect()
}
