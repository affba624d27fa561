//! `/_matrix/federation/v1/version`: which server software this is. Unauthenticated, as the
//! spec says.

use crate::routing::ruma::{Ruma, RumaResponse, RumaResult};
use ruma::api::federation::discovery::get_server_version;

/// # `GET /_matrix/federation/v1/version`
pub async fn get_server_version(
    _req: Ruma<get_server_version::v1::Request>,
) -> RumaResult<get_server_version::v1::Response> {
    let mut server = get_server_version::v1::Server::new();
    server.name = Some("myelin".to_owned());
    server.version = Some(env!("CARGO_PKG_VERSION").to_owned());
    let mut response = get_server_version::v1::Response::new();
    response.server = Some(server);
    Ok(RumaResponse(response))
}
