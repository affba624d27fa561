//! The syncapi: its own copy of what clients see, fed by the roomserver's and the userapi's
//! streams, for `/sync` and the history endpoints, plus the streams it owns itself (typing,
//! receipts, to-device messages, presence).
//!
//! - `consumers/`: the roomserver stream (timeline, state, relations, redactions) and the
//!   userapi stream (account data), applied exactly once.
//! - [`notifier::Notifier`]: wakes the waiting `/sync` requests of exactly the users a new
//!   position concerns.
//! - `sync.rs`: `/sync`; `history.rs`: `/messages`, `/context`, `/relations`, `/threads`;
//!   `ephemeral.rs`: typing, receipts, to-device, presence; the legacy endpoints clients and
//!   bridges still call: `initial_sync.rs` (`/initialSync`, `/rooms/{id}/initialSync`) and
//!   `events.rs` (`/events`, `/events/{eventId}`).
//!
//! Tokens ([`token::StreamPositions`]) carry one position per stream and survive restarts.
//! Callers: routing. Emits its own streams (`syncapi.receipts`, `syncapi.to_device`,
//! `syncapi.presence`) as the outbox of what federation will send.

mod actor;
pub mod consumers;
mod ephemeral;
pub mod error;
mod events;
pub mod filter;
pub mod format;
mod history;
mod initial_sync;
pub mod messages;
pub mod notifier;
pub mod notify;
pub mod storage;
mod sync;
pub mod token;
pub mod typing;
pub mod visibility;

#[cfg(test)]
mod tests;

pub use actor::SyncApiActor;
pub use error::SyncApiError;

use crate::actors::bridge::{serve, Handle};
use crate::actors::executors::Executors;
use crate::bus::{offset_of, run_consumer_on, Bus, Consumer};
use crate::storage::{Db, StorageError};
use actix::prelude::*;
use messages::*;
use notifier::Notifier;
use std::sync::Arc;
use token::StreamPositions;

/// How callers reach the syncapi.
pub type SyncApiHandle = Handle<SyncApiActor>;

/// The syncapi's own streams (their positions are sync token parts).
pub const RECEIPTS_STREAM: &str = "syncapi.receipts";
pub const TO_DEVICE_STREAM: &str = "syncapi.to_device";
pub const PRESENCE_STREAM: &str = "syncapi.presence";

/// Starts the syncapi on `exec`'s arbiters: the actor on one of them, the requests' handlers
/// on whichever is next, the notifier on a thread of its own and the consumers on another.
pub async fn start(
    db: Db,
    bus: Bus,
    exec: &Executors,
    roomserver: Option<crate::actors::roomserver::RoomserverHandle>,
) -> Result<Addr<SyncApiActor>, StorageError> {
    use consumers::{roomserver::RoomserverConsumer, userapi::UserApiConsumer};
    let positions = StreamPositions {
        pdu: offset_of(&db, RoomserverConsumer::NAME).await?,
        account_data: offset_of(&db, UserApiConsumer::NAME).await?,
        receipts: bus.load_head(&db, RECEIPTS_STREAM).await?,
        to_device: bus.load_head(&db, TO_DEVICE_STREAM).await?,
        presence: bus.load_head(&db, PRESENCE_STREAM).await?,
        typing: crate::storage::now_ms(),
    };
    let joined = storage::current_state::select_all_joined(&db).await?;
    let consumer_thread = exec.dedicated();
    let (notifier, applied) = Notifier::new(positions, joined);
    let notifier = Notifier::start_in_arbiter(&exec.dedicated(), move |_| notifier);
    bus.load_head(&db, crate::actors::roomserver::input::STREAM)
        .await?;
    bus.load_head(&db, crate::actors::userapi::ACCOUNT_DATA_STREAM)
        .await?;
    run_consumer_on(
        &consumer_thread,
        db.clone(),
        bus.clone(),
        RoomserverConsumer::new(Some(notifier.clone())),
    );
    let erased: visibility::ErasedUsers = Arc::new(std::sync::RwLock::new(
        storage::erased_users::select_all(&db)
            .await?
            .into_iter()
            .collect(),
    ));
    run_consumer_on(
        &consumer_thread,
        db.clone(),
        bus.clone(),
        UserApiConsumer::new(Some(notifier.clone()), erased.clone()),
    );
    let deps = actor::Deps {
        db,
        bus,
        notifier,
        applied,
        typing: Arc::new(typing::Typing::new(positions.typing)),
        lazy_members: Default::default(),
        to_device_acked: Default::default(),
        presence_writes: Default::default(),
        erased,
        roomserver,
    };
    let handlers = exec.clone();
    Ok(SyncApiActor::start_in_arbiter(&exec.next(), move |_| {
        SyncApiActor {
            deps,
            exec: handlers,
        }
    }))
}

