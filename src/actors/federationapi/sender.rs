//! The outgoing side: one sender per destination server, draining its durable queue
//! (`federationapi_queue`) in order as transactions of at most 50 PDUs and 100 EDUs
//! (`PUT /_matrix/federation/v1/send/{txnId}`).
//!
//! - A transaction's ID, contents (every queued item up to a position) and timestamp are
//!   written to `federationapi_destinations` before its first attempt, so a retry, also
//!   after a crash, sends the same transaction under the same ID: the receiver's
//!   idempotence per (origin, ID) then makes it count once.
//! - One sender runs per destination (a flag in [`Queues`]), so no two transactions are
//!   in flight to one server. A sender stops when its queue is empty; the roomserver
//!   consumer wakes it after committing new items, and at start every destination with
//!   something queued resumes.
//! - A 2xx answer ends the transaction (PDUs the destination refused are logged, as Synapse
//!   does: they are not sent again). A 4xx answer other than 429, or a destination in the
//!   IP range denylist, drops the transaction (logged): resending it would be refused the
//!   same way, and it must not block the queue. Anything else (no answer, 5xx, 429) is a
//!   failure: the next attempt waits `federation.retry_min_interval`, multiplied by
//!   `retry_multiplier` for each further failure up to `retry_max_interval`, times a random
//!   0.8-1.4 (Synapse's numbers). The backoff is stored, so a restart keeps it.
//! - A destination that sends us a transaction is reachable again: its backoff is cleared
//!   and its sender tries at once ([`Queues::reachable`]), so it is caught up. So does any
//!   other signed request of it (`InputServerUp`, sent by routing once the signature
//!   verified), when its sender is waiting out a backoff ([`Queues::is_backing_off`]).

use super::storage::{destinations, queue};
use crate::federation::client::{FederationClient, FederationError};
use crate::storage::{now_ms, Db, StorageError};
use actix::ArbiterHandle;
use rand::Rng;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// The most PDUs in one transaction (the spec's limit).
pub const MAX_PDUS: usize = 50;
/// The most EDUs in one transaction (the spec's limit).
pub const MAX_EDUS: usize = 100;
/// The largest answer read from `/send` (a map of event IDs to results).
const MAX_ANSWER_BYTES: usize = 1024 * 1024;
/// How long a sender waits after a database failure before it tries again.
const STORAGE_RETRY: Duration = Duration::from_secs(5);

/// The backoff settings (`federation.retry_*`, `federation.catch_up_after`).
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub min: Duration,
    pub multiplier: u32,
    pub max: Duration,
    /// A destination failing for this long is in catch-up (see [`Queues::enqueue`]).
    pub catch_up_after: Duration,
}

impl RetryPolicy {
    /// Whether a destination failing since `failing_since` (ms since the epoch) is in
    /// catch-up at `now`.
    fn catching_up(&self, failing_since: Option<i64>, now: i64) -> bool {
        failing_since.is_some_and(|since| now - since >= self.catch_up_after.as_millis() as i64)
    }
}

impl RetryPolicy {
    /// The wait after `failures` failed attempts in a row (at least 1), before jitter.
    pub fn interval(&self, failures: i64) -> Duration {
        let mut wait = self.min;
        for _ in 1..failures.max(1) {
            wait = wait.saturating_mul(self.multiplier);
            if wait >= self.max {
                return self.max;
            }
        }
        wait.min(self.max)
    }

    /// The wait after `failures` failures, with Synapse's random 0.8-1.4 factor, capped.
    fn jittered(&self, failures: i64) -> Duration {
        let factor = rand::thread_rng().gen_range(0.8..1.4);
        self.interval(failures).mul_f64(factor).min(self.max)
    }
}

/// The outgoing queues of this server: cheap to clone, shared by the roomserver consumer
/// (which wakes senders), the transaction handler (which reports reachable servers) and
/// the senders themselves.
#[derive(Clone)]
pub struct Queues {
    inner: Arc<Inner>,
}

