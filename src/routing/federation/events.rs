//! The room DAG as other servers read it (signed requests): `/event`, `/state`,
//! `/state_ids`, `/event_auth`, `/backfill`, `/get_missing_events` and
//! `/timestamp_to_event`. Each checks the
//! room's server ACL for the origin ([`super::acl::ensure_allowed`]); the roomserver checks
//! that the origin may read the room (one of its users joined now, as Synapse's
//! `assert_host_in_room`, a `world_readable` room included: else 403 `M_FORBIDDEN`;
//! `/timestamp_to_event` too, where Synapse checks only the ACL) and serves the events it may not see by the history
//! visibility for servers redacted (`roomserver::server_reads`). Unknown rooms and events
//! are 404 `M_NOT_FOUND`. `/event`, `/backfill` and `/get_missing_events` also serve the
//! events of this server's erased accounts redacted (the syncapi knows which), as Synapse.

use super::acl;
use crate::actors::roomserver::messages::{
    QueryBackfillForServer, QueryEventAuthForServer, QueryEventByTimestampForServer,
    QueryEventForServer, QueryMissingEventsForServer, QueryStateForServer, QueryStateIdsForServer,
};
use crate::actors::syncapi::messages::QueryErasedUsers;
use crate::routing::error::MatrixError;
use crate::routing::ruma::Ruma;
use crate::routing::AppState;
use actix_web::{web, HttpResponse};
use ruma::api::federation::authorization::get_event_authorization;
use ruma::api::federation::backfill::get_backfill;
use ruma::api::federation::event::{
    get_event, get_event_by_timestamp, get_missing_events, get_room_state, get_room_state_ids,
};
use serde_json::{json, Value};

/// A transaction-shaped answer (`/event`, `/backfill`): this server as `origin`, now, and
/// the PDUs.
fn transaction(state: &AppState, pdus: Vec<Value>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "origin": state.server_name(),
        "origin_server_ts": crate::storage::now_ms(),
        "pdus": pdus,
    }))
}

/// Redacts (by `room_version`'s rules) the PDUs sent by accounts of this server that were
/// erased (Synapse's `filter_out_erased_senders`).
async fn redact_erased(
    state: &AppState,
    room_version: &str,
    pdus: &mut [Value],
) -> Result<(), MatrixError> {
    let ours = state.server_name();
    let mut senders: Vec<String> = pdus
        .iter()
        .filter_map(|p| p["sender"].as_str())
        .filter(|s| s.split_once(':').map(|(_, server)| server) == Some(ours))
        .map(str::to_owned)
        .collect();
    senders.sort();
    senders.dedup();
    if senders.is_empty() {
        return Ok(());
    }
    let erased = state
        .syncapi
        .send(QueryErasedUsers { user_ids: senders })
        .await?;
    if erased.is_empty() {
        return Ok(());
    }
    for pdu in pdus.iter_mut() {
        if pdu["sender"]
            .as_str()
            .is_some_and(|s| erased.iter().any(|e| e == s))
        {
            let object: ruma::CanonicalJsonObject =
                serde_json::from_value(pdu.take()).map_err(|e| MatrixError::internal(e))?;
            let redacted =
                crate::pdu::redact(object, room_version).map_err(|e| MatrixError::internal(e))?;
            *pdu = serde_json::to_value(redacted).map_err(|e| MatrixError::internal(e))?;
        }
    }
    Ok(())
}

/// # `GET /_matrix/federation/v1/event/{eventId}`
///
/// One event, as the origin may see it; 404 when it is not stored here. The ACL of the
/// event's room applies too.
pub async fn get_event(
    state: web::Data<AppState>,
    req: Ruma<get_event::v1::Request>,
) -> Result<HttpResponse, MatrixError> {
    let origin = req.sender.as_str();
    let found = state
        .roomserver
        .send(QueryEventForServer {
            event_id: req.body.event_id.to_string(),
            server_name: origin.to_owned(),
        })
        .await?
        .ok_or_else(|| MatrixError::not_found("Event not found"))?;
    acl::ensure_allowed(&state, &found.room_id, origin).await?;
    let mut pdus = vec![found.pdu];
    redact_erased(&state, &found.room_version, &mut pdus).await?;
    Ok(transaction(&state, pdus))
}

/// # `GET /_matrix/federation/v1/state/{roomId}`
///
/// The room's state before `event_id` and the auth chain of those state events.
pub async fn get_room_state(
    state: web::Data<AppState>,
    req: Ruma<get_room_state::v1::Request>,
) -> Result<HttpResponse, MatrixError> {
    let (origin, room_id) = (req.sender.as_str(), req.body.room_id.as_str());
    acl::ensure_allowed(&state, room_id, origin).await?;
    let answer = state
        .roomserver
        .send(QueryStateForServer {
            room_id: room_id.to_owned(),
            event_id: req.body.event_id.to_string(),
            server_name: origin.to_owned(),
        })
        .await?;
    Ok(HttpResponse::Ok().json(json!({
        "pdus": answer.pdus,
        "auth_chain": answer.auth_chain,
    })))
}

