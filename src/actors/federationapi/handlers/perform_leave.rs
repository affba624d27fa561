//! `PerformLeave`: leaves a room through another server (`make_leave`, then `send_leave`
//! v2).

use super::membership::{bad_answer, candidates, enc, fill_template, no_server};
use crate::actors::federationapi::actor::Deps;
use crate::actors::federationapi::messages::PerformLeave;
use crate::actors::federationapi::FederationApiError;
use crate::room_versions::STABLE;
use serde_json::Value;

pub async fn handle(deps: &Deps, msg: PerformLeave) -> Result<Value, FederationApiError> {
    let mut last = no_server("leave");
    for server in candidates(deps, &msg.servers) {
        match leave_through(deps, &msg, &server).await {
            Ok(event) => return Ok(event),
            Err(e) => {
                tracing::info!(server = %server, room_id = %msg.room_id, error = %e, "leave through a server failed");
                last = e;
            }
        }
    }
    Err(last)
}

async fn leave_through(
    deps: &Deps,
    msg: &PerformLeave,
    server: &ruma::ServerName,
) -> Result<Value, FederationApiError> {
    let name = server.as_str();
    let path = format!(
        "/_matrix/federation/v1/make_leave/{}/{}",
        enc(&msg.room_id),
        enc(&msg.user_id)
    );
    let made = deps.client.get(server, &path).await?;
    let room_version = made["room_version"].as_str().unwrap_or("1").to_owned();
    if !STABLE.contains(&room_version.as_str()) {
        return Err(bad_answer(
            name,
            format!("room version {room_version} is not supported here"),
        ));
    }
    let pdu = fill_template(
        deps,
        name,
        &room_version,
        &made["event"],
        (&msg.room_id, &msg.user_id, &msg.user_id),
        "leave",
        &msg.content,
    )?;
    let path = format!(
        "/_matrix/federation/v2/send_leave/{}/{}",
        enc(&msg.room_id),
        enc(pdu.event_id.as_str())
    );
    let body = serde_json::to_value(&pdu.json).map_err(|e| FederationApiError::internal(e))?;
    deps.client
        .json(http::Method::PUT, server, &path, Some(&body), true, None)
        .await?;
    Ok(body)
}
