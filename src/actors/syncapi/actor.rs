//! The syncapi actor: one handler per message, each running as its own future on the next of
//! the node's arbiters (a waiting `/sync` never holds the mailbox, and syncs of different
//! users run on different threads).

use super::messages::*;
use super::notifier::Notifier;
use super::typing::Typing;
use super::{ephemeral, events, history, initial_sync, sync, visibility};
use crate::bus::Bus;
use crate::storage::Db;
use actix::prelude::*;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Per device: per room, the member event last sent for each user (lazy loading without
/// redundant members).
pub type LazyMembers = Mutex<HashMap<(String, String), HashMap<String, HashMap<String, String>>>>;

/// What every handler needs. Cheap to clone.
#[derive(Clone)]
pub struct Deps {
    pub db: Db,
    pub bus: Bus,
    pub notifier: Addr<Notifier>,
    /// The positions the notifier has reached (what readers may see).
    pub applied: tokio::sync::watch::Receiver<super::token::StreamPositions>,
    pub typing: Arc<Typing>,
    pub lazy_members: Arc<LazyMembers>,
    /// (user, device) → the to-device position last acknowledged (deleted up to).
    pub to_device_acked: Arc<Mutex<HashMap<(String, String), i64>>>,
    /// User → (presence, last write in ms): `set_presence` writes only changes, and at most
    /// once a minute for activity.
    pub presence_writes: Arc<Mutex<HashMap<String, (String, i64)>>>,
    /// Erased users (see `visibility::ErasedUsers`).
    pub erased: super::visibility::ErasedUsers,
    /// The roomserver, asked for history from other servers when `/messages` reaches the
    /// start of what this server holds of a room (`PerformBackfill`); `None`: never asked.
    pub roomserver: Option<crate::actors::roomserver::RoomserverHandle>,
}

impl Deps {
    /// Waits (briefly) until the syncapi has applied everything the roomserver and the
    /// userapi committed so far, so a client reads its own writes: a message it sent, account
    /// data it set.
    pub async fn catch_up(&self) {
        let rooms = *self
            .bus
            .watch(crate::actors::roomserver::input::STREAM)
            .borrow();
        let account_data = *self
            .bus
            .watch(crate::actors::userapi::ACCOUNT_DATA_STREAM)
            .borrow();
        let mut applied = self.applied.clone();
        let caught_up = applied.wait_for(|p| p.pdu >= rooms && p.account_data >= account_data);
        if tokio::time::timeout(CATCH_UP_WAIT, caught_up)
            .await
            .is_err()
        {
            tracing::warn!(
                rooms,
                account_data,
                "syncapi is behind its streams; answering anyway"
            );
        }
    }
}

/// The longest a read waits for the syncapi to catch up with its streams.
const CATCH_UP_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The syncapi actor.
pub struct SyncApiActor {
    pub(super) deps: Deps,
    /// Where the handlers run (see `actors::executors`).
    pub(super) exec: crate::actors::executors::Executors,
}

impl Actor for SyncApiActor {
    type Context = Context<Self>;
}

macro_rules! delegate {
    ($($msg:ty => $module:ident :: $f:ident),+ $(,)?) => {$(
        impl Handler<$msg> for SyncApiActor {
            type Result = ResponseFuture<<$msg as Message>::Result>;

            fn handle(&mut self, msg: $msg, _: &mut Context<Self>) -> Self::Result {
                let deps = self.deps.clone();
                Box::pin(self.exec.run(move || async move { $module::$f(&deps, msg).await }))
            }
        }
    )+};
}

delegate!(
    QuerySync => sync::query_sync,
    PerformTyping => ephemeral::perform_typing,
    PerformReceipt => ephemeral::perform_receipt,
    PerformSendToDevice => ephemeral::perform_send_to_device,
    PerformPresence => ephemeral::perform_presence,
    QueryPresence => ephemeral::query_presence,
    QueryMessages => history::query_messages,
    QueryContext => history::query_context,
    QueryRelations => history::query_relations,
    QueryThreads => history::query_threads,
    QueryInitialSync => initial_sync::query_initial_sync,
    QueryRoomInitialSync => initial_sync::query_room_initial_sync,
    QueryEvents => events::query_events,
    QueryClientEvent => events::query_client_event,
    QueryErasedUsers => visibility::query_erased_users,
);
