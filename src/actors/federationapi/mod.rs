//! The federationapi: this server's side of federation with other homeservers: server
//! keys, incoming transactions and the outgoing queues. It owns the `federationapi_*`
//! tables (the cache of other servers' keys, the transactions received, who is joined to
//! each room, the queues per destination), holds the signing key and the outbound
//! [`FederationClient`].
//!
//! Called by routing: the key endpoints (`QueryLocalServerKeys` for
//! `/_matrix/key/v2/server`, `QueryNotaryKeys` for `/_matrix/key/v2/query`), the `X-Matrix`
//! check of every signed federation request (`QueryServerKeys`, then `InputServerUp`: the
//! origin is up, so a backoff from it ends) and `PUT /send/{txnId}`
//! (`InputTransaction`, which inputs PDUs through the roomserver's `InputRoomEvent`, or
//! `InputRoomEventAtState` when a gap is filled from `/state_ids`, and
//! typing, receipt, to-device and presence EDUs through the syncapi), `/typing`
//! (`InputTyping`), `/sendToDevice` to other servers' users (`InputSendToDevice`), and the
//! client API's calls to other servers for remote rooms (`PerformJoin`, `PerformLeave`,
//! `PerformKnock`, `PerformInvite`, `QueryRemoteAlias`: the requests and the checks of what comes back that
//! only it can make; the roomserver checks the events). Called by the roomserver: its
//! keyring (`QueryServerKeys`) and `PerformBackfill` (`QueryBackfill`: another server's
//! `/backfill`). Reads the roomserver's stream
//! (`consumers::roomserver`) and the syncapi's receipts and presence (`consumers::receipts`,
//! `consumers::presence`), and sends this server's events, typing, receipts, to-device
//! messages and presence to the other servers (`sender`). It emits no stream.

mod actor;
mod consumers;
pub mod error;
mod handlers;
pub mod messages;
pub mod sender;
pub(crate) mod storage;

pub use actor::FederationApiActor;
pub use error::FederationApiError;

use crate::actors::bridge::{serve, Handle};
use crate::actors::executors::Executors;
use crate::actors::roomserver::RoomserverHandle;
use crate::actors::syncapi::SyncApiHandle;
use crate::actors::userapi::UserApiHandle;
use crate::bus::{run_consumer_on, Bus};
use crate::config::{OldSigningKey, TrustedKeyServer};
use crate::federation::client::FederationClient;
use crate::signing_key::SigningKey;
use crate::storage::{Db, StorageError};
use actix::prelude::*;
use actix_web::web;
use messages::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// How callers reach the federationapi, here or on another node.
pub type FederationApiHandle = Handle<FederationApiActor>;

/// What the federationapi needs to start.
pub struct FederationApiConfig {
    pub server_name: ruma::OwnedServerName,
    pub key: Arc<SigningKey>,
    pub client: FederationClient,
    pub key_validity: Duration,
    pub old_keys: BTreeMap<String, OldSigningKey>,
    pub notaries: Vec<TrustedKeyServer>,
    /// The outgoing queues' backoff (`federation.retry_*`).
    pub retry: sender::RetryPolicy,
    /// `rooms.default_version`.
    pub default_room_version: String,
}

