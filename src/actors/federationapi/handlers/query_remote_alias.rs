//! `QueryRemoteAlias`: another server's alias, asked of that server
//! (`GET /_matrix/federation/v1/query/directory`).

use super::membership::{bad_answer, enc};
use crate::actors::federationapi::actor::Deps;
use crate::actors::federationapi::messages::{QueryRemoteAlias, RemoteAlias};
use crate::actors::federationapi::FederationApiError;
use crate::federation::client::FederationError;

pub async fn handle(
    deps: &Deps,
    msg: QueryRemoteAlias,
) -> Result<Option<RemoteAlias>, FederationApiError> {
    let alias = ruma::OwnedRoomAliasId::try_from(msg.alias.as_str())
        .map_err(|e| FederationApiError::BadRequest(e.to_string()))?;
    let server = alias.server_name();
    let path = format!(
        "/_matrix/federation/v1/query/directory?room_alias={}",
        enc(alias.as_str())
    );
    let answer = match deps.client.get(server, &path).await {
        Ok(a) => a,
        Err(FederationError::Refused { status: 404, .. }) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let room_id = answer["room_id"]
        .as_str()
        .filter(|r| ruma::RoomId::parse(r).is_ok())
        .ok_or_else(|| bad_answer(server.as_str(), "the directory answer has no room_id"))?;
    let servers = answer["servers"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    Ok(Some(RemoteAlias {
        room_id: room_id.to_owned(),
        servers,
    }))
}
