//! `federationapi_destinations`: per destination server, the next queue position, the
//! transaction in flight (ID, last position, timestamp: fixed before its first attempt) and
//! the backoff after failures.

use crate::storage::{Conn, StorageError};

const NEXT_POSITION: &str = "INSERT INTO federationapi_destinations
    (server_name, next_position, failures, retry_at) VALUES ($1, 2, 0, 0)
    ON CONFLICT (server_name) DO UPDATE
    SET next_position = federationapi_destinations.next_position + 1
    RETURNING next_position - 1, failing_since, txn_last_position";
const SELECT: &str = "SELECT txn_id, txn_last_position, txn_ts, failures, retry_at,
    failing_since FROM federationapi_destinations WHERE server_name = $1";
const SET_TXN: &str = "UPDATE federationapi_destinations
    SET txn_id = $2, txn_last_position = $3, txn_ts = $4 WHERE server_name = $1 AND txn_id IS NULL";
const CLEAR_TXN: &str = "UPDATE federationapi_destinations
    SET txn_id = NULL, txn_last_position = NULL, txn_ts = NULL, failures = 0, retry_at = 0,
    failing_since = NULL WHERE server_name = $1 AND txn_id = $2";
const SET_BACKOFF: &str = "UPDATE federationapi_destinations
    SET failures = $2, retry_at = $3, failing_since = COALESCE(failing_since, $4)
    WHERE server_name = $1";
const RESET_BACKOFF: &str = "UPDATE federationapi_destinations
    SET failures = 0, retry_at = 0, failing_since = NULL WHERE server_name = $1 AND failures > 0";

/// A destination's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// The transaction in flight: (ID, last position, `origin_server_ts`).
    pub txn: Option<(String, i64, i64)>,
    /// Failed attempts in a row.
    pub failures: i64,
    /// No attempt before then (ms since the epoch; 0: now).
    pub retry_at: i64,
    /// Since when its attempts fail (ms since the epoch), if they do.
    pub failing_since: Option<i64>,
}

/// Where the next queued item of a destination goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NextPosition {
    /// The item's position.
    pub position: i64,
    /// Since when the destination's attempts fail (ms since the epoch), if they do.
    pub failing_since: Option<i64>,
    /// The last position of the transaction in flight, if any.
    pub in_flight_up_to: Option<i64>,
}

/// Takes the next queue position of `server_name` (the row made on first use). Locks the
/// destination's row until the transaction ends, so positions follow commit order.
pub async fn next_position(
    db: &impl Conn,
    server_name: &str,
) -> Result<NextPosition, StorageError> {
    let row = db
        .query_opt(NEXT_POSITION, &[&server_name])
        .await?
        .ok_or_else(|| StorageError::Decode {
            column: 0,
            reason: "no position returned".into(),
        })?;
    Ok(NextPosition {
        position: row.i64(0)?,
        failing_since: row.opt_i64(1)?,
        in_flight_up_to: row.opt_i64(2)?,
    })
}

/// A destination's state, `None` if nothing was ever queued for it.
pub async fn select(
    db: &impl Conn,
    server_name: &str,
) -> Result<Option<Destination>, StorageError> {
    let Some(r) = db.query_opt(SELECT, &[&server_name]).await? else {
        return Ok(None);
    };
    let txn = match (r.opt_string(0)?, r.opt_i64(1)?, r.opt_i64(2)?) {
        (Some(id), Some(last), Some(ts)) => Some((id, last, ts)),
        _ => None,
    };
    Ok(Some(Destination {
        txn,
        failures: r.i64(3)?,
        retry_at: r.i64(4)?,
        failing_since: r.opt_i64(5)?,
    }))
}

/// Fixes the transaction in flight (only when there is none); whether it was set.
pub async fn set_txn(
    db: &impl Conn,
    server_name: &str,
    txn_id: &str,
    last_position: i64,
    ts: i64,
) -> Result<bool, StorageError> {
    Ok(db
        .execute(SET_TXN, &[&server_name, &txn_id, &last_position, &ts])
        .await?
        == 1)
}

/// The transaction `txn_id` is done: none in flight, no backoff.
pub async fn clear_txn(
    db: &impl Conn,
    server_name: &str,
    txn_id: &str,
) -> Result<(), StorageError> {
    db.execute(CLEAR_TXN, &[&server_name, &txn_id]).await?;
    Ok(())
}

/// Records a failed attempt: `failures` in a row, next attempt at `retry_at`.
pub async fn set_backoff(
    db: &impl Conn,
    server_name: &str,
    failures: i64,
    retry_at: i64,
    now: i64,
) -> Result<(), StorageError> {
    db.execute(SET_BACKOFF, &[&server_name, &failures, &retry_at, &now])
        .await?;
    Ok(())
}

/// The destination is reachable again (it sent us something): no backoff; whether it had one.
pub async fn reset_backoff(db: &impl Conn, server_name: &str) -> Result<bool, StorageError> {
    Ok(db.execute(RESET_BACKOFF, &[&server_name]).await? > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::testing::{test_db, BACKENDS};

    #[tokio::test]
    async fn positions_transactions_and_backoff() {
        for backend in BACKENDS {
            let db = test_db(backend).await;
            let d = "b.test";
            assert_eq!(select(&db.db, d).await.unwrap(), None);
            assert_eq!(
                next_position(&db.db, d).await.unwrap().position,
                1,
                "{backend}"
            );
            assert_eq!(next_position(&db.db, d).await.unwrap().position, 2);
            assert_eq!(next_position(&db.db, "c.test").await.unwrap().position, 1);
            assert!(set_txn(&db.db, d, "t1", 2, 99).await.unwrap());
            // One transaction in flight at a time.
            assert!(!set_txn(&db.db, d, "t2", 2, 99).await.unwrap());
            set_backoff(&db.db, d, 3, 1000, 500).await.unwrap();
            set_backoff(&db.db, d, 4, 2000, 900).await.unwrap();
            let next = next_position(&db.db, d).await.unwrap();
            assert_eq!(
                (next.position, next.failing_since, next.in_flight_up_to),
                (3, Some(500), Some(2)),
                "failing since the first failure"
            );
            set_backoff(&db.db, d, 3, 1000, 900).await.unwrap();
            let got = select(&db.db, d).await.unwrap().unwrap();
            assert_eq!(got.txn, Some(("t1".into(), 2, 99)));
            assert_eq!((got.failures, got.retry_at), (3, 1000));
            assert!(reset_backoff(&db.db, d).await.unwrap());
            assert!(!reset_backoff(&db.db, d).await.unwrap());
            // Clearing another ID changes nothing.
            clear_txn(&db.db, d, "t0").await.unwrap();
            assert!(select(&db.db, d).await.unwrap().unwrap().txn.is_some());
            clear_txn(&db.db, d, "t1").await.unwrap();
            assert_eq!(select(&db.db, d).await.unwrap().unwrap().txn, None);
            let next = next_position(&db.db, d).await.unwrap();
            assert_eq!(
                (next.position, next.failing_since, next.in_flight_up_to),
                (4, None, None)
            );
        }
    }
}
