//! The userapi: accounts, devices and access tokens, profiles, account data and filters.
//!
//! Owns the `userapi_*` tables. Called by the client API routing (every message in
//! `messages.rs`); emits `UserApiOutput` on the `userapi` stream (account data, for the
//! syncapi).
//! Passwords are hashed by [`hasher::PasswordHasher`] on a `SyncArbiter`.

mod actor;
pub mod error;
mod handlers;
pub mod hasher;
pub mod messages;
pub(crate) mod storage;
mod token_cache;
mod tokens;

pub use actor::UserApiActor;
pub use error::UserApiError;

use crate::actors::bridge::{serve, Handle};
use crate::actors::executors::Executors;
use crate::storage::Db;
use actix::prelude::*;
use actix_web::web;
use messages::*;
use std::collections::HashMap;

/// The userapi's output stream (`UserApiOutput`: account data changes, deleted devices),
/// keyed by user ID.
pub const ACCOUNT_DATA_STREAM: &str = "userapi";

/// How callers reach the userapi, here or on another node.
pub type UserApiHandle = Handle<UserApiActor>;

/// What the userapi needs to start.
pub struct UserApiConfig {
    pub server_name: String,
    pub access_token_lifetime_ms: u64,
    pub hasher_threads: usize,
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
}

/// Starts the userapi actor on one of `exec`'s arbiters (its handlers run on whichever is
/// next), and its hasher threads.
pub async fn start(
    db: Db,
    bus: crate::bus::Bus,
    config: &UserApiConfig,
    exec: &Executors,
) -> Result<Addr<UserApiActor>, UserApiError> {
    let hasher = hasher::PasswordHasher::start(
        config.hasher_threads,
        config.argon2_memory_kib,
        config.argon2_iterations,
    )
    .map_err(UserApiError::Internal)?;
    let dummy_hash = hasher
        .send(hasher::HashPassword(tokens::random_token("")))
        .await
        .map_err(|e| UserApiError::Internal(e.to_string()))?
        .map_err(UserApiError::Internal)?;
    let deps = actor::Deps {
        db,
        bus,
        hasher,
        server_name: config.server_name.as_str().into(),
        access_token_lifetime_ms: config.access_token_lifetime_ms,
        dummy_hash: dummy_hash.into(),
        tokens: Default::default(),
    };
    let handlers = exec.clone();
    Ok(UserApiActor::start_in_arbiter(&exec.next(), move |_| {
        UserApiActor {
            deps,
            seen: HashMap::new(),
            exec: handlers,
        }
    }))
}

/// Mounts the userapi's internal routes, so other nodes reach `addr` over the HTTP bridge.
pub fn serve_remote(cfg: &mut web::ServiceConfig, addr: Addr<UserApiActor>) {
    serve::<QueryAccessToken, _, _, _>(cfg, addr.clone());
    serve::<QueryAccountAvailability, _, _, _>(cfg, addr.clone());
    serve::<QueryPasswordCheck, _, _, _>(cfg, addr.clone());
    serve::<QueryDevices, _, _, _>(cfg, addr.clone());
    serve::<QueryDevice, _, _, _>(cfg, addr.clone());
    serve::<QueryProfile, _, _, _>(cfg, addr.clone());
    serve::<QueryAccountData, _, _, _>(cfg, addr.clone());
    serve::<QueryFilter, _, _, _>(cfg, addr.clone());
    serve::<QueryPushRules, _, _, _>(cfg, addr.clone());
    serve::<QueryOpenIdToken, _, _, _>(cfg, addr.clone());
    serve::<PerformAccountCreation, _, _, _>(cfg, addr.clone());
    serve::<PerformDeviceCreation, _, _, _>(cfg, addr.clone());
    serve::<PerformTokenRefresh, _, _, _>(cfg, addr.clone());
    serve::<PerformPasswordUpdate, _, _, _>(cfg, addr.clone());
    serve::<PerformAccountDeactivation, _, _, _>(cfg, addr.clone());
    serve::<PerformDeviceUpdate, _, _, _>(cfg, addr.clone());
    serve::<PerformDeviceDeletion, _, _, _>(cfg, addr.clone());
    serve::<PerformProfileUpdate, _, _, _>(cfg, addr.clone());
    serve::<PerformAccountDataUpdate, _, _, _>(cfg, addr.clone());
    serve::<PerformRoomTagUpdate, _, _, _>(cfg, addr.clone());
    serve::<PerformFilterCreation, _, _, _>(cfg, addr.clone());
    serve::<PerformPushRuleUpdate, _, _, _>(cfg, addr.clone());
    serve::<PerformOpenIdTokenCreation, _, _, _>(cfg, addr.clone());
    serve::<PerformGuestUpgrade, _, _, _>(cfg, addr.clone());
    serve::<PerformRoomUpgradeCopy, _, _, _>(cfg, addr.clone());
    serve::<InputDeviceActivity, _, _, _>(cfg, addr);
}

#[cfg(test)]
mod tests {
    use super::messages::*;
    use serde::de::DeserializeOwned;
    use serde::Serialize;

    fn round_trip<M: Serialize + DeserializeOwned + std::fmt::Debug>(m: M) {
        let json = serde_json::to_string(&m).unwrap();
        let back: M = serde_json::from_str(&json).unwrap();
        assert_eq!(format!("{m:?}"), format!("{back:?}"));
    }

