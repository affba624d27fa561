//! The embedded bus: durable, ordered streams from one component to others.
//!
//! - **Write side** ([`append`]): a component appends an output to its stream inside the
//!   transaction that makes the change, so an acknowledged change always has its output and
//!   a rolled-back one never does. Positions are gapless and follow commit order (taking a
//!   position locks the stream's head row until the transaction ends).
//! - **Wake-up** ([`Bus`]): after the commit the writer tells the bus the new head, which
//!   wakes the stream's consumers in this process. Nothing polls.
//! - **Read side** ([`run_consumer`]): a consumer applies outputs in order and stores its
//!   offset in the same transaction as what it applied, so a crash replays nothing twice and
//!   skips nothing.
//!
//! A split deployment relays the outbox to Kafka instead (not built yet); the consumer trait
//! stays the same.

mod consumer;

pub use consumer::{
    offset_of, read_batch, run_consumer, run_consumer_on, store_offset, Consumer, ConsumerError,
    ConsumerHandle,
};

use crate::storage::{Conn, Db, StorageError, Txn};
use serde::Serialize;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// The stream's next position, its head row made on first use: one statement.
const NEXT_POSITION: &str = "INSERT INTO bus_streams (stream, head) VALUES ($1, 1)
    ON CONFLICT (stream) DO UPDATE SET head = bus_streams.head + 1 RETURNING head";
const INSERT_OUTPUT: &str = "INSERT INTO bus_outbox
    (stream, position, partition_key, payload, created_ts) VALUES ($1, $2, $3, $4, $5)";
const SELECT_HEAD: &str = "SELECT head FROM bus_streams WHERE stream = $1";
const SELECT_STREAMS: &str = "SELECT stream, head FROM bus_streams";
const SELECT_SLOWEST: &str = "SELECT MIN(position) FROM bus_offsets WHERE stream = $1";
const DELETE_APPLIED: &str =
    "DELETE FROM bus_outbox WHERE stream = $1 AND position <= $2 AND created_ts < $3";
const SELECT_PAYLOAD: &str = "SELECT payload FROM bus_outbox WHERE stream = $1 AND position = $2";
const UPDATE_PAYLOAD: &str =
    "UPDATE bus_outbox SET payload = $3 WHERE stream = $1 AND position = $2";

/// Deletes the outputs that every consumer of their stream has applied and that are older
/// than `retention`; the number deleted. A stream nobody consumes yet (the syncapi's own,
/// which federation will send) keeps its outputs for `retention` only. A consumer holds back
/// pruning from its first committed batch on: a new consumer starts from whatever is left.
pub async fn prune(db: &Db, retention: std::time::Duration) -> Result<u64, StorageError> {
    let cutoff = crate::storage::now_ms() - retention.as_millis() as i64;
    let mut deleted = 0;
    for row in db.query(SELECT_STREAMS, &[]).await? {
        let (stream, head) = (row.string(0)?, row.i64(1)?);
        let slowest = db
            .query_opt(SELECT_SLOWEST, &[&stream])
            .await?
            .map(|r| r.opt_i64(0))
            .transpose()?
            .flatten()
            .unwrap_or(head);
        deleted += db
            .execute(DELETE_APPLIED, &[&stream, &slowest.min(head), &cutoff])
            .await?;
    }
    Ok(deleted)
}

/// How often a pruning job runs for a retention period: a tenth of it, between 1 s and 10 min.
pub fn prune_interval(retention: std::time::Duration) -> std::time::Duration {
    (retention / 10).clamp(
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(600),
    )
}

/// Prunes the outbox every [`prune_interval`] of the retention, for as long as the current
/// arbiter runs; failures are logged and retried at the next turn.
pub async fn run_pruner(db: Db, retention: std::time::Duration) {
    loop {
        actix_web::rt::time::sleep(prune_interval(retention)).await;
        match prune(&db, retention).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(outputs = n, "pruned the bus outbox"),
            Err(e) => tracing::error!(error = %e, "pruning the bus outbox failed"),
        }
    }
}

/// The payload of one output, while the outbox still holds it.
pub async fn payload(
    db: &impl Conn,
    stream: &str,
    position: i64,
) -> Result<Option<String>, StorageError> {
    db.query_opt(SELECT_PAYLOAD, &[&stream, &position])
        .await?
        .map(|r| r.string(0))
        .transpose()
}

/// Rewrites the payload of one output (pruning content the producer no longer keeps, such as
/// a redacted event's original), keeping its position.
pub async fn replace_payload(
    db: &impl Conn,
    stream: &str,
    position: i64,
    payload: &str,
) -> Result<(), StorageError> {
    db.execute(UPDATE_PAYLOAD, &[&stream, &position, &payload])
        .await?;
    Ok(())
}

