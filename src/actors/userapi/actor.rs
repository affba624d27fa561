//! The userapi actor: holds the database and the password hasher, and hands each message to
//! its handler in `handlers/`. Handlers run concurrently (`ResponseFuture`): nothing here
//! needs per-user ordering beyond what the database's constraints give.

use super::handlers;
use super::hasher::PasswordHasher;
use super::messages::*;
use crate::storage::Db;
use actix::prelude::*;
use std::collections::HashMap;
use std::sync::Arc;

/// What every handler may use; cheap to clone into each message's future.
#[derive(Clone)]
pub struct Deps {
    pub db: Db,
    /// Where account data changes are announced (the `userapi` stream).
    pub bus: crate::bus::Bus,
    pub hasher: Addr<PasswordHasher>,
    pub server_name: Arc<str>,
    /// Lifetime of access tokens that come with a refresh token, in ms.
    pub access_token_lifetime_ms: u64,
    /// A hash verified against when an account does not exist, so that a login for an
    /// unknown user takes as long as one with a wrong password.
    pub dummy_hash: Arc<str>,
    /// Access-token lookups, kept exact by every token change (see `token_cache`).
    pub tokens: Arc<super::token_cache::TokenCache>,
}

pub struct UserApiActor {
    pub(super) deps: Deps,
    /// Last (IP, time) written per device, to coalesce last-seen writes.
    pub(super) seen: HashMap<(String, String), (Option<String>, i64)>,
    /// Where the handlers run (see `actors::executors`).
    pub(super) exec: crate::actors::executors::Executors,
}

impl Actor for UserApiActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // Beyond the default of 16, so bursts queue instead of making senders wait.
        ctx.set_mailbox_capacity(1024);
    }
}

macro_rules! delegate {
    ($($msg:ident => $module:ident),+ $(,)?) => {$(
        impl Handler<$msg> for UserApiActor {
            type Result = ResponseFuture<<$msg as Message>::Result>;

            fn handle(&mut self, msg: $msg, _: &mut Context<Self>) -> Self::Result {
                let deps = self.deps.clone();
                Box::pin(self.exec.run(move || async move { handlers::$module::handle(&deps, msg).await }))
            }
        }
    )+};
}

/// The token lookup of every request is answered from a cache almost always: in place, on
/// the actor's own thread, since a hop to another would cost more than the lookup.
impl Handler<QueryAccessToken> for UserApiActor {
    type Result = ResponseFuture<<QueryAccessToken as Message>::Result>;

    fn handle(&mut self, msg: QueryAccessToken, _: &mut Context<Self>) -> Self::Result {
        let deps = self.deps.clone();
        Box::pin(async move { handlers::query_access_token::handle(&deps, msg).await })
    }
}

delegate!(
    QueryAccountAvailability => query_account_availability,
    QueryPasswordCheck => query_password_check,
    QueryDevices => query_devices,
    QueryDevice => query_device,
    QueryProfile => query_profile,
    QueryAccountData => query_account_data,
    QueryFilter => query_filter,
    QueryPushRules => query_push_rules,
    QueryOpenIdToken => query_open_id_token,
    PerformAccountCreation => perform_account_creation,
    PerformDeviceCreation => perform_device_creation,
    PerformTokenRefresh => perform_token_refresh,
    PerformPasswordUpdate => perform_password_update,
    PerformAccountDeactivation => perform_account_deactivation,
    PerformDeviceUpdate => perform_device_update,
    PerformDeviceDeletion => perform_device_deletion,
    PerformProfileUpdate => perform_profile_update,
    PerformAccountDataUpdate => perform_account_data_update,
    PerformRoomTagUpdate => perform_room_tag_update,
    PerformFilterCreation => perform_filter_creation,
    PerformPushRuleUpdate => perform_push_rule_update,
    PerformOpenIdTokenCreation => perform_open_id_token_creation,
    PerformGuestUpgrade => perform_guest_upgrade,
    PerformRoomUpgradeCopy => perform_room_upgrade_copy,
);

impl Handler<InputDeviceActivity> for UserApiActor {
    type Result = ResponseFuture<<InputDeviceActivity as Message>::Result>;

    fn handle(&mut self, msg: InputDeviceActivity, _: &mut Context<Self>) -> Self::Result {
        let now = crate::storage::now_ms();
        let key = (msg.localpart.clone(), msg.device_id.clone());
        let write = match self.seen.get(&key) {
            Some((ip, at)) => {
                *ip != msg.ip || now - at >= handlers::input_device_activity::COALESCE_MS
            }
            None => true,
        };
        if !write {
            return Box::pin(async { Ok(()) });
        }
        if self.seen.len() > 100_000 {
            self.seen.clear();
        }
        self.seen.insert(key, (msg.ip.clone(), now));
        let deps = self.deps.clone();
        Box::pin(async move { handlers::input_device_activity::handle(&deps, msg, now).await })
    }
}