struct Inner {
    db: Db,
    client: FederationClient,
    origin: String,
    retry: RetryPolicy,
    /// Where the senders run (a thread of their own).
    arbiter: ArbiterHandle,
    senders: Mutex<HashMap<String, SenderState>>,
    /// When the queue gauge was last counted.
    counted_at: Mutex<Option<std::time::Instant>>,
}

/// The queue gauge is counted (a `COUNT(*)` over every queue) at most this often while
/// transactions flow, and whenever a sender runs out of work.
const COUNT_INTERVAL: Duration = Duration::from_secs(10);

/// What is known of a destination's sender.
struct SenderState {
    /// A sender task is running for it.
    running: bool,
    /// Something was queued (or the backoff cleared) since the sender last read the queue.
    pending: bool,
    /// Cuts a backoff wait short.
    kick: Arc<Notify>,
    /// The sender is waiting out a backoff.
    backing_off: bool,
}

impl Queues {
    pub fn new(
        db: Db,
        client: FederationClient,
        origin: String,
        retry: RetryPolicy,
        arbiter: ArbiterHandle,
    ) -> Queues {
        Queues {
            inner: Arc::new(Inner {
                db,
                client,
                origin,
                retry,
                arbiter,
                senders: Mutex::new(HashMap::new()),
                counted_at: Mutex::new(None),
            }),
        }
    }

    /// Starts the sender of every destination with something queued (at start).
    pub async fn resume(&self) -> Result<(), StorageError> {
        let db = &self.inner.db;
        self.count_queued(true).await?;
        for destination in queue::select_destinations(db).await? {
            self.wake(&destination);
        }
        Ok(())
    }

    /// Something was queued for `destination`: its sender runs (started if needed).
    pub fn wake(&self, destination: &str) {
        let Ok(mut senders) = self.inner.senders.lock() else {
            return;
        };
        let state = senders
            .entry(destination.to_owned())
            .or_insert_with(|| SenderState {
                running: false,
                pending: false,
                kick: Arc::new(Notify::new()),
                backing_off: false,
            });
        state.pending = true;
        if state.running {
            return;
        }
        state.running = true;
        let queues = self.clone();
        let destination = destination.to_owned();
        self.inner.arbiter.spawn_fn(move || {
            actix_web::rt::spawn(async move { queues.run(destination).await });
        });
    }

