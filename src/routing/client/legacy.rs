//! The endpoints the spec deprecated in r0 that clients and bridges still call:
//! `/initialSync`, `/rooms/{roomId}/initialSync`, `/events` and `/events/{eventId}`, answered
//! by the syncapi as Synapse answers them. ruma types only the room `initialSync`; the others
//! are raw routes authenticated by [`RawAuthed`] (ruma's `/events` type makes `room_id`
//! required, which Synapse and the spec's non-peeking form do not).

use crate::actors::roomserver::messages::QueryPublishedRoom;
use crate::actors::syncapi::messages::*;
use crate::routing::error::MatrixError;
use crate::routing::ruma::{RawAuthed, Ruma};
use crate::routing::AppState;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use ruma::api::client::peeking::get_current_state;
use serde::Deserialize;
use serde_json::Value;

/// How long `/events` waits when the request does not say (Synapse's default).
const DEFAULT_EVENTS_TIMEOUT_MS: u64 = 30_000;
/// The shortest wait of a `/events` that asks to wait at all (as Synapse).
const MIN_EVENTS_TIMEOUT_MS: u64 = 500;

/// The query parameters of the legacy endpoints (each reads the ones it uses).
#[derive(Debug, Default, Deserialize)]
struct Params {
    from: Option<String>,
    timeout: Option<String>,
    room_id: Option<String>,
    limit: Option<String>,
    archived: Option<String>,
}

fn params(req: &HttpRequest) -> Result<Params, MatrixError> {
    web::Query::<Params>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .map_err(|e| MatrixError::invalid_param(format!("Invalid query parameters: {e}")))
}

/// A Synapse `SynapseError(400, ...)`: 400 with `M_UNKNOWN`.
fn bad_request(why: &str) -> MatrixError {
    MatrixError::new("M_UNKNOWN", why).with_status(StatusCode::BAD_REQUEST)
}

/// `limit` as Synapse's `PaginationConfig` reads it: an integer, 0 or above.
fn limit(p: &Params) -> Result<Option<i64>, MatrixError> {
    match &p.limit {
        None => Ok(None),
        Some(l) => match l.parse::<i64>() {
            Ok(n) if n >= 0 => Ok(Some(n)),
            Ok(_) => Err(MatrixError::invalid_param("Limit must be 0 or above")),
            Err(_) => Err(MatrixError::invalid_param(
                "Query parameter \"limit\" must be an integer",
            )),
        },
    }
}

/// `visibility` of a room: whether the roomserver lists it in the public directory.
async fn visibility(state: &AppState, room_id: &str) -> Result<&'static str, MatrixError> {
    let published = state
        .roomserver
        .send(QueryPublishedRoom {
            room_id: room_id.to_owned(),
        })
        .await?;
    Ok(if published == Some(true) {
        "public"
    } else {
        "private"
    })
}

/// # `GET /_matrix/client/v3/initialSync`
pub async fn initial_sync(
    state: web::Data<AppState>,
    auth: RawAuthed,
    req: HttpRequest,
) -> Result<HttpResponse, MatrixError> {
    let p = params(&req)?;
    let archived = match p.archived.as_deref() {
        None | Some("false") => false,
        Some("true") => true,
        Some(_) => {
            return Err(MatrixError::invalid_param(
                "Boolean query parameter \"archived\" must be one of ['true', 'false']",
            ))
        }
    };
    let mut v: Value = state
        .syncapi
        .send(QueryInitialSync {
            user_id: auth.0.user_id.to_string(),
            device_id: auth.0.device_id.to_string(),
            limit: limit(&p)?,
            archived,
        })
        .await?;
    if let Some(rooms) = v["rooms"].as_array_mut() {
        for room in rooms {
            let id = room["room_id"].as_str().unwrap_or_default().to_owned();
            room["visibility"] = visibility(&state, &id).await?.into();
        }
    }
    Ok(HttpResponse::Ok().json(v))
}

/// # `GET /_matrix/client/v3/rooms/{roomId}/initialSync`
pub async fn room_initial_sync(
    state: web::Data<AppState>,
    req: Ruma<get_current_state::v3::Request>,
    http: HttpRequest,
) -> Result<HttpResponse, MatrixError> {
    let p = params(&http)?;
    let room_id = req.body.room_id.to_string();
    let mut v: Value = state
        .syncapi
        .send(QueryRoomInitialSync {
            room_id: room_id.clone(),
            user_id: req.sender.user_id.to_string(),
            device_id: req.sender.device_id.to_string(),
            is_guest: req.sender.is_guest,
            limit: limit(&p)?,
        })
        .await?;
    v["visibility"] = visibility(&state, &room_id).await?.into();
    Ok(HttpResponse::Ok().json(v))
}

/// # `GET /_matrix/client/v3/events`
pub async fn events(
    state: web::Data<AppState>,
    auth: RawAuthed,
    req: HttpRequest,
) -> Result<HttpResponse, MatrixError> {
    let p = params(&req)?;
    let sender = auth.0;
    if sender.is_guest && p.room_id.is_none() {
        return Err(bad_request("Guest users must specify room_id param"));
    }
    let timeout_ms = match &p.timeout {
        None => DEFAULT_EVENTS_TIMEOUT_MS,
        Some(t) => match t.parse::<u64>() {
            Ok(0) => 0,
            Ok(n) => n.max(MIN_EVENTS_TIMEOUT_MS),
            Err(_) => return Err(bad_request("timeout must be in milliseconds.")),
        },
    };
    let v = state
        .syncapi
        .send(QueryEvents {
            user_id: sender.user_id.to_string(),
            device_id: sender.device_id.to_string(),
            from: p.from.clone(),
            timeout_ms,
            room_id: p.room_id.clone(),
            limit: limit(&p)?,
            affect_presence: !sender.is_guest,
        })
        .await?;
    Ok(HttpResponse::Ok().json(v))
}

/// # `GET /_matrix/client/v3/events/{eventId}`
pub async fn event(
    state: web::Data<AppState>,
    auth: RawAuthed,
    path: web::Path<String>,
) -> Result<HttpResponse, MatrixError> {
    let v = state
        .syncapi
        .send(QueryClientEvent {
            event_id: path.into_inner(),
            user_id: auth.0.user_id.to_string(),
            device_id: auth.0.device_id.to_string(),
        })
        .await?;
    Ok(HttpResponse::Ok().json(v))
}
