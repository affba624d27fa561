//! The client API and the federation API: validates a request, sends messages to components, maps the reply to a
//! response. Routing never touches storage.

pub mod client;
pub mod error;
pub mod federation;
pub mod guest;
pub mod ratelimit;
pub mod ruma;
pub mod uia;

use crate::actors::federationapi::FederationApiHandle;
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
    /// Server keys (the key endpoints, the `X-Matrix` check of signed requests).
    pub federationapi: FederationApiHandle,
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
        federationapi: FederationApiHandle,
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
            federationapi,
        }
    }

    /// The server name as a ruma type (validated when the config loaded).
    pub fn server_name(&self) -> &str {
        &self.config.server.name
    }
}