/// Starts the federationapi: its actor on one of `exec`'s arbiters (its handlers run on
/// whichever is next), its consumer of the roomserver stream and the senders of the
/// outgoing queues on a thread of their own, and resumes every queue with something in it.
pub async fn start(
    db: Db,
    bus: Bus,
    roomserver: RoomserverHandle,
    syncapi: SyncApiHandle,
    userapi: UserApiHandle,
    config: FederationApiConfig,
    exec: &Executors,
) -> Result<Addr<FederationApiActor>, StorageError> {
    let thread = exec.dedicated();
    let queues = sender::Queues::new(
        db.clone(),
        config.client.clone(),
        config.server_name.to_string(),
        config.retry,
        thread.clone(),
    );
    bus.load_head(&db, crate::actors::roomserver::input::STREAM)
        .await?;
    bus.load_head(&db, crate::actors::syncapi::RECEIPTS_STREAM)
        .await?;
    bus.load_head(&db, crate::actors::syncapi::PRESENCE_STREAM)
        .await?;
    run_consumer_on(
        &thread,
        db.clone(),
        bus.clone(),
        consumers::roomserver::RoomserverConsumer::new(
            config.server_name.to_string(),
            roomserver.clone(),
            syncapi.clone(),
            queues.clone(),
        ),
    );
    run_consumer_on(
        &thread,
        db.clone(),
        bus.clone(),
        consumers::receipts::ReceiptsConsumer::new(config.server_name.to_string(), queues.clone()),
    );
    run_consumer_on(
        &thread,
        db.clone(),
        bus,
        consumers::presence::PresenceConsumer::new(config.server_name.to_string(), queues.clone()),
    );
    queues.resume().await?;
    // Received transactions are remembered for a day (as Synapse does), then forgotten.
    let pruning = db.clone();
    thread.spawn_fn(move || {
        actix_web::rt::spawn(forget_old_transactions(pruning));
    });
    let deps = actor::Deps {
        db,
        server_name: config.server_name,
        key: config.key,
        client: config.client,
        key_validity: config.key_validity,
        old_keys: Arc::new(config.old_keys),
        notaries: Arc::new(config.notaries),
        last_fetch: Default::default(),
        roomserver,
        syncapi,
        userapi,
        queues,
        default_room_version: config.default_room_version,
        origins: Default::default(),
        key_fetches: Default::default(),
    };
    let handlers = exec.clone();
    Ok(FederationApiActor::start_in_arbiter(
        &exec.next(),
        move |_| FederationApiActor {
            deps,
            exec: handlers,
        },
    ))
}

/// How long a received transaction's answer is kept for a retry of it.
const RECEIVED_TRANSACTION_RETENTION: Duration = Duration::from_secs(24 * 60 * 60);

/// Deletes the received transactions older than [`RECEIVED_TRANSACTION_RETENTION`], every
/// hour, for as long as the arbiter runs; failures are logged and retried at the next turn.
async fn forget_old_transactions(db: Db) {
    loop {
        let before = crate::storage::now_ms() - RECEIVED_TRANSACTION_RETENTION.as_millis() as i64;
        match storage::received_transactions::delete_before(&db, before).await {
            Ok(0) => {}
            Ok(n) => tracing::debug!(deleted = n, "old received transactions forgotten"),
            Err(e) => tracing::warn!(error = %e, "received transactions not pruned"),
        }
        actix_web::rt::time::sleep(Duration::from_secs(60 * 60)).await;
    }
}

/// Mounts the federationapi's internal routes, so other nodes reach `addr` over the bridge.
pub fn serve_remote(cfg: &mut web::ServiceConfig, addr: Addr<FederationApiActor>) {
    serve::<QueryServerKeys, _, _, _>(cfg, addr.clone());
    serve::<QueryLocalServerKeys, _, _, _>(cfg, addr.clone());
    serve::<QueryNotaryKeys, _, _, _>(cfg, addr.clone());
    serve::<PerformJoin, _, _, _>(cfg, addr.clone());
    serve::<PerformLeave, _, _, _>(cfg, addr.clone());
    serve::<PerformKnock, _, _, _>(cfg, addr.clone());
    serve::<PerformInvite, _, _, _>(cfg, addr.clone());
    serve::<QueryRemoteAlias, _, _, _>(cfg, addr.clone());
    serve::<QueryRemoteProfile, _, _, _>(cfg, addr.clone());
    serve::<QueryRemotePublicRooms, _, _, _>(cfg, addr.clone());
    serve::<InputTransaction, _, _, _>(cfg, addr.clone());
    serve::<InputTyping, _, _, _>(cfg, addr.clone());
    serve::<InputSendToDevice, _, _, _>(cfg, addr.clone());
    serve::<InputServerUp, _, _, _>(cfg, addr.clone());
    serve::<QueryBackfill, _, _, _>(cfg, addr);
}

#[cfg(test)]
mod tests {
    use super::messages::*;
    use serde::de::DeserializeOwned;
    use serde::Serialize;
    use std::collections::BTreeMap;

    fn round_trip<M: Serialize + DeserializeOwned + std::fmt::Debug>(m: M) {
        let json = serde_json::to_string(&m).unwrap();
        let back: M = serde_json::from_str(&json).unwrap();
        assert_eq!(format!("{m:?}"), format!("{back:?}"));
    }

