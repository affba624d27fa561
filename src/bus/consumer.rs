//! The consumer framework of the embedded bus: reads a stream in order and applies each
//! output exactly once, storing its offset in the same transaction as what it applied.

use super::Bus;
use crate::storage::{Conn, Db, StorageError, Txn};
use serde::de::DeserializeOwned;
use std::time::Duration;

const SELECT_OFFSET: &str = "SELECT position FROM bus_offsets WHERE consumer = $1";
const UPSERT_OFFSET: &str =
    "INSERT INTO bus_offsets (consumer, stream, position) VALUES ($1, $2, $3)
    ON CONFLICT (consumer) DO UPDATE SET position = EXCLUDED.position";
const SELECT_BATCH: &str = "SELECT position, payload FROM bus_outbox
    WHERE stream = $1 AND position > $2 ORDER BY position LIMIT 256";

/// The next batch of `stream` after `after`: up to 256 (position, payload) pairs, in order.
pub async fn read_batch(
    db: &impl Conn,
    stream: &str,
    after: i64,
) -> Result<Vec<(i64, String)>, StorageError> {
    db.query(SELECT_BATCH, &[&stream, &after])
        .await?
        .iter()
        .map(|r| Ok((r.i64(0)?, r.string(1)?)))
        .collect()
}

/// Records that consumer `name` of `stream` has applied up to `position`.
pub async fn store_offset(
    txn: &impl Conn,
    name: &str,
    stream: &str,
    position: i64,
) -> Result<(), StorageError> {
    txn.execute(UPSERT_OFFSET, &[&name, &stream, &position])
        .await?;
    Ok(())
}

/// The position consumer `name` has applied up to (0 before its first batch).
pub async fn offset_of(db: &impl Conn, name: &str) -> Result<i64, StorageError> {
    Ok(match db.query_opt(SELECT_OFFSET, &[&name]).await? {
        Some(row) => row.i64(0)?,
        None => 0,
    })
}

/// Why applying an output failed. The batch rolls back and is retried with backoff, except
/// for `Undecodable`, which stops the consumer.
#[derive(Debug, thiserror::Error)]
pub enum ConsumerError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("{0}")]
    Apply(String),
    /// An output this consumer cannot read (a newer producer, a corrupt row): retrying will
    /// not help and skipping it would lose what it says, so the consumer stops there.
    #[error("the output at position {position} does not deserialize: {error}")]
    Undecodable { position: i64, error: String },
}

/// A reader of one stream. Implemented once per (component, stream), in the component's
/// `consumers/`.
#[allow(async_fn_in_trait)]
pub trait Consumer: 'static {
    /// The producer's output type.
    type Output: DeserializeOwned;
    /// The stream read.
    const STREAM: &'static str;
    /// This consumer's stable name: the key of its offset.
    const NAME: &'static str;

    /// Applies one output. Everything written through `txn` commits together with the new
    /// offset, or not at all.
    async fn apply(
        &mut self,
        txn: &Txn,
        position: i64,
        output: Self::Output,
    ) -> Result<(), ConsumerError>;

    /// Whether `output` may be passed over because applying it would change nothing: no
    /// write, no in-memory effect. Asked in order, only while the batch has written nothing
    /// yet (the first output not passed over opens the transaction, and every later one in
    /// the batch is applied), with `db` for reads of what is committed. A batch passed over
    /// whole opens no transaction: its offset is stored with the next batch that writes, or
    /// after [`QUIET_OFFSET_DELAY`] of quiet. Read again after a crash, such outputs are
    /// passed over again, as nothing after them was committed either: so the answer must
    /// depend only on the output and on what this consumer itself applied, never on what
    /// another consumer has done by then.
    async fn skip(&mut self, _db: &Db, _output: &Self::Output) -> Result<bool, ConsumerError> {
        Ok(false)
    }

    /// Called after a batch up to `position` committed (e.g. to wake waiting requests).
    fn applied(&mut self, _position: i64) {}

    /// Called when a batch failed and rolled back: in-memory state `apply` changed while
    /// applying it must be forgotten (it is applied again).
    fn rolled_back(&mut self) {}
}

/// How long a consumer whose last batches were all passed over ([`Consumer::skip`]) waits,
/// idle, before it stores its offset anyway.
pub const QUIET_OFFSET_DELAY: Duration = Duration::from_secs(1);

