//! `PerformKnock`: knocks on a room of another server (`make_knock`, then `send_knock` v1).

use super::membership::{bad_answer, candidates, enc, make_and_send, no_server};
use crate::actors::federationapi::actor::Deps;
use crate::actors::federationapi::messages::{KnockedRoom, PerformKnock};
use crate::actors::federationapi::FederationApiError;
use crate::room_versions::STABLE;
use serde_json::Value;

pub async fn handle(deps: &Deps, msg: PerformKnock) -> Result<KnockedRoom, FederationApiError> {
    let mut last = no_server("knock");
    for server in candidates(deps, &msg.servers) {
        match knock_through(deps, &msg, &server).await {
            Ok(knocked) => return Ok(knocked),
            Err(e) => {
                tracing::info!(server = %server, room_id = %msg.room_id, error = %e, "knock through a server failed");
                last = e;
            }
        }
    }
    Err(last)
}

/// The room versions this server supports that have knocking (7 and up).
fn knock_versions() -> Vec<&'static str> {
    STABLE
        .iter()
        .copied()
        .filter(|v| crate::pdu::rules(v).is_ok_and(|(_, r)| r.authorization.knocking))
        .collect()
}

async fn knock_through(
    deps: &Deps,
    msg: &PerformKnock,
    server: &ruma::ServerName,
) -> Result<KnockedRoom, FederationApiError> {
    let name = server.as_str();
    let versions: Vec<String> = knock_versions()
        .iter()
        .map(|v| format!("ver={}", enc(v)))
        .collect();
    let exchanged = make_and_send(
        deps,
        server,
        (&msg.room_id, &msg.user_id),
        "knock",
        &format!("?{}", versions.join("&")),
        &msg.content,
    )
    .await?;
    if !knock_versions().contains(&exchanged.room_version.as_str()) {
        return Err(bad_answer(
            name,
            format!("room version {} has no knocking", exchanged.room_version),
        ));
    }
    let knock_room_state: Vec<Value> = exchanged.answer["knock_room_state"]
        .as_array()
        .ok_or_else(|| bad_answer(name, "the send_knock answer has no knock_room_state"))?
        .iter()
        .filter(|e| e["type"].is_string())
        .cloned()
        .collect();
    Ok(KnockedRoom {
        server: name.to_owned(),
        room_version: exchanged.room_version,
        knock_event: exchanged.sent,
        knock_room_state,
    })
}