/// Mounts the syncapi's internal routes, so other nodes reach `addr` over the HTTP bridge.
pub fn serve_remote(cfg: &mut actix_web::web::ServiceConfig, addr: Addr<SyncApiActor>) {
    serve::<QuerySync, _, _, _>(cfg, addr.clone());
    serve::<PerformTyping, _, _, _>(cfg, addr.clone());
    serve::<PerformReceipt, _, _, _>(cfg, addr.clone());
    serve::<PerformSendToDevice, _, _, _>(cfg, addr.clone());
    serve::<PerformPresence, _, _, _>(cfg, addr.clone());
    serve::<QueryPresence, _, _, _>(cfg, addr.clone());
    serve::<QueryMessages, _, _, _>(cfg, addr.clone());
    serve::<QueryContext, _, _, _>(cfg, addr.clone());
    serve::<QueryRelations, _, _, _>(cfg, addr.clone());
    serve::<QueryThreads, _, _, _>(cfg, addr.clone());
    serve::<QueryInitialSync, _, _, _>(cfg, addr.clone());
    serve::<QueryRoomInitialSync, _, _, _>(cfg, addr.clone());
    serve::<QueryEvents, _, _, _>(cfg, addr.clone());
    serve::<QueryClientEvent, _, _, _>(cfg, addr.clone());
    serve::<QueryErasedUsers, _, _, _>(cfg, addr);
}

#[cfg(test)]
mod serde_tests {
    use super::messages::*;
    use serde::de::DeserializeOwned;
    use serde::Serialize;
    use serde_json::json;

    fn round_trip<M: Serialize + DeserializeOwned + std::fmt::Debug>(m: M) {
        let json = serde_json::to_string(&m).unwrap();
        let back: M = serde_json::from_str(&json).unwrap();
        assert_eq!(format!("{m:?}"), format!("{back:?}"));
    }

    #[test]
    fn every_message_survives_serde() {
        let u = || "@alice:x".to_string();
        let d = || "DEV".to_string();
        let r = || "!r:x".to_string();
        round_trip(QuerySync {
            user_id: u(),
            device_id: d(),
            since: Some("s1".into()),
            timeout_ms: 5,
            full_state: false,
            filter: json!({"room": {}}),
            set_presence: None,
        });
        round_trip(QueryErasedUsers {
            user_ids: vec![u()],
        });
        round_trip(PerformTyping {
            room_id: r(),
            user_id: u(),
            typing: true,
            timeout_ms: 3,
        });
        round_trip(PerformReceipt {
            room_id: r(),
            user_id: u(),
            receipt_type: "m.read".into(),
            event_id: "$e".into(),
            thread_id: Some("main".into()),
        });
        round_trip(PerformSendToDevice {
            sender: u(),
            sender_device: d(),
            txn_id: "t".into(),
            event_type: "m.x".into(),
            messages: vec![(u(), d(), json!({"a": 1}))],
        });
        round_trip(PerformPresence {
            user_id: u(),
            presence: "online".into(),
            status_msg: None,
        });
        round_trip(QueryPresence {
            user_id: u(),
            viewer: u(),
        });
        round_trip(QueryMessages {
            room_id: r(),
            user_id: u(),
            device_id: d(),
            from: None,
            to: Some("s2".into()),
            backwards: true,
            limit: Some(3),
            filter: json!(null),
        });
        round_trip(QueryContext {
            room_id: r(),
            user_id: u(),
            device_id: d(),
            event_id: "$e".into(),
            limit: 4,
            filter: json!({}),
        });
        round_trip(QueryRelations {
            room_id: r(),
            user_id: u(),
            device_id: d(),
            event_id: "$e".into(),
            rel_type: Some("m.thread".into()),
            event_type: None,
            from: None,
            to: None,
            limit: None,
            backwards: false,
            recurse: true,
        });
        round_trip(QueryThreads {
            room_id: r(),
            user_id: u(),
            device_id: d(),
            participated_only: true,
            from: None,
            limit: Some(2),
        });
        round_trip(QueryInitialSync {
            user_id: u(),
            device_id: d(),
            limit: Some(2),
            archived: true,
        });
        round_trip(QueryRoomInitialSync {
            room_id: r(),
            user_id: u(),
            device_id: d(),
            is_guest: false,
            limit: None,
        });
        round_trip(QueryEvents {
            user_id: u(),
            device_id: d(),
            from: Some("s1_2".into()),
            timeout_ms: 30_000,
            room_id: Some(r()),
            limit: Some(10),
            affect_presence: true,
        });
        round_trip(QueryClientEvent {
            event_id: "$e".into(),
            user_id: u(),
            device_id: d(),
        });
    }
}