/// An output appended but not yet announced: hand it to [`Bus::commit`].
#[must_use = "commit the transaction with Bus::commit so consumers wake up"]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub stream: &'static str,
    pub position: i64,
}

/// Appends `payload` to `stream` inside `txn`. Do it last in the transaction: the stream's
/// head stays locked until the transaction ends.
pub async fn append(
    txn: &Txn,
    stream: &'static str,
    partition_key: &str,
    payload: &impl Serialize,
) -> Result<Appended, StorageError> {
    let payload = serde_json::to_string(payload).map_err(|e| StorageError::Decode {
        column: 0,
        reason: format!("output does not serialize: {e}"),
    })?;
    let position = txn
        .query_opt(NEXT_POSITION, &[&stream])
        .await?
        .ok_or_else(|| StorageError::Decode {
            column: 0,
            reason: format!("stream {stream} has no head row"),
        })?
        .i64(0)?;
    txn.execute(
        INSERT_OUTPUT,
        &[
            &stream,
            &position,
            &partition_key,
            &payload,
            &crate::storage::now_ms(),
        ],
    )
    .await?;
    Ok(Appended { stream, position })
}

/// The in-process side of the bus: the newest committed position of each stream, watched
/// by that stream's consumers. Cheap to clone; one per node.
#[derive(Clone, Default)]
pub struct Bus {
    heads: Arc<Mutex<HashMap<&'static str, watch::Sender<i64>>>>,
}

impl Bus {
    pub fn new() -> Bus {
        Bus::default()
    }

    fn sender(&self, stream: &'static str) -> watch::Sender<i64> {
        let mut heads = self.heads.lock().unwrap_or_else(|e| e.into_inner());
        heads
            .entry(stream)
            .or_insert_with(|| watch::channel(0).0)
            .clone()
    }

    /// Commits `txn` and wakes the consumers of what it appended.
    pub async fn commit(&self, txn: Txn, appended: &[Appended]) -> Result<(), StorageError> {
        txn.commit().await?;
        for a in appended {
            self.announce(a.stream, a.position);
        }
        Ok(())
    }

    /// Tells the consumers of `stream` that everything up to `position` is committed.
    pub fn announce(&self, stream: &'static str, position: i64) {
        self.sender(stream).send_if_modified(|head| {
            if position > *head {
                *head = position;
                true
            } else {
                false
            }
        });
    }

    /// A receiver of the committed head of `stream`.
    pub fn watch(&self, stream: &'static str) -> watch::Receiver<i64> {
        self.sender(stream).subscribe()
    }

    /// Reads the stream's head from the database into the bus (at start-up, so consumers
    /// know how far behind they are).
    pub async fn load_head(&self, db: &Db, stream: &'static str) -> Result<i64, StorageError> {
        let head = match db.query_opt(SELECT_HEAD, &[&stream]).await? {
            Some(row) => row.i64(0)?,
            None => 0,
        };
        self.announce(stream, head);
        Ok(head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::testing::*;

    async fn positions(db: &Db, stream: &str) -> Vec<i64> {
        db.query(
            "SELECT position FROM bus_outbox WHERE stream = $1 ORDER BY position",
            &[&stream],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.i64(0).unwrap())
        .collect()
    }

    #[tokio::test]
    async fn pruning_keeps_what_a_consumer_has_not_applied_and_what_is_recent() {
        for backend in BACKENDS {
            let t = test_db(backend).await;
            let db = &t.db;
            for (stream, n) in [("consumed", 5), ("unconsumed", 2)] {
                for i in 0..n {
                    let txn = db.begin().await.unwrap();
                    let _ = append(&txn, stream, "key", &i).await.unwrap();
                    txn.commit().await.unwrap();
                }
            }
            db.execute(
                "INSERT INTO bus_offsets (consumer, stream, position) VALUES ('c', 'consumed', 3)",
                &[],
            )
            .await
            .unwrap();
            let hour = std::time::Duration::from_secs(3600);
            assert_eq!(prune(db, hour).await.unwrap(), 0, "{backend}: all recent");
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            assert_eq!(
                prune(db, std::time::Duration::ZERO).await.unwrap(),
                5,
                "{backend}"
            );
            assert_eq!(positions(db, "consumed").await, vec![4, 5], "{backend}");
            assert!(positions(db, "unconsumed").await.is_empty(), "{backend}");
            // Positions go on from the head, not from what is left.
            let txn = db.begin().await.unwrap();
            let next = append(&txn, "consumed", "key", &9).await.unwrap();
            txn.commit().await.unwrap();
            assert_eq!(next.position, 6);
        }
    }
}