    /// Queues one PDU or EDU (JSON text) for each destination, inside the caller's database
    /// transaction; wake the destinations' senders after it commits ([`Queues::wake`]).
    ///
    /// `collapse_key` names what this item says again of older ones (a room's events, a
    /// user's presence, typing or receipt in a room), if anything. A destination whose
    /// transactions have failed for `federation.catch_up_after` is in catch-up: the older
    /// items with the same key leave its queue (not those of the transaction in flight), so
    /// the queue of a server that stays down does not grow without bound. Once back, the
    /// destination gets each room's newest event and fetches the ones before it with
    /// `/get_missing_events` (Synapse's catch-up also sends a room's newest event only).
    pub async fn enqueue<'a>(
        &self,
        txn: &impl crate::storage::Conn,
        destinations: impl IntoIterator<Item = &'a String>,
        is_pdu: bool,
        json: &str,
        collapse_key: Option<&str>,
    ) -> Result<(), StorageError> {
        let now = now_ms();
        for destination in destinations {
            let next = destinations::next_position(txn, destination).await?;
            if let Some(key) = collapse_key {
                if self.inner.retry.catching_up(next.failing_since, now) {
                    let after = next.in_flight_up_to.unwrap_or(0);
                    queue::collapse(txn, destination, key, after).await?;
                }
            }
            queue::insert(txn, destination, next.position, is_pdu, json, collapse_key).await?;
        }
        Ok(())
    }

    /// Whether the sender of `destination` is waiting out a backoff now (no database read).
    pub fn is_backing_off(&self, destination: &str) -> bool {
        self.inner
            .senders
            .lock()
            .ok()
            .is_some_and(|s| s.get(destination).is_some_and(|s| s.backing_off))
    }

    /// Records whether the sender of `destination` is waiting out a backoff.
    fn set_backing_off(&self, destination: &str, backing_off: bool) {
        if let Ok(mut s) = self.inner.senders.lock() {
            if let Some(state) = s.get_mut(destination) {
                state.backing_off = backing_off;
            }
        }
    }

    /// A consumer's batch up to `position` committed: wakes the destinations its outputs
    /// queued for (`touched`: per stream position, the destinations), and forgets them.
    pub fn wake_applied(
        &self,
        touched: &mut std::collections::BTreeMap<i64, std::collections::BTreeSet<String>>,
        position: i64,
    ) {
        let later = touched.split_off(&(position + 1));
        let done = std::mem::replace(touched, later);
        let woken: std::collections::BTreeSet<String> = done.into_values().flatten().collect();
        for destination in woken {
            self.wake(&destination);
        }
    }

    /// `destination` just reached us, so it is up: its backoff is cleared and its sender
    /// tries again at once.
    pub async fn reachable(&self, destination: &str) -> Result<(), StorageError> {
        if destinations::reset_backoff(&self.inner.db, destination).await? {
            tracing::info!(destination, "destination is back: retrying its queue now");
            let kick = self
                .inner
                .senders
                .lock()
                .ok()
                .and_then(|s| s.get(destination).map(|s| s.kick.clone()));
            if let Some(kick) = kick {
                kick.notify_one();
            }
            self.wake(destination);
        }
        Ok(())
    }

    /// The sender of one destination: sends transactions until its queue is empty.
    async fn run(self, destination: String) {
        let kick = match self.inner.senders.lock() {
            Ok(s) => s.get(&destination).map(|s| s.kick.clone()),
            Err(_) => None,
        };
        let Some(kick) = kick else { return };
        loop {
            if let Ok(mut s) = self.inner.senders.lock() {
                if let Some(state) = s.get_mut(&destination) {
                    state.pending = false;
                }
            }
            match self.step(&destination).await {
                Ok(Step::Again) => {}
                Ok(Step::Idle) => {
                    if let Err(e) = self.count_queued(true).await {
                        tracing::warn!(destination, error = %e, "counting the federation queues failed");
                    }
                    let Ok(mut s) = self.inner.senders.lock() else {
                        return;
                    };
                    let Some(state) = s.get_mut(&destination) else {
                        return;
                    };
                    if !state.pending {
                        state.running = false;
                        return;
                    }
                }
                Ok(Step::WaitUntil(at)) => {
                    let wait = Duration::from_millis(u64::try_from(at - now_ms()).unwrap_or(0));
                    self.set_backing_off(&destination, true);
                    tokio::select! {
                        _ = actix_web::rt::time::sleep(wait) => {}
                        _ = kick.notified() => {}
                    }
                    self.set_backing_off(&destination, false);
                }
                Err(e) => {
                    tracing::error!(destination, error = %e, "federation sender: storage failure");
                    actix_web::rt::time::sleep(STORAGE_RETRY).await;
                }
            }
        }
    }

    /// One attempt: the transaction in flight, or a new one made of the queue's head.
    async fn step(&self, destination: &str) -> Result<Step, StorageError> {
        let db = &self.inner.db;
        let Some(state) = destinations::select(db, destination).await? else {
            return Ok(Step::Idle);
        };
        if state.retry_at > now_ms() {
            return Ok(Step::WaitUntil(state.retry_at));
        }
        let (txn_id, last, ts) = match state.txn {
            Some(txn) => txn,
            None => {
                let head =
                    queue::select_first(db, destination, (MAX_PDUS + MAX_EDUS) as i64).await?;
                let Some(last) = last_position(&head) else {
                    return Ok(Step::Idle);
                };
                let txn_id = new_txn_id(last);
                let ts = now_ms();
                // Fixed before the first attempt: a retry sends exactly this.
                destinations::set_txn(db, destination, &txn_id, last, ts).await?;
                return Ok(Step::Again);
            }
        };
        let items = queue::select_up_to(db, destination, last).await?;
        if items.is_empty() {
            // Nothing left of it (never the case after a proper answer): no empty sends.
            destinations::clear_txn(db, destination, &txn_id).await?;
            return Ok(Step::Again);
        }
        let (mut pdus, mut edus) = (Vec::new(), Vec::new());
        for item in &items {
            match serde_json::from_str::<Value>(&item.json) {
                Ok(v) if item.is_pdu => pdus.push(v),
                Ok(v) => edus.push(v),
                Err(e) => tracing::error!(
                    destination,
                    position = item.position,
                    error = %e,
                    "queued item is not JSON; left out"
                ),
            }
        }
        let sent_pdus = pdus.len() as u64;
        let body = json!({
            "origin": self.inner.origin,
            "origin_server_ts": ts,
            "pdus": pdus,
            "edus": edus,
        });
        let server = ruma::ServerName::parse(destination).map_err(|e| StorageError::Decode {
            column: 0,
            reason: format!("destination {destination:?}: {e}"),
        });
        let answer = match server {
            Ok(server) => {
                self.inner
                    .client
                    .json(
                        http::Method::PUT,
                        &server,
                        &format!("/_matrix/federation/v1/send/{txn_id}"),
                        Some(&body),
                        true,
                        Some(MAX_ANSWER_BYTES),
                    )
                    .await
            }
            Err(e) => Err(FederationError::Denied {
                server: destination.to_owned(),
                detail: e.to_string(),
            }),
        };
        match answer {
            Ok(answer) => {
                log_refused_pdus(destination, &txn_id, &answer);
                self.finish(destination, &txn_id, last).await?;
                crate::metrics::observe_federation_transaction("sent", sent_pdus);
                tracing::debug!(destination, txn_id, pdus = sent_pdus, "transaction sent");
                Ok(Step::Again)
            }
            Err(e) if is_permanent(&e) => {
                tracing::warn!(
                    destination,
                    txn_id,
                    pdus = sent_pdus,
                    error = %e,
                    "transaction refused by the destination; dropped"
                );
                self.finish(destination, &txn_id, last).await?;
                crate::metrics::observe_federation_transaction("dropped", sent_pdus);
                Ok(Step::Again)
            }
            Err(e) => {
                let failures = state.failures + 1;
                let wait = self.inner.retry.jittered(failures);
                let retry_at = now_ms() + wait.as_millis() as i64;
                let now = now_ms();
                destinations::set_backoff(db, destination, failures, retry_at, now).await?;
                let since = state.failing_since.or(Some(now));
                if self.inner.retry.catching_up(since, now) {
                    // Newer items replace older ones as they are queued; the queue so far
                    // is brought down the same way.
                    let dropped = queue::compact(db, destination, last).await?;
                    if dropped > 0 {
                        tracing::info!(
                            destination,
                            dropped,
                            "destination in catch-up: queue compacted"
                        );
                    }
                }
                crate::metrics::observe_federation_transaction("failed", sent_pdus);
                tracing::info!(
                    destination,
                    txn_id,
                    failures,
                    retry_in_ms = wait.as_millis() as u64,
                    error = %e,
                    "transaction failed; will retry"
                );
                Ok(Step::WaitUntil(retry_at))
            }
        }
    }

    /// The transaction was answered: its items leave the queue, in one database
    /// transaction with the end of the transaction in flight.
    async fn finish(&self, destination: &str, txn_id: &str, last: i64) -> Result<(), StorageError> {
        let txn = self.inner.db.begin().await?;
        queue::delete_up_to(&txn, destination, last).await?;
        destinations::clear_txn(&txn, destination, txn_id).await?;
        txn.commit().await?;
        self.count_queued(false).await
    }

    /// Sets the queue gauge from a count of every queue: when `now`, or when the last count
    /// is older than [`COUNT_INTERVAL`].
    async fn count_queued(&self, now: bool) -> Result<(), StorageError> {
        {
            let Ok(mut at) = self.inner.counted_at.lock() else {
                return Ok(());
            };
            if !now && at.is_some_and(|t| t.elapsed() < COUNT_INTERVAL) {
                return Ok(());
            }
            *at = Some(std::time::Instant::now());
        }
        crate::metrics::observe_federation_queue(queue::count(&self.inner.db).await?);
        Ok(())
    }
}

