//! The federationapi actor: holds the database, the signing key and the outbound client,
//! and hands each message to its handler in `handlers/`, on the executors' threads in turn
//! (`ResponseFuture`: handlers run concurrently).

use super::handlers;
use super::messages::*;
use super::sender::Queues;
use crate::actors::roomserver::RoomserverHandle;
use crate::actors::syncapi::SyncApiHandle;
use crate::actors::userapi::UserApiHandle;
use crate::config::{OldSigningKey, TrustedKeyServer};
use crate::federation::client::FederationClient;
use crate::signing_key::SigningKey;
use crate::storage::Db;
use actix::prelude::*;
use ruma::OwnedServerName;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The least time between two fetches of one server's keys: a flood of requests naming
/// unknown keys makes one fetch, not one each.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(10);

/// What every handler may use; cheap to clone into each message's future.
#[derive(Clone)]
pub struct Deps {
    pub db: Db,
    pub server_name: OwnedServerName,
    pub key: Arc<SigningKey>,
    pub client: FederationClient,
    /// `federation.key_validity`.
    pub key_validity: Duration,
    /// `federation.old_signing_keys`.
    pub old_keys: Arc<BTreeMap<String, OldSigningKey>>,
    /// `federation.trusted_key_servers`, in the order they are asked.
    pub notaries: Arc<Vec<TrustedKeyServer>>,
    /// When each server's keys were last fetched (see [`REFETCH_INTERVAL`]).
    pub last_fetch: Arc<Mutex<HashMap<OwnedServerName, Instant>>>,
    /// The roomserver, for the PDUs of incoming transactions.
    pub roomserver: RoomserverHandle,
    /// The syncapi, for the EDUs of incoming transactions.
    pub syncapi: SyncApiHandle,
    /// The userapi: the devices of a user a to-device EDU names with `*`.
    pub userapi: UserApiHandle,
    /// The outgoing queues (an incoming transaction tells them its origin is up).
    pub queues: Queues,
    /// `rooms.default_version`: how the event ID of a PDU for an unknown room is derived.
    pub default_room_version: String,
    /// One lock per origin whose transaction is being processed: one at a time per origin.
    pub origins: Arc<Mutex<HashMap<OwnedServerName, Arc<tokio::sync::Mutex<()>>>>>,
    /// One lock per server whose keys are being fetched: a query that comes meanwhile waits
    /// for that fetch and reads what it stored, rather than finding nothing.
    pub key_fetches: Arc<Mutex<HashMap<OwnedServerName, Arc<tokio::sync::Mutex<()>>>>>,
}

/// The lock of `server` in `locks`, made on first use; unused ones are dropped as the map
/// grows.
fn lock_of(
    locks: &Mutex<HashMap<OwnedServerName, Arc<tokio::sync::Mutex<()>>>>,
    server: &OwnedServerName,
) -> Arc<tokio::sync::Mutex<()>> {
    let Ok(mut map) = locks.lock() else {
        return Arc::new(tokio::sync::Mutex::new(()));
    };
    if map.len() > 1000 {
        map.retain(|_, lock| Arc::strong_count(lock) > 1);
    }
    map.entry(server.clone()).or_default().clone()
}

impl Deps {
    /// The lock that serializes `origin`'s transactions. Unused locks are dropped as the
    /// map grows.
    pub fn origin_lock(&self, origin: &OwnedServerName) -> Arc<tokio::sync::Mutex<()>> {
        lock_of(&self.origins, origin)
    }

    /// The lock held while `server`'s keys are fetched.
    pub fn key_fetch_lock(&self, server: &OwnedServerName) -> Arc<tokio::sync::Mutex<()>> {
        lock_of(&self.key_fetches, server)
    }

    /// Whether `server`'s keys may be fetched now; if so, records the fetch.
    pub fn may_fetch(&self, server: &OwnedServerName) -> bool {
        let Ok(mut last) = self.last_fetch.lock() else {
            return false;
        };
        let now = Instant::now();
        if last
            .get(server)
            .is_some_and(|at| now.duration_since(*at) < REFETCH_INTERVAL)
        {
            return false;
        }
        if last.len() > 10_000 {
            last.retain(|_, at| now.duration_since(*at) < REFETCH_INTERVAL);
        }
        last.insert(server.clone(), now);
        true
    }
}

pub struct FederationApiActor {
    pub(super) deps: Deps,
    /// Where the handlers run (see `actors::executors`).
    pub(super) exec: crate::actors::executors::Executors,
}

impl Actor for FederationApiActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Every signed federation request asks for keys: let bursts queue.
        ctx.set_mailbox_capacity(1024);
    }
}

macro_rules! delegate {
    ($($msg:ident => $module:ident),+ $(,)?) => {$(
        impl Handler<$msg> for FederationApiActor {
            type Result = ResponseFuture<<$msg as Message>::Result>;

            fn handle(&mut self, msg: $msg, _: &mut Context<Self>) -> Self::Result {
                let deps = self.deps.clone();
                Box::pin(self.exec.run(move || async move { handlers::$module::handle(&deps, msg).await }))
            }
        }
    )+};
}

delegate!(
    QueryServerKeys => query_server_keys,
    QueryLocalServerKeys => query_local_server_keys,
    QueryNotaryKeys => query_notary_keys,
    PerformJoin => perform_join,
    PerformLeave => perform_leave,
    PerformKnock => perform_knock,
    PerformInvite => perform_invite,
    QueryRemoteAlias => query_remote_alias,
    QueryRemoteProfile => query_remote_profile,
    QueryRemotePublicRooms => query_remote_public_rooms,
    InputTransaction => input_transaction,
    InputTyping => input_typing,
    InputSendToDevice => input_send_to_device,
    InputServerUp => input_server_up,
    QueryBackfill => query_backfill,
);