    #[test]
    fn every_message_survives_serde() {
        let server: ruma::OwnedServerName = "a.test".try_into().unwrap();
        let key: ruma::OwnedServerSigningKeyId = "ed25519:k".try_into().unwrap();
        round_trip(QueryServerKeys {
            server_name: server.clone(),
            key_ids: vec![key.clone()],
            minimum_valid_until_ts: 5,
        });
        round_trip(QueryLocalServerKeys {});
        round_trip(QueryBackfill {
            room_id: "!r:a.test".into(),
            servers: vec!["a.test".into()],
            event_ids: vec!["$e".into()],
            limit: 50,
        });
        round_trip(QueryNotaryKeys {
            servers: BTreeMap::from([(
                server,
                KeyQuery {
                    key_ids: vec![key],
                    minimum_valid_until_ts: 7,
                },
            )]),
        });
        round_trip(PerformJoin {
            room_id: "!r:a.test".into(),
            user_id: "@u:b.test".into(),
            servers: vec!["a.test".into()],
            content: serde_json::json!({"displayname": "U"}),
        });
        round_trip(JoinedRoom {
            server: "a.test".into(),
            room_version: "11".into(),
            join_event: serde_json::json!({"type": "m.room.member"}),
            state: vec![serde_json::json!({})],
            auth_chain: vec![],
        });
        round_trip(PerformLeave {
            room_id: "!r:a.test".into(),
            user_id: "@u:b.test".into(),
            servers: vec!["a.test".into()],
            content: serde_json::json!({}),
        });
        round_trip(PerformKnock {
            room_id: "!r:a.test".into(),
            user_id: "@u:b.test".into(),
            servers: vec!["a.test".into()],
            content: serde_json::json!({"reason": "let me in"}),
        });
        round_trip(KnockedRoom {
            server: "a.test".into(),
            room_version: "10".into(),
            knock_event: serde_json::json!({"type": "m.room.member"}),
            knock_room_state: vec![serde_json::json!({"type": "m.room.create"})],
        });
        round_trip(PerformInvite {
            room_version: "12".into(),
            template: serde_json::json!({"type": "m.room.member"}),
            invite_room_state: vec![serde_json::json!({"type": "m.room.name"})],
        });
        round_trip(QueryRemoteProfile {
            user_id: "@u:b.test".try_into().unwrap(),
            field: Some("displayname".into()),
        });
        round_trip(QueryRemotePublicRooms {
            server: "b.test".try_into().unwrap(),
            limit: Some(5),
            since: Some("t".into()),
            filter: Some(serde_json::json!({"generic_search_term": "x"})),
            include_all_networks: true,
            third_party_instance_id: None,
        });
        round_trip(RemoteProfile {
            displayname: Some("U".into()),
            avatar_url: None,
        });
        round_trip(QueryRemoteAlias {
            alias: "#a:a.test".into(),
        });
        round_trip(RemoteAlias {
            room_id: "!r:a.test".into(),
            servers: vec!["a.test".into()],
        });
        round_trip(InputTransaction {
            origin: "b.test".try_into().unwrap(),
            txn_id: "t1".into(),
            pdus: vec![serde_json::json!({"type": "m.room.message"})],
            edus: vec![serde_json::json!({"edu_type": "m.typing", "content": {}})],
        });
        round_trip(TransactionResponse {
            pdus: BTreeMap::from([
                ("$a".to_owned(), PduResult::default()),
                (
                    "$b".to_owned(),
                    PduResult {
                        error: Some("bad".into()),
                    },
                ),
            ]),
        });
        round_trip(InputTyping {
            room_id: "!r:a.test".into(),
            user_id: "@u:a.test".into(),
            typing: true,
        });
        round_trip(InputSendToDevice {
            sender: "@u:a.test".into(),
            event_type: "m.room_key_request".into(),
            message_id: "m1".into(),
            messages: BTreeMap::from([(
                "@v:b.test".to_owned(),
                BTreeMap::from([("*".to_owned(), serde_json::json!({"a": 1}))]),
            )]),
        });
        round_trip(InputServerUp {
            server_name: "b.test".try_into().unwrap(),
        });
        round_trip(ServerKeys {
            keys: BTreeMap::from([(
                "ed25519:k".to_owned(),
                ServerKey {
                    key: "K".into(),
                    valid_until_ts: 1,
                    expired_ts: None,
                },
            )]),
        });
    }
}