/// What a sender does next.
enum Step {
    /// Look at the queue again now.
    Again,
    /// Nothing queued.
    Idle,
    /// Backing off until then (ms since the epoch).
    WaitUntil(i64),
}

/// The last position of the transaction made of the queue's head: as many items, in
/// order, as fit in 50 PDUs and 100 EDUs. `None` for an empty queue.
fn last_position(head: &[queue::Item]) -> Option<i64> {
    let (mut pdus, mut edus, mut last) = (0, 0, None);
    for item in head {
        let (n, max) = if item.is_pdu {
            (&mut pdus, MAX_PDUS)
        } else {
            (&mut edus, MAX_EDUS)
        };
        if *n == max {
            break;
        }
        *n += 1;
        last = Some(item.position);
    }
    last
}

/// A new transaction ID: unique per destination (the position) and across the queue's
/// lifetimes (the time and randomness), URL-safe.
fn new_txn_id(last: i64) -> String {
    let random: String = rand::thread_rng()
        .sample_iter(rand::distributions::Alphanumeric)
        .take(8)
        .map(char::from)
        .collect();
    format!("{}.{last}.{random}", now_ms())
}

/// Whether a failure will not go away by sending the same transaction again.
fn is_permanent(e: &FederationError) -> bool {
    match e {
        FederationError::Denied { .. } => true,
        FederationError::Refused { status, .. } => (400..500).contains(status) && *status != 429,
        _ => false,
    }
}

