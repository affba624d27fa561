//! Discovery: versions, capabilities, `.well-known`.

use crate::routing::ruma::{Ruma, RumaResponse, RumaResult};
use crate::routing::AppState;
use actix_web::{web, HttpResponse};
use ruma::api::client::discovery::get_capabilities::v3 as caps;
use ruma::api::client::discovery::{discover_homeserver, get_supported_versions};
use serde_json::json;

/// The spec versions whose client API myelin serves, the same list as Synapse: the r0 and v3
/// endpoint paths, with the shapes of v1.1 onwards.
pub const SPEC_VERSIONS: &[&str] = &[
    "r0.0.1", "r0.1.0", "r0.2.0", "r0.3.0", "r0.4.0", "r0.5.0", "r0.6.0", "r0.6.1", "v1.1", "v1.2",
    "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10", "v1.11", "v1.12",
];

/// # `GET /_matrix/client/versions`
pub async fn get_supported_versions(
    _req: Ruma<get_supported_versions::Request>,
) -> RumaResult<get_supported_versions::Response> {
    Ok(RumaResponse(get_supported_versions::Response::new(
        SPEC_VERSIONS.iter().map(|v| v.to_string()).collect(),
    )))
}

/// # `GET /.well-known/matrix/client`
pub async fn discover_homeserver(
    state: web::Data<AppState>,
    _req: Ruma<discover_homeserver::Request>,
) -> RumaResult<discover_homeserver::Response> {
    Ok(RumaResponse(discover_homeserver::Response::new(
        discover_homeserver::HomeserverInfo::new(state.config.public_baseurl()),
    )))
}

/// # `GET /.well-known/matrix/server`
pub async fn well_known_server(state: web::Data<AppState>) -> HttpResponse {
    let server = &state.config.server;
    let delegated = if server.federation_address.is_empty() {
        server.name.clone()
    } else {
        server.federation_address.clone()
    };
    HttpResponse::Ok().json(json!({ "m.server": delegated }))
}

/// # `GET /_matrix/client/v3/capabilities`
pub async fn get_capabilities(
    _req: Ruma<caps::Request>,
) -> Result<HttpResponse, crate::routing::error::MatrixError> {
    // ruma leaves out capabilities at their default values; clients read them more
    // reliably when present, so the body is written out whole.
    Ok(HttpResponse::Ok().json(json!({
        "capabilities": {
            "m.change_password": { "enabled": true },
            "m.set_displayname": { "enabled": true },
            "m.set_avatar_url": { "enabled": true },
            "m.3pid_changes": { "enabled": false },
            "m.get_login_token": { "enabled": false },
            "m.room_versions": crate::room_versions::capability(),
        }
    })))
}