/// Where a consumer stands: `applied` is in memory, `stored` in `bus_offsets`.
struct Offsets {
    applied: Option<i64>,
    stored: i64,
}

/// A running consumer; dropping the handle leaves it running, [`ConsumerHandle::stop`]
/// ends it (any batch in flight rolls back).
pub struct ConsumerHandle {
    stop: tokio::sync::oneshot::Sender<()>,
}

impl ConsumerHandle {
    pub fn stop(self) {
        let _ = self.stop.send(());
    }
}

/// Starts `consumer` on the current actix arbiter.
pub fn run_consumer<C: Consumer>(db: Db, bus: Bus, consumer: C) -> ConsumerHandle {
    let (stop, stopped) = tokio::sync::oneshot::channel();
    actix_web::rt::spawn(until_stopped(consume(db, bus, consumer), stopped));
    ConsumerHandle { stop }
}

/// Starts `consumer` on `arbiter` (its own thread, not the caller's).
pub fn run_consumer_on<C: Consumer + Send>(
    arbiter: &actix::ArbiterHandle,
    db: Db,
    bus: Bus,
    consumer: C,
) -> ConsumerHandle {
    let (stop, stopped) = tokio::sync::oneshot::channel();
    arbiter.spawn_fn(move || {
        actix_web::rt::spawn(until_stopped(consume(db, bus, consumer), stopped));
    });
    ConsumerHandle { stop }
}

/// Runs `work` until the handle says stop (a dropped handle never does).
async fn until_stopped(
    work: impl std::future::Future<Output = ()>,
    stopped: tokio::sync::oneshot::Receiver<()>,
) {
    let stop = async {
        if stopped.await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = work => {}
        () = stop => {}
    }
}

/// The longest wait between retries of a failing batch.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