/// Logs the PDUs a destination did not take (they are not sent again).
fn log_refused_pdus(destination: &str, txn_id: &str, answer: &Value) {
    let Some(results) = answer.get("pdus").and_then(Value::as_object) else {
        return;
    };
    for (event_id, result) in results {
        if let Some(error) = result.get("error") {
            tracing::info!(
                destination,
                txn_id,
                event_id,
                error = %error,
                "destination did not take a PDU"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(position: i64, is_pdu: bool) -> queue::Item {
        queue::Item {
            position,
            is_pdu,
            json: "{}".into(),
        }
    }

    #[test]
    fn transactions_hold_at_most_50_pdus_and_100_edus_in_order() {
        assert_eq!(last_position(&[]), None);
        let pdus: Vec<_> = (1..=60).map(|p| item(p, true)).collect();
        assert_eq!(last_position(&pdus), Some(50));
        // EDUs between PDUs come along until either limit is reached.
        let mut mixed: Vec<_> = (1..=120).map(|p| item(p, false)).collect();
        mixed.insert(0, item(0, true));
        assert_eq!(last_position(&mixed), Some(100));
        let few = [item(3, true), item(4, false), item(9, true)];
        assert_eq!(last_position(&few), Some(9));
    }

    #[test]
    fn backoff_grows_to_its_cap() {
        let p = RetryPolicy {
            min: Duration::from_secs(600),
            multiplier: 2,
            max: Duration::from_secs(3000),
            catch_up_after: Duration::from_secs(3600),
        };
        assert_eq!(p.interval(1), Duration::from_secs(600));
        assert_eq!(p.interval(2), Duration::from_secs(1200));
        assert_eq!(p.interval(3), Duration::from_secs(2400));
        assert_eq!(p.interval(4), Duration::from_secs(3000));
        assert_eq!(p.interval(1000), Duration::from_secs(3000));
        for failures in 1..10 {
            let j = p.jittered(failures);
            assert!(
                j >= p.interval(failures).mul_f64(0.8) && j <= p.max,
                "{j:?}"
            );
        }
    }

    #[test]
    fn only_client_errors_drop_a_transaction() {
        let refused = |status| FederationError::Refused {
            server: "b.test".into(),
            status,
            errcode: String::new(),
            error: String::new(),
        };
        assert!(is_permanent(&refused(400)));
        assert!(is_permanent(&refused(403)));
        assert!(!is_permanent(&refused(429)));
        assert!(!is_permanent(&refused(500)));
        assert!(!is_permanent(&FederationError::Unreachable {
            server: "b.test".into(),
            detail: String::new(),
        }));
    }
}
