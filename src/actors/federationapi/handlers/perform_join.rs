//! `PerformJoin`: joins a room on another server (`make_join`, then `send_join` v2).

use super::membership::{bad_answer, candidates, enc, make_and_send, no_server, Exchanged};
use crate::actors::federationapi::actor::Deps;
use crate::actors::federationapi::messages::{JoinedRoom, PerformJoin};
use crate::actors::federationapi::FederationApiError;
use crate::room_versions::STABLE;
use serde_json::Value;

pub async fn handle(deps: &Deps, msg: PerformJoin) -> Result<JoinedRoom, FederationApiError> {
    let mut last = no_server("join");
    for server in candidates(deps, &msg.servers) {
        match join_through(deps, &msg, &server).await {
            Ok(joined) => return Ok(joined),
            Err(e) => {
                tracing::info!(server = %server, room_id = %msg.room_id, error = %e, "join through a server failed");
                last = e;
            }
        }
    }
    Err(last)
}

async fn join_through(
    deps: &Deps,
    msg: &PerformJoin,
    server: &ruma::ServerName,
) -> Result<JoinedRoom, FederationApiError> {
    let name = server.as_str();
    let versions: Vec<String> = STABLE.iter().map(|v| format!("ver={}", enc(v))).collect();
    let Exchanged {
        room_version,
        pdu,
        sent: body,
        answer,
    } = make_and_send(
        deps,
        server,
        (&msg.room_id, &msg.user_id),
        "join",
        &format!("?{}", versions.join("&")),
        &msg.content,
    )
    .await?;
    let list = |k: &str| -> Result<Vec<Value>, FederationApiError> {
        answer[k]
            .as_array()
            .cloned()
            .ok_or_else(|| bad_answer(name, format!("the send_join answer has no {k}")))
    };
    // The resident server's copy may carry its signature too (restricted rooms need it).
    let join_event = match answer.get("event") {
        Some(e)
            if serde_json::from_value::<ruma::CanonicalJsonObject>(e.clone())
                .ok()
                .and_then(|o| crate::pdu::event_id_of(&o, &room_version).ok())
                .as_ref()
                == Some(&pdu.event_id) =>
        {
            e.clone()
        }
        _ => body,
    };
    Ok(JoinedRoom {
        server: name.to_owned(),
        room_version,
        join_event,
        state: list("state")?,
        auth_chain: list("auth_chain")?,
    })
}