async fn consume<C: Consumer>(db: Db, bus: Bus, mut consumer: C) {
    crate::metrics::observe_consumer_stalled(C::NAME, false);
    let mut heads = bus.watch(C::STREAM);
    let mut offsets = Offsets {
        applied: None,
        stored: 0,
    };
    let mut backoff = Duration::from_millis(50);
    loop {
        match step(&db, &mut consumer, &mut offsets).await {
            Ok(Some(position)) => {
                backoff = Duration::from_millis(50);
                crate::metrics::observe_consumer(C::NAME, position);
                consumer.applied(position);
            }
            Ok(None) => {
                // Caught up: sleep until a writer announces something newer, storing an
                // offset only held in memory once things are quiet.
                let at = offsets.applied.unwrap_or(0);
                if at > offsets.stored {
                    let newer = heads.wait_for(|head| *head > at);
                    match tokio::time::timeout(QUIET_OFFSET_DELAY, newer).await {
                        Ok(Ok(_)) => continue,
                        Ok(Err(_)) => return,
                        Err(_) => {
                            if let Err(e) = store_quiet_offset::<C>(&db, at).await {
                                tracing::warn!(consumer = C::NAME, error = %e, "storing the offset failed");
                            } else {
                                offsets.stored = at;
                            }
                            continue;
                        }
                    }
                }
                if heads.wait_for(|head| *head > at).await.is_err() {
                    return;
                }
            }
            Err(ConsumerError::Undecodable { position, error }) => {
                // Nothing after it is applied either (order matters), until an operator
                // deploys a consumer that reads it; the stall shows in the metrics.
                tracing::error!(
                    consumer = C::NAME,
                    position,
                    error = %error,
                    "consumer stopped: an output does not deserialize"
                );
                crate::metrics::observe_consumer_stalled(C::NAME, true);
                return;
            }
            Err(e) => {
                consumer.rolled_back();
                tracing::error!(consumer = C::NAME, error = %e, "consumer batch failed; retrying");
                // Bounded backoff for a failing database or consumer, not a polling loop.
                actix_web::rt::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

/// Stores the offset of outputs that were all passed over.
async fn store_quiet_offset<C: Consumer>(db: &Db, position: i64) -> Result<(), StorageError> {
    let txn = db.begin_relaxed().await?;
    store_offset(&txn, C::NAME, C::STREAM, position).await?;
    txn.commit().await
}

/// Applies the next batch; `Some(last position)` when there was one.
async fn step<C: Consumer>(
    db: &Db,
    consumer: &mut C,
    offsets: &mut Offsets,
) -> Result<Option<i64>, ConsumerError> {
    let from = match offsets.applied {
        Some(o) => o,
        None => {
            let o = offset_of(db, C::NAME).await?;
            offsets.applied = Some(o);
            offsets.stored = o;
            o
        }
    };
    let rows = read_batch(db, C::STREAM, from).await?;
    // Decode first: the batch ends before the first output that does not decode, so what
    // comes before it is applied, and the consumer stops at it the step after.
    let mut outputs = Vec::with_capacity(rows.len());
    for (position, payload) in rows {
        match serde_json::from_str::<C::Output>(&payload) {
            Ok(output) => outputs.push((position, output)),
            Err(e) if outputs.is_empty() => {
                return Err(ConsumerError::Undecodable {
                    position,
                    error: e.to_string(),
                })
            }
            Err(_) => break,
        }
    }
    let Some(&(last, _)) = outputs.last() else {
        return Ok(None);
    };
    // What a consumer writes is derived from the durable outbox, with its offset in the same
    // transaction: a commit lost to a power failure is applied again, so it need not wait
    // for the disk. The transaction opens at the first output that is not passed over.
    let mut txn = None;
    for (position, output) in outputs {
        if txn.is_none() {
            if consumer.skip(db, &output).await? {
                continue;
            }
            txn = Some(db.begin_relaxed().await?);
        }
        if let Some(txn) = &txn {
            consumer.apply(txn, position, output).await?;
        }
    }
    if let Some(txn) = txn {
        store_offset(&txn, C::NAME, C::STREAM, last).await?;
        txn.commit().await?;
        offsets.stored = last;
    }
    offsets.applied = Some(last);
    Ok(Some(last))
}

#[cfg(test)]
mod tests {
    use super::super::{append, Bus};
    use super::*;
    use crate::storage::testing::*;
    use serde::{Deserialize, Serialize};
    use std::cell::Cell;
    use std::rc::Rc;

    #[derive(Serialize, Deserialize)]
    struct Item {
        n: i64,
    }

    /// Records every output it applies in a table of its own, in the same transaction.
    struct Recorder {
        /// Fails (once) when it reaches this position, to prove the batch rolls back.
        fail_at: Option<i64>,
        applied_up_to: Rc<Cell<i64>>,
    }

    impl Consumer for Recorder {
        type Output = Item;
        const STREAM: &'static str = "test";
        const NAME: &'static str = "test.recorder";

        async fn apply(
            &mut self,
            txn: &Txn,
            position: i64,
            item: Item,
        ) -> Result<(), ConsumerError> {
            txn.execute(
                "INSERT INTO t_applied (position, n) VALUES ($1, $2)",
                &[&position, &item.n],
            )
            .await?;
            if self.fail_at == Some(position) {
                self.fail_at = None;
                return Err(ConsumerError::Apply("injected failure".into()));
            }
            Ok(())
        }

        fn applied(&mut self, position: i64) {
            self.applied_up_to.set(position);
        }
    }

    async fn produce(db: &Db, bus: &Bus, from: i64, count: i64) {
        // Several concurrent writers, each output in its own transaction.
        let writers = (0..4).map(|w| async move {
            for n in (from..from + count).filter(|n| n % 4 == w) {
                let txn = db.begin().await.unwrap();
                let a = append(&txn, "test", &format!("k{}", n % 3), &Item { n })
                    .await
                    .unwrap();
                bus.commit(txn, &[a]).await.unwrap();
            }
        });
        futures_util::future::join_all(writers).await;
    }

    /// Waits until the consumer reports `position`, bounded to 30 s.
    async fn applied(up_to: &Rc<Cell<i64>>, position: i64) {
        for _ in 0..3000 {
            if up_to.get() >= position {
                return;
            }
            actix_web::rt::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("consumer did not reach {position}");
    }

    async fn check_exactly_once_in_order(db: &Db, total: i64) {
        let rows = db
            .query("SELECT position, n FROM t_applied ORDER BY position", &[])
            .await
            .unwrap();
        let positions: Vec<i64> = rows.iter().map(|r| r.i64(0).unwrap()).collect();
        assert_eq!(
            positions,
            (1..=total).collect::<Vec<_>>(),
            "every position once"
        );
        let mut seen: Vec<i64> = rows.iter().map(|r| r.i64(1).unwrap()).collect();
        seen.sort();
        assert_eq!(seen, (0..total).collect::<Vec<_>>(), "every output once");
    }

    #[actix_web::test]
    async fn ordered_exactly_once_across_restart_and_failure() {
        for backend in BACKENDS {
            let t = test_db(backend).await;
            let db = t.db.clone();
            db.execute(
                "CREATE TABLE t_applied (position BIGINT PRIMARY KEY, n BIGINT NOT NULL)",
                &[],
            )
            .await
            .unwrap();
            let bus = Bus::new();
            let up_to = Rc::new(Cell::new(0));
            let handle = run_consumer(
                db.clone(),
                bus.clone(),
                Recorder {
                    fail_at: Some(7),
                    applied_up_to: up_to.clone(),
                },
            );
            produce(&db, &bus, 0, 60).await;
            applied(&up_to, 60).await;
            // A "crash": the consumer stops; more is written while it is down.
            handle.stop();
            produce(&db, &bus, 60, 40).await;
            // A new process: a new bus that learns the head from the database.
            let bus = Bus::new();
            assert_eq!(bus.load_head(&db, "test").await.unwrap(), 100, "{backend}");
            let up_to = Rc::new(Cell::new(0));
            let handle = run_consumer(
                db.clone(),
                bus.clone(),
                Recorder {
                    fail_at: None,
                    applied_up_to: up_to.clone(),
                },
            );
            applied(&up_to, 100).await;
            produce(&db, &bus, 100, 20).await;
            applied(&up_to, 120).await;
            handle.stop();
            check_exactly_once_in_order(&db, 120).await;
        }
    }

    /// Applies only the outputs whose `n` is a multiple of 10, passing over the others;
    /// counts the rollbacks it is told of.
    struct Skipper {
        inner: Recorder,
        rolled_back: Rc<Cell<u32>>,
    }

    impl Consumer for Skipper {
        type Output = Item;
        const STREAM: &'static str = "test";
        const NAME: &'static str = "test.skipper";

        async fn skip(&mut self, _db: &Db, item: &Item) -> Result<bool, ConsumerError> {
            Ok(item.n % 10 != 0)
        }

        async fn apply(
            &mut self,
            txn: &Txn,
            position: i64,
            item: Item,
        ) -> Result<(), ConsumerError> {
            // Applied in a batch that writes, an output it would pass over changes nothing.
            if item.n % 10 != 0 {
                return Ok(());
            }
            self.inner.apply(txn, position, item).await
        }

        fn applied(&mut self, position: i64) {
            self.inner.applied(position)
        }

        fn rolled_back(&mut self) {
            self.rolled_back.set(self.rolled_back.get() + 1);
        }
    }

    /// Produces outputs `n` in `from..from + count` one at a time, in order.
    async fn produce_in_order(db: &Db, bus: &Bus, from: i64, count: i64) {
        for n in from..from + count {
            let txn = db.begin().await.unwrap();
            let a = append(&txn, "test", "k", &Item { n }).await.unwrap();
            bus.commit(txn, &[a]).await.unwrap();
        }
    }

    #[actix_web::test]
    async fn passed_over_outputs_write_nothing_and_their_offset_is_stored_when_quiet() {
        for backend in BACKENDS {
            let t = test_db(backend).await;
            let db = t.db.clone();
            db.execute(
                "CREATE TABLE t_applied (position BIGINT PRIMARY KEY, n BIGINT NOT NULL)",
                &[],
            )
            .await
            .unwrap();
            let bus = Bus::new();
            let up_to = Rc::new(Cell::new(0));
            let rolled_back = Rc::new(Cell::new(0));
            let handle = run_consumer(
                db.clone(),
                bus.clone(),
                Skipper {
                    inner: Recorder {
                        fail_at: Some(21),
                        applied_up_to: up_to.clone(),
                    },
                    rolled_back: rolled_back.clone(),
                },
            );
            // Outputs 0..=25 (positions 1..=26): only n = 0, 10, 20 are applied; the one at
            // position 21 (n = 20) fails once and is applied again.
            produce_in_order(&db, &bus, 0, 26).await;
            applied(&up_to, 26).await;
            let rows = db
                .query("SELECT position, n FROM t_applied ORDER BY position", &[])
                .await
                .unwrap();
            let got: Vec<(i64, i64)> = rows
                .iter()
                .map(|r| (r.i64(0).unwrap(), r.i64(1).unwrap()))
                .collect();
            assert_eq!(got, [(1, 0), (11, 10), (21, 20)], "{backend}");
            assert_eq!(rolled_back.get(), 1, "{backend}: told of the rollback");
            // The outputs after the last one applied (positions 22..=26) wrote nothing: the
            // stored offset is behind until the consumer has been quiet for a while.
            let stored = offset_of(&db, "test.skipper").await.unwrap();
            assert!((21..=26).contains(&stored), "{backend}: {stored}");
            let mut stored = 0;
            for _ in 0..100 {
                stored = offset_of(&db, "test.skipper").await.unwrap();
                if stored == 26 {
                    break;
                }
                actix_web::rt::time::sleep(Duration::from_millis(50)).await;
            }
            assert_eq!(stored, 26, "{backend}: stored once quiet");
            handle.stop();
            // Started again, the consumer goes on after the stored offset.
            produce_in_order(&db, &bus, 26, 10).await;
            let bus = Bus::new();
            bus.load_head(&db, "test").await.unwrap();
            let up_to = Rc::new(Cell::new(0));
            let handle = run_consumer(
                db.clone(),
                bus.clone(),
                Skipper {
                    inner: Recorder {
                        fail_at: None,
                        applied_up_to: up_to.clone(),
                    },
                    rolled_back: Rc::new(Cell::new(0)),
                },
            );
            applied(&up_to, 36).await;
            handle.stop();
            let count = db
                .query("SELECT n FROM t_applied ORDER BY position", &[])
                .await
                .unwrap()
                .iter()
                .map(|r| r.i64(0).unwrap())
                .collect::<Vec<_>>();
            assert_eq!(count, [0, 10, 20, 30], "{backend}");
        }
    }

    /// A `Recorder` under a name of its own (the stall gauge is process-wide).
    struct StallRecorder(Recorder);

    impl Consumer for StallRecorder {
        type Output = Item;
        const STREAM: &'static str = "test";
        const NAME: &'static str = "test.stall";

        async fn apply(
            &mut self,
            txn: &Txn,
            position: i64,
            item: Item,
        ) -> Result<(), ConsumerError> {
            self.0.apply(txn, position, item).await
        }

        fn applied(&mut self, position: i64) {
            self.0.applied(position)
        }
    }

    #[actix_web::test]
    async fn an_undecodable_output_stops_the_consumer_after_what_precedes_it() {
        for backend in BACKENDS {
            let t = test_db(backend).await;
            let db = t.db.clone();
            db.execute(
                "CREATE TABLE t_applied (position BIGINT PRIMARY KEY, n BIGINT NOT NULL)",
                &[],
            )
            .await
            .unwrap();
            let bus = Bus::new();
            produce(&db, &bus, 0, 3).await;
            let txn = db.begin().await.unwrap();
            let bad = append(&txn, "test", "k", &"not an item").await.unwrap();
            bus.commit(txn, &[bad]).await.unwrap();
            produce(&db, &bus, 3, 2).await;
            let up_to = Rc::new(Cell::new(0));
            let handle = run_consumer(
                db.clone(),
                bus.clone(),
                StallRecorder(Recorder {
                    fail_at: None,
                    applied_up_to: up_to.clone(),
                }),
            );
            applied(&up_to, 3).await;
            actix_web::rt::time::sleep(Duration::from_millis(300)).await;
            handle.stop();
            assert_eq!(up_to.get(), 3, "{backend}: nothing after the bad output");
            assert_eq!(offset_of(&db, "test.stall").await.unwrap(), 3, "{backend}");
            let text = crate::metrics::render();
            assert!(
                text.contains("myelin_bus_consumer_stalled{consumer=\"test.stall\"} 1"),
                "{text}"
            );
        }
    }

    #[actix_web::test]
    async fn a_rolled_back_change_has_no_output() {
        for backend in BACKENDS {
            let t = test_db(backend).await;
            let db = &t.db;
            {
                let txn = db.begin().await.unwrap();
                let _ = append(&txn, "test", "k", &Item { n: 1 }).await.unwrap();
                // Dropped: rolled back.
            }
            let txn = db.begin().await.unwrap();
            let a = append(&txn, "test", "k", &Item { n: 2 }).await.unwrap();
            assert_eq!(
                a.position, 1,
                "{backend}: the rolled-back position is reused, no gap"
            );
            txn.commit().await.unwrap();
            let rows = db
                .query("SELECT position, payload FROM bus_outbox", &[])
                .await
                .unwrap();
            assert_eq!(rows.len(), 1);
            assert_eq!(rows[0].string(1).unwrap(), "{\"n\":2}");
        }
    }
}
