//! `QueryBackfill`: history of a room from one of its other servers
//! (`GET /_matrix/federation/v1/backfill/{roomId}?v=...&limit=`), for the roomserver's
//! `PerformBackfill`. The servers are asked in turn until one answers; what it answers is
//! checked by the roomserver.

use super::membership::enc;
use crate::actors::federationapi::actor::Deps;
use crate::actors::federationapi::messages::QueryBackfill;
use crate::actors::federationapi::FederationApiError;
use serde_json::Value;
use std::time::Duration;

/// The most events asked for at once (what servers serve at most, Synapse's 100).
const MAX_LIMIT: u64 = 100;
/// The most servers asked for one backfill.
const MAX_SERVERS: usize = 5;
/// The most backward extremities named in one request.
const MAX_EVENT_IDS: usize = 20;
/// How long one server may take to answer.
const TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer read (100 PDUs of at most 64 KiB, and slack).
const ANSWER_BYTES: usize = 8 * 1024 * 1024;

pub async fn handle(deps: &Deps, msg: QueryBackfill) -> Result<Vec<Value>, FederationApiError> {
    let servers: Vec<&String> = msg
        .servers
        .iter()
        .filter(|s| s.as_str() != deps.server_name.as_str())
        .take(MAX_SERVERS)
        .collect();
    if servers.is_empty() || msg.event_ids.is_empty() {
        return Err(FederationApiError::BadRequest(
            "a backfill needs servers to ask and events to start from".into(),
        ));
    }
    let mut path = format!(
        "/_matrix/federation/v1/backfill/{}?limit={}",
        enc(&msg.room_id),
        msg.limit.clamp(1, MAX_LIMIT)
    );
    for id in msg.event_ids.iter().take(MAX_EVENT_IDS) {
        path.push_str("&v=");
        path.push_str(&enc(id));
    }
    let mut last = None;
    for server in servers {
        let Ok(name) = <&ruma::ServerName>::try_from(server.as_str()) else {
            continue;
        };
        let call = deps.client.json(
            http::Method::GET,
            name,
            &path,
            None,
            true,
            Some(ANSWER_BYTES),
        );
        let answer = match tokio::time::timeout(TIMEOUT, call).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(e)) => {
                tracing::info!(room_id = msg.room_id, server, error = %e, "backfill refused");
                last = Some(FederationApiError::from(e));
                continue;
            }
            Err(_) => {
                tracing::info!(room_id = msg.room_id, server, "backfill timed out");
                last = Some(FederationApiError::Remote {
                    server: server.clone(),
                    status: 0,
                    errcode: String::new(),
                    error: "no answer in time".into(),
                });
                continue;
            }
        };
        let Some(pdus) = answer.get("pdus").and_then(Value::as_array) else {
            tracing::info!(
                room_id = msg.room_id,
                server,
                "backfill answer without pdus"
            );
            last = Some(FederationApiError::Remote {
                server: server.clone(),
                status: 0,
                errcode: String::new(),
                error: "not a /backfill answer".into(),
            });
            continue;
        };
        return Ok(pdus
            .iter()
            .filter(|p| {
                p.get("room_id").and_then(Value::as_str) == Some(msg.room_id.as_str())
                // Version 12 create events name no room; the roomserver checks them.
                || p.get("type").and_then(Value::as_str) == Some("m.room.create")
            })
            .take(MAX_LIMIT as usize)
            .cloned()
            .collect());
    }
    Err(last.unwrap_or_else(|| {
        FederationApiError::BadRequest("no server to ask for a backfill".into())
    }))
}
