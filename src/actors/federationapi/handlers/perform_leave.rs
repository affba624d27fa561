//! `PerformLeave`: leaves a room through another server (`make_leave`, then `send_leave`
//! v2).

use super::membership::{candidates, make_and_send, no_server};
use crate::actors::federationapi::actor::Deps;
use crate::actors::federationapi::messages::PerformLeave;
use crate::actors::federationapi::FederationApiError;
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
    let exchanged = make_and_send(
        deps,
        server,
        (&msg.room_id, &msg.user_id),
        "leave",
        "",
        &msg.content,
    )
    .await?;
    Ok(exchanged.sent)
}
