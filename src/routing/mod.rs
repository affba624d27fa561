//! The client API (and the few federation endpoints served without federation): validates a request, sends messages to components, maps the reply to a
//! response. Routing never touches storage.

pub mod client;
pub mod error;
pub mod federation;
pub mod guest;
pub mod ratelimit;
pub mod ruma;
pub mod uia;

use crate::actors::roomserver::RoomserverHandle;
use crate::actors::syncapi::SyncApiHandle;
use crate::actors::userapi::UserApiHandle;
use crate::config::Config;
use std::sync::Arc;

/// What every endpoint may use, shared by all HTTP workers.
pub struct AppState {
    pub config: Arc<Config>,
    pub userapi: UserApiHandle,
    pub roomserver: RoomserverHandle,
    pub syncapi: SyncApiHandle,
    pub uia: uia::UiaSessions,
    pub limiter: ratelimit::RateLimiter,
    /// Calls to identity servers (third-party invites).
    pub identity: crate::identity::IdentityClient,
}

impl AppState {
    pub fn new(
        config: Arc<Config>,
        userapi: UserApiHandle,
        roomserver: RoomserverHandle,
        syncapi: SyncApiHandle,
        denylist: Arc<crate::net::IpDenylist>,
    ) -> AppState {
        AppState {
            uia: uia::UiaSessions::new(std::time::Duration::from_millis(
                config.auth.uia_session_lifetime_ms,
            )),
            limiter: ratelimit::RateLimiter::new(&config.rate_limit),
            identity: crate::identity::IdentityClient::new(config.identity.clone(), denylist),
            config,
            userapi,
            roomserver,
            syncapi,
        }
    }

    /// The server name as a ruma type (validated when the config loaded).
    pub fn server_name(&self) -> &str {
        &self.config.server.name
    }
}