    #[test]
    fn every_message_survives_serde() {
        let l = || "alice".to_string();
        round_trip(QueryAccessToken {
            access_token: "t".into(),
        });
        round_trip(QueryAccountAvailability { localpart: l() });
        round_trip(QueryPasswordCheck {
            localpart: l(),
            password: "p".into(),
        });
        round_trip(QueryDevices { localpart: l() });
        round_trip(QueryDevice {
            localpart: l(),
            device_id: "D".into(),
        });
        round_trip(QueryProfile { localpart: l() });
        round_trip(QueryAccountData {
            localpart: l(),
            room_id: Some("!r:x".into()),
            data_type: "t".into(),
        });
        round_trip(QueryFilter {
            localpart: l(),
            filter_id: "0".into(),
        });
        round_trip(PerformAccountCreation {
            localpart: l(),
            password: Some("p".into()),
            is_guest: false,
            display_name: None,
        });
        round_trip(PerformDeviceCreation {
            localpart: l(),
            device_id: None,
            display_name: Some("d".into()),
            ip: None,
            user_agent: None,
            refresh_token: true,
            password_fingerprint: Some("f".into()),
        });
        round_trip(PerformTokenRefresh {
            refresh_token: "r".into(),
        });
        round_trip(PerformPasswordUpdate {
            localpart: l(),
            new_password: "p".into(),
            logout_devices: true,
            keep_device: None,
        });
        round_trip(PerformAccountDeactivation {
            localpart: l(),
            erase: true,
        });
        round_trip(PerformDeviceUpdate {
            localpart: l(),
            device_id: "D".into(),
            display_name: None,
        });
        round_trip(PerformDeviceDeletion {
            localpart: l(),
            device_ids: Some(vec!["D".into()]),
            except: None,
        });
        round_trip(PerformProfileUpdate {
            localpart: l(),
            field: ProfileField::AvatarUrl,
            value: None,
        });
        round_trip(PerformAccountDataUpdate {
            localpart: l(),
            room_id: None,
            data_type: "t".into(),
            content: "{}".into(),
        });
        round_trip(PerformFilterCreation {
            localpart: l(),
            filter: "{}".into(),
        });
        round_trip(QueryPushRules { localpart: l() });
        round_trip(QueryOpenIdToken { token: "t".into() });
        round_trip(PerformRoomUpgradeCopy {
            localpart: l(),
            old_room_id: "!a:x".into(),
            new_room_id: "!b:x".into(),
        });
        round_trip(PerformGuestUpgrade {
            localpart: l(),
            password: "p".into(),
        });
        round_trip(PerformOpenIdTokenCreation {
            localpart: l(),
            lifetime_ms: 1,
        });
        round_trip(PerformPushRuleUpdate {
            localpart: l(),
            change: PushRuleChange::Set {
                kind: ruma::push::RuleKind::Override,
                rule_id: "r".into(),
                actions: serde_json::from_value(serde_json::json!(
                    ["notify", {"set_tweak": "sound", "value": "default"}]
                ))
                .unwrap(),
                conditions: serde_json::from_value(serde_json::json!(
                    [{"kind": "event_match", "key": "type", "pattern": "m.x"}]
                ))
                .unwrap(),
                pattern: None,
                before: None,
                after: Some("q".into()),
            },
        });
        round_trip(PerformPushRuleUpdate {
            localpart: l(),
            change: PushRuleChange::Enabled {
                kind: ruma::push::RuleKind::Content,
                rule_id: ".m.rule.contains_user_name".into(),
                enabled: false,
            },
        });
        round_trip(InputDeviceActivity {
            localpart: l(),
            device_id: "D".into(),
            ip: None,
            user_agent: None,
        });
        round_trip(TokenLookup::Valid(TokenOwner {
            user_id: "@a:x".into(),
            localpart: l(),
            device_id: "D".into(),
            is_guest: false,
        }));
        round_trip(Err::<(), _>(super::UserApiError::UserInUse));
    }
}

#[cfg(test)]
mod actor_tests {
    use super::messages::*;
    use super::{start, UserApiConfig, UserApiError};
    use crate::actors::bridge::Handle;
    use crate::storage::testing::*;

    #[actix_web::test]
    async fn a_login_checked_before_a_password_change_cannot_outlive_it() {
        for backend in BACKENDS {
            let t = test_db(backend).await;
            let config = UserApiConfig {
                server_name: "test.local".into(),
                access_token_lifetime_ms: 60_000,
                hasher_threads: 1,
                argon2_memory_kib: 64,
                argon2_iterations: 1,
            };
            let api = Handle::Local(
                start(
                    t.db.clone(),
                    crate::bus::Bus::new(),
                    &config,
                    &super::Executors::start(2),
                )
                .await
                .unwrap(),
            );
            api.send(PerformAccountCreation {
                localpart: "alice".into(),
                password: Some("old".into()),
                is_guest: false,
                display_name: None,
            })
            .await
            .unwrap();
            let PasswordCheck::Valid {
                password_fingerprint,
                ..
            } = api
                .send(QueryPasswordCheck {
                    localpart: "alice".into(),
                    password: "old".into(),
                })
                .await
                .unwrap()
            else {
                panic!("password should verify");
            };
            // The password changes between the check and the session.
            api.send(PerformPasswordUpdate {
                localpart: "alice".into(),
                new_password: "new".into(),
                logout_devices: true,
                keep_device: None,
            })
            .await
            .unwrap();
            let session = api
                .send(PerformDeviceCreation {
                    localpart: "alice".into(),
                    device_id: None,
                    display_name: None,
                    ip: None,
                    user_agent: None,
                    refresh_token: false,
                    password_fingerprint: Some(password_fingerprint),
                })
                .await;
            assert!(
                matches!(session, Err(UserApiError::CredentialsChanged)),
                "{backend}: {session:?}"
            );
            assert!(api
                .send(QueryDevices {
                    localpart: "alice".into()
                })
                .await
                .unwrap()
                .is_empty());
        }
    }
}
