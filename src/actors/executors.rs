//! The threads the actors run on. actix runs an actor, and every future its handlers return,
//! on the one thread of the arbiter it was started in; left alone, every component would share
//! the system thread, and the node would use one core however many it has. `Executors` is a
//! fixed set of arbiters (`server.actor_threads`, one per core by default) that a node's
//! components share:
//!
//! - each component's actor is started on one of them ([`Executors::next`]);
//! - a room's actor goes to the arbiter its room ID hashes to ([`Executors::for_key`]), so a
//!   room keeps one writer and one order while rooms spread over every thread;
//! - a handler without per-actor state (a query, a sync) runs wherever the next arbiter is
//!   ([`Executors::run`]), so one busy component is not bound to one core;
//! - the syncapi's notifier and its bus consumers get threads of their own
//!   ([`Executors::dedicated`]), so waking syncs and applying streams never wait behind
//!   rooms or requests.
//!
//! Blocking work never runs here: password hashing has its own `SyncArbiter`, and SQLite's
//! waits (the write lock, commits with their fsync and WAL checkpoints) go to tokio's
//! blocking pool (`storage::sqlite`).

use crate::actors::bridge::BridgeError;
use actix::prelude::*;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Clone)]
pub struct Executors {
    inner: Arc<Inner>,
}

struct Inner {
    arbiters: Vec<ArbiterHandle>,
    next: AtomicUsize,
    /// Threads of their own (see [`Executors::dedicated`]).
    dedicated: std::sync::Mutex<Vec<ArbiterHandle>>,
}

impl Executors {
    /// Starts `threads` arbiters (at least one). Call inside a running actix system.
    pub fn start(threads: usize) -> Executors {
        let arbiters: Vec<ArbiterHandle> = (0..threads.max(1))
            .map(|_| Arbiter::new().handle())
            .collect();
        // Each thread uses its own database connections (`storage::set_thread_shard`).
        for (i, a) in arbiters.iter().enumerate() {
            a.spawn_fn(move || crate::storage::set_thread_shard(i + 1));
        }
        Executors {
            inner: Arc::new(Inner {
                arbiters,
                next: AtomicUsize::new(0),
                dedicated: Default::default(),
            }),
        }
    }

    /// How many arbiters there are.
    pub fn threads(&self) -> usize {
        self.inner.arbiters.len()
    }

    /// How many database shards the threads use: one per arbiter, one for the dedicated.
    pub fn shards(&self) -> usize {
        self.inner.arbiters.len() + 1
    }

    /// The arbiters in turn.
    pub fn next(&self) -> ArbiterHandle {
        let i = self.inner.next.fetch_add(1, Ordering::Relaxed) % self.inner.arbiters.len();
        self.inner.arbiters[i].clone()
    }

    /// A new arbiter for one long-running part that must not wait behind request work (the
    /// notifier, the bus consumers); stopped with the others.
    pub fn dedicated(&self) -> ArbiterHandle {
        let handle = Arbiter::new().handle();
        // The dedicated threads share the shard after the arbiters' (see `shards`).
        let shard = self.inner.arbiters.len() + 1;
        handle.spawn_fn(move || crate::storage::set_thread_shard(shard));
        if let Ok(mut d) = self.inner.dedicated.lock() {
            d.push(handle.clone());
        }
        handle
    }

    /// Always the same arbiter for the same key (within this process).
    pub fn for_key(&self, key: &str) -> ArbiterHandle {
        self.inner.arbiters[self.index_for(key)].clone()
    }

    fn index_for(&self, key: &str) -> usize {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        (h.finish() % self.inner.arbiters.len() as u64) as usize
    }

    /// Runs the future that `make` builds on the next arbiter and waits for its output. The
    /// future itself need not be `Send`: it is built on the thread that runs it.
    pub fn run<F, Fut, T, E>(&self, make: F) -> impl Future<Output = Result<T, E>> + 'static
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + 'static,
        T: Send + 'static,
        E: From<BridgeError> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let spawned = self.next().spawn_fn(move || {
            actix::spawn(async move {
                let _ = tx.send(make().await);
            });
        });
        async move {
            if !spawned {
                return Err(E::from(BridgeError::Mailbox));
            }
            rx.await.map_err(|_| E::from(BridgeError::Mailbox))?
        }
    }

    /// Stops every arbiter once what it is running now is done.
    pub fn stop(&self) {
        for a in &self.inner.arbiters {
            a.stop();
        }
        if let Ok(d) = self.inner.dedicated.lock() {
            for a in d.iter() {
                a.stop();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[actix_web::test]
    async fn work_runs_on_the_arbiters_and_keys_stay_put() {
        let ex = Executors::start(3);
        let main = std::thread::current().id();
        let mut threads = std::collections::HashSet::new();
        for _ in 0..6 {
            let id: Result<_, BridgeError> =
                ex.run(|| async { Ok(std::thread::current().id()) }).await;
            let id = id.unwrap();
            assert_ne!(id, main, "work ran on the caller's thread");
            threads.insert(id);
        }
        assert_eq!(threads.len(), 3, "round robin over every arbiter");
        let a = ex.index_for("!room:x");
        for _ in 0..5 {
            assert_eq!(ex.index_for("!room:x"), a, "one room, one arbiter");
        }
        ex.stop();
    }
}
