//! Room history: `/messages`, `/context`, `/relations` (three forms) and `/threads`.

use crate::actors::syncapi::messages::*;
use crate::routing::error::MatrixError;
use crate::routing::ruma::{Authed, Ruma};
use crate::routing::AppState;
use actix_web::{web, HttpResponse};
use ruma::api::client::context::get_context;
use ruma::api::client::message::get_message_events;
use ruma::api::client::relations::{
    get_relating_events, get_relating_events_with_rel_type,
    get_relating_events_with_rel_type_and_event_type,
};
use ruma::api::client::threads::get_threads::{self, v1::IncludeThreads};
use ruma::api::Direction;
use serde_json::Value;

fn limit(l: ruma::UInt) -> i64 {
    i64::try_from(u64::from(l)).unwrap_or(i64::MAX)
}

/// # `GET /_matrix/client/v3/rooms/{roomId}/messages`
pub async fn get_messages(
    state: web::Data<AppState>,
    req: Ruma<get_message_events::v3::Request>,
) -> Result<HttpResponse, MatrixError> {
    let body = req.body;
    let filter = serde_json::to_value(&body.filter).map_err(|e| MatrixError::internal(e))?;
    let v = state
        .syncapi
        .send(QueryMessages {
            room_id: body.room_id.to_string(),
            user_id: req.sender.user_id.to_string(),
            device_id: req.sender.device_id.to_string(),
            from: body.from,
            to: body.to,
            backwards: body.dir == Direction::Backward,
            limit: Some(limit(body.limit)),
            filter,
        })
        .await?;
    Ok(HttpResponse::Ok().json(v))
}

/// # `GET /_matrix/client/v3/rooms/{roomId}/context/{eventId}`
pub async fn get_context(
    state: web::Data<AppState>,
    req: Ruma<get_context::v3::Request>,
) -> Result<HttpResponse, MatrixError> {
    let body = req.body;
    let filter = serde_json::to_value(&body.filter).map_err(|e| MatrixError::internal(e))?;
    let v = state
        .syncapi
        .send(QueryContext {
            room_id: body.room_id.to_string(),
            user_id: req.sender.user_id.to_string(),
            device_id: req.sender.device_id.to_string(),
            event_id: body.event_id.to_string(),
            limit: limit(body.limit),
            filter,
        })
        .await?;
    Ok(HttpResponse::Ok().json(v))
}

/// The three `/relations` forms, as one query.
#[allow(clippy::too_many_arguments)]
async fn relations(
    state: &AppState,
    sender: &Authed,
    room_id: &ruma::RoomId,
    event_id: &ruma::EventId,
    rel_type: Option<String>,
    event_type: Option<String>,
    from: Option<String>,
    to: Option<String>,
    dir: Direction,
    lim: Option<ruma::UInt>,
    recurse: bool,
) -> Result<HttpResponse, MatrixError> {
    let v: Value = state
        .syncapi
        .send(QueryRelations {
            room_id: room_id.to_string(),
            user_id: sender.user_id.to_string(),
            device_id: sender.device_id.to_string(),
            event_id: event_id.to_string(),
            rel_type,
            event_type,
            from,
            to,
            limit: lim.map(limit),
            backwards: dir == Direction::Backward,
            recurse,
        })
        .await?;
    Ok(HttpResponse::Ok().json(v))
}

/// # `GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}`
pub async fn get_relations(
    state: web::Data<AppState>,
    req: Ruma<get_relating_events::v1::Request>,
) -> Result<HttpResponse, MatrixError> {
    let b = req.body;
    relations(
        &state,
        &req.sender,
        &b.room_id,
        &b.event_id,
        None,
        None,
        b.from,
        b.to,
        b.dir,
        b.limit,
        b.recurse,
    )
    .await
}

/// # `GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}/{relType}`
pub async fn get_relations_with_rel_type(
    state: web::Data<AppState>,
    req: Ruma<get_relating_events_with_rel_type::v1::Request>,
) -> Result<HttpResponse, MatrixError> {
    let b = req.body;
    relations(
        &state,
        &req.sender,
        &b.room_id,
        &b.event_id,
        Some(b.rel_type.to_string()),
        None,
        b.from,
        b.to,
        b.dir,
        b.limit,
        b.recurse,
    )
    .await
}

/// # `GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}/{relType}/{eventType}`
pub async fn get_relations_with_rel_type_and_event_type(
    state: web::Data<AppState>,
    req: Ruma<get_relating_events_with_rel_type_and_event_type::v1::Request>,
) -> Result<HttpResponse, MatrixError> {
    let b = req.body;
    relations(
        &state,
        &req.sender,
        &b.room_id,
        &b.event_id,
        Some(b.rel_type.to_string()),
        Some(b.event_type.to_string()),
        b.from,
        b.to,
        b.dir,
        b.limit,
        b.recurse,
    )
    .await
}

/// # `GET /_matrix/client/v1/rooms/{roomId}/threads`
pub async fn get_threads(
    state: web::Data<AppState>,
    req: Ruma<get_threads::v1::Request>,
) -> Result<HttpResponse, MatrixError> {
    let b = req.body;
    let v = state
        .syncapi
        .send(QueryThreads {
            room_id: b.room_id.to_string(),
            user_id: req.sender.user_id.to_string(),
            device_id: req.sender.device_id.to_string(),
            participated_only: b.include == IncludeThreads::Participated,
            from: b.from,
            limit: b.limit.map(limit),
        })
        .await?;
    Ok(HttpResponse::Ok().json(v))
}