/// # `GET /_matrix/federation/v1/state_ids/{roomId}`
///
/// [`get_room_state`] by event IDs.
pub async fn get_room_state_ids(
    state: web::Data<AppState>,
    req: Ruma<get_room_state_ids::v1::Request>,
) -> Result<HttpResponse, MatrixError> {
    let (origin, room_id) = (req.sender.as_str(), req.body.room_id.as_str());
    acl::ensure_allowed(&state, room_id, origin).await?;
    let answer = state
        .roomserver
        .send(QueryStateIdsForServer {
            room_id: room_id.to_owned(),
            event_id: req.body.event_id.to_string(),
            server_name: origin.to_owned(),
        })
        .await?;
    Ok(HttpResponse::Ok().json(json!({
        "pdu_ids": answer.pdu_ids,
        "auth_chain_ids": answer.auth_chain_ids,
    })))
}

/// # `GET /_matrix/federation/v1/event_auth/{roomId}/{eventId}`
///
/// The full auth chain of one of the room's events.
pub async fn get_event_authorization(
    state: web::Data<AppState>,
    req: Ruma<get_event_authorization::v1::Request>,
) -> Result<HttpResponse, MatrixError> {
    let (origin, room_id) = (req.sender.as_str(), req.body.room_id.as_str());
    acl::ensure_allowed(&state, room_id, origin).await?;
    let chain = state
        .roomserver
        .send(QueryEventAuthForServer {
            room_id: room_id.to_owned(),
            event_id: req.body.event_id.to_string(),
            server_name: origin.to_owned(),
        })
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "auth_chain": chain })))
}

/// # `GET /_matrix/federation/v1/backfill/{roomId}`
///
/// The events `v` and their ancestors, deepest first, at most `limit` (capped at 100, as
/// Synapse).
pub async fn get_backfill(
    state: web::Data<AppState>,
    req: Ruma<get_backfill::v1::Request>,
) -> Result<HttpResponse, MatrixError> {
    let (origin, room_id) = (req.sender.as_str(), req.body.room_id.as_str());
    acl::ensure_allowed(&state, room_id, origin).await?;
    let mut answer = state
        .roomserver
        .send(QueryBackfillForServer {
            room_id: room_id.to_owned(),
            event_ids: req.body.v.iter().map(ToString::to_string).collect(),
            limit: req.body.limit.into(),
            server_name: origin.to_owned(),
        })
        .await?;
    redact_erased(&state, &answer.room_version, &mut answer.pdus).await?;
    Ok(transaction(&state, answer.pdus))
}

/// # `POST /_matrix/federation/v1/get_missing_events/{roomId}`
///
/// The events between `earliest_events` and `latest_events`, oldest first, at most `limit`
/// (default 10, capped at 20 as Synapse), none less deep than `min_depth`.
pub async fn get_missing_events(
    state: web::Data<AppState>,
    req: Ruma<get_missing_events::v1::Request>,
) -> Result<HttpResponse, MatrixError> {
    let (origin, room_id) = (req.sender.as_str(), req.body.room_id.as_str());
    acl::ensure_allowed(&state, room_id, origin).await?;
    let ids = |list: &[ruma::OwnedEventId]| list.iter().map(ToString::to_string).collect();
    let mut answer = state
        .roomserver
        .send(QueryMissingEventsForServer {
            room_id: room_id.to_owned(),
            earliest_events: ids(&req.body.earliest_events),
            latest_events: ids(&req.body.latest_events),
            limit: req.body.limit.into(),
            min_depth: req.body.min_depth.into(),
            server_name: origin.to_owned(),
        })
        .await?;
    redact_erased(&state, &answer.room_version, &mut answer.pdus).await?;
    Ok(HttpResponse::Ok().json(json!({ "events": answer.pdus })))
}

/// # `GET /_matrix/federation/v1/timestamp_to_event/{roomId}`
///
/// The room's event closest to `ts` in direction `dir`; 404 `M_NOT_FOUND` when there is none.
pub async fn get_event_by_timestamp(
    state: web::Data<AppState>,
    req: Ruma<get_event_by_timestamp::v1::Request>,
) -> Result<HttpResponse, MatrixError> {
    let (origin, room_id) = (req.sender.as_str(), req.body.room_id.as_str());
    acl::ensure_allowed(&state, room_id, origin).await?;
    let ts = i64::try_from(u64::from(req.body.ts.0))
        .map_err(|_| MatrixError::invalid_param("ts is too large"))?;
    let forward = req.body.dir == ruma::api::Direction::Forward;
    let (event_id, origin_server_ts) = state
        .roomserver
        .send(QueryEventByTimestampForServer {
            room_id: room_id.to_owned(),
            ts,
            forward,
            server_name: origin.to_owned(),
        })
        .await?
        .ok_or_else(|| {
            MatrixError::not_found(format!(
                "Unable to find event from {ts} in {} direction",
                if forward { "forward" } else { "backward" }
            ))
        })?;
    Ok(HttpResponse::Ok().json(json!({
        "event_id": event_id,
        "origin_server_ts": origin_server_ts,
    })))
}
