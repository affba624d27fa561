//! The federationapi: this server's side of federation with other homeservers. For now its
//! foundation: server keys. It owns the `federationapi_*` tables (the cache of other
//! servers' keys), holds the signing key and the outbound [`FederationClient`].
//!
//! Called by routing: the key endpoints (`QueryLocalServerKeys` for
//! `/_matrix/key/v2/server`, `QueryNotaryKeys` for `/_matrix/key/v2/query`) and the
//! `X-Matrix` check of every signed federation request (`QueryServerKeys`), and the client
//! API's calls to other servers for remote rooms (`PerformJoin`, `PerformLeave`,
//! `PerformInvite`, `QueryRemoteAlias`: the requests and the checks of what comes back that
//! only it can make; the roomserver checks the events). It emits no stream yet. Outgoing
//! queues, incoming transactions and the rest of issue 11 come here.

mod actor;
pub mod error;
mod handlers;
pub mod messages;
pub(crate) mod storage;

pub use actor::FederationApiActor;
pub use error::FederationApiError;

use crate::actors::bridge::{serve, Handle};
use crate::actors::executors::Executors;
use crate::config::{OldSigningKey, TrustedKeyServer};
use crate::federation::client::FederationClient;
use crate::signing_key::SigningKey;
use crate::storage::Db;
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
}

/// Starts the federationapi actor on one of `exec`'s arbiters (its handlers run on
/// whichever is next).
pub fn start(db: Db, config: FederationApiConfig, exec: &Executors) -> Addr<FederationApiActor> {
    let deps = actor::Deps {
        db,
        server_name: config.server_name,
        key: config.key,
        client: config.client,
        key_validity: config.key_validity,
        old_keys: Arc::new(config.old_keys),
        notaries: Arc::new(config.notaries),
        last_fetch: Default::default(),
    };
    let handlers = exec.clone();
    FederationApiActor::start_in_arbiter(&exec.next(), move |_| FederationApiActor {
        deps,
        exec: handlers,
    })
}

/// Mounts the federationapi's internal routes, so other nodes reach `addr` over the bridge.
pub fn serve_remote(cfg: &mut web::ServiceConfig, addr: Addr<FederationApiActor>) {
    serve::<QueryServerKeys, _, _, _>(cfg, addr.clone());
    serve::<QueryLocalServerKeys, _, _, _>(cfg, addr.clone());
    serve::<QueryNotaryKeys, _, _, _>(cfg, addr.clone());
    serve::<PerformJoin, _, _, _>(cfg, addr.clone());
    serve::<PerformLeave, _, _, _>(cfg, addr.clone());
    serve::<PerformInvite, _, _, _>(cfg, addr.clone());
    serve::<QueryRemoteAlias, _, _, _>(cfg, addr);
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
        round_trip(PerformInvite {
            room_version: "12".into(),
            template: serde_json::json!({"type": "m.room.member"}),
            invite_room_state: vec![serde_json::json!({"type": "m.room.name"})],
        });
        round_trip(QueryRemoteAlias {
            alias: "#a:a.test".into(),
        });
        round_trip(RemoteAlias {
            room_id: "!r:a.test".into(),
            servers: vec!["a.test".into()],
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
