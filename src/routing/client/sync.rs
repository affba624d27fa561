//! `/sync` and the live, per-user streams: typing, receipts, read markers, presence,
//! to-device messages and room tags.

use super::ensure_self;
use crate::actors::federationapi::messages::{InputSendToDevice, InputTyping};
use crate::actors::syncapi::messages::*;
use crate::actors::userapi::messages::{
    PerformAccountDataUpdate, PerformRoomTagUpdate, QueryAccountData, QueryDevices, QueryFilter,
};
use crate::routing::error::MatrixError;
use crate::routing::ruma::Ruma;
use crate::routing::AppState;
use actix_web::{web, HttpResponse};
use ruma::api::client::presence::{get_presence, set_presence};
use ruma::api::client::read_marker::set_read_marker;
use ruma::api::client::receipt::create_receipt::{self, v3::ReceiptType};
use ruma::api::client::sync::sync_events::{self, v3::Filter};
use ruma::api::client::tag::{create_tag, delete_tag, get_tags};
use ruma::api::client::to_device::send_event_to_device;
use ruma::api::client::typing::create_typing_event::{self, v3::Typing};
use ruma::events::receipt::ReceiptThread;
use ruma::to_device::DeviceIdOrAllDevices;
use serde_json::{json, Value};
use std::collections::BTreeMap;

fn ok(v: Value) -> HttpResponse {
    HttpResponse::Ok().json(v)
}

/// # `GET /_matrix/client/v3/sync`
pub async fn sync(
    state: web::Data<AppState>,
    req: Ruma<sync_events::v3::Request>,
) -> Result<HttpResponse, MatrixError> {
    let body = req.body;
    let filter = match body.filter {
        None => Value::Null,
        Some(Filter::FilterDefinition(def)) => {
            serde_json::to_value(def).map_err(|e| MatrixError::internal(e))?
        }
        Some(Filter::FilterId(id)) => {
            let text = state
                .userapi
                .send(QueryFilter {
                    localpart: req.sender.localpart.clone(),
                    filter_id: id.clone(),
                })
                .await?
                .ok_or_else(|| MatrixError::not_found(format!("No filter {id}")))?;
            serde_json::from_str(&text).map_err(|e| MatrixError::internal(e))?
        }
        Some(_) => return Err(MatrixError::invalid_param("unknown filter form")),
    };
    let filter = if filter.is_null() { json!({}) } else { filter };
    let response = state
        .syncapi
        .send(QuerySync {
            user_id: req.sender.user_id.to_string(),
            device_id: req.sender.device_id.to_string(),
            since: body.since,
            timeout_ms: body
                .timeout
                .map_or(0, |t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
            full_state: body.full_state,
            filter,
            set_presence: Some(body.set_presence.to_string()),
        })
        .await?;
    Ok(ok(response))
}

/// # `PUT /_matrix/client/v3/rooms/{roomId}/typing/{userId}`
pub async fn typing(
    state: web::Data<AppState>,
    req: Ruma<create_typing_event::v3::Request>,
) -> Result<HttpResponse, MatrixError> {
    let body = req.body;
    // Another user's typing: 400 as Synapse answers it (errcode M_FORBIDDEN all the same).
    ensure_self(&req.sender, &body.user_id, "set typing notifications")
        .map_err(|e| e.with_status(actix_web::http::StatusCode::BAD_REQUEST))?;
    let (typing, timeout_ms) = match body.state {
        Typing::Yes(info) => (
            true,
            u64::try_from(info.timeout.as_millis()).unwrap_or(u64::MAX),
        ),
        _ => (false, 0),
    };
    state
        .syncapi
        .send(PerformTyping {
            room_id: body.room_id.to_string(),
            user_id: req.sender.user_id.to_string(),
            typing,
            timeout_ms,
        })
        .await?;
    // The other servers in the room hear of it too.
    state
        .federationapi
        .send(InputTyping {
            room_id: body.room_id.to_string(),
            user_id: req.sender.user_id.to_string(),
            typing,
        })
        .await?;
    Ok(ok(json!({})))
}

/// The stored thread ID of a receipt (`None` for unthreaded).
fn thread_id(thread: &ReceiptThread) -> Result<Option<String>, MatrixError> {
    match thread {
        ReceiptThread::Unthreaded => Ok(None),
        ReceiptThread::Main => Ok(Some("main".into())),
        ReceiptThread::Thread(id) => Ok(Some(id.to_string())),
        other => Err(MatrixError::invalid_param(format!(
            "thread_id {:?} is neither \"main\" nor an event ID",
            other.as_str()
        ))),
    }
}

async fn receipt(
    state: &AppState,
    sender: &crate::routing::ruma::Authed,
    room_id: &str,
    receipt_type: &str,
    event_id: &str,
    thread_id: Option<String>,
) -> Result<(), MatrixError> {
    state
        .syncapi
        .send(PerformReceipt {
            room_id: room_id.to_owned(),
            user_id: sender.user_id.to_string(),
            receipt_type: receipt_type.to_owned(),
            event_id: event_id.to_owned(),
            thread_id,
        })
        .await?;
    Ok(())
}

async fn fully_read(
    state: &AppState,
    sender: &crate::routing::ruma::Authed,
    room_id: &str,
    event_id: &str,
) -> Result<(), MatrixError> {
    state
        .userapi
        .send(PerformAccountDataUpdate {
            localpart: sender.localpart.clone(),
            room_id: Some(room_id.to_owned()),
            data_type: "m.fully_read".into(),
            content: json!({ "event_id": event_id }).to_string(),
        })
        .await?;
    Ok(())
}

/// # `POST /_matrix/client/v3/rooms/{roomId}/receipt/{receiptType}/{eventId}`
pub async fn create_receipt(
    state: web::Data<AppState>,
    req: Ruma<create_receipt::v3::Request>,
) -> Result<HttpResponse, MatrixError> {
    let body = req.body;
    let room = body.room_id.as_str();
    let event = body.event_id.as_str();
    match body.receipt_type {
        ReceiptType::Read | ReceiptType::ReadPrivate => {
            let ty = body.receipt_type.as_str().to_owned();
            receipt(
                &state,
                &req.sender,
                room,
                &ty,
                event,
                thread_id(&body.thread)?,
            )
            .await?
        }
        ReceiptType::FullyRead => {
            if body.thread != ReceiptThread::Unthreaded {
                return Err(MatrixError::invalid_param(
                    "m.fully_read takes no thread_id",
                ));
            }
            fully_read(&state, &req.sender, room, event).await?
        }
        other => {
            return Err(MatrixError::invalid_param(format!(
                "unknown receipt type {}",
                other.as_str()
            )))
        }
    }
    Ok(ok(json!({})))
}

/// # `POST /_matrix/client/v3/rooms/{roomId}/read_markers`
pub async fn set_read_marker(
    state: web::Data<AppState>,
    req: Ruma<set_read_marker::v3::Request>,
) -> Result<HttpResponse, MatrixError> {
    let body = req.body;
    let room = body.room_id.as_str();
    if let Some(e) = &body.read_receipt {
        receipt(&state, &req.sender, room, "m.read", e.as_str(), None).await?;
    }
    if let Some(e) = &body.private_read_receipt {
        receipt(
            &state,
            &req.sender,
            room,
            "m.read.private",
            e.as_str(),
            None,
        )
        .await?;
    }
    if let Some(e) = &body.fully_read {
        // The marker must name an event the user can see in the room.
        state
            .syncapi
            .send(QueryContext {
                room_id: room.to_owned(),
                user_id: req.sender.user_id.to_string(),
                device_id: req.sender.device_id.to_string(),
                event_id: e.to_string(),
                limit: 0,
                filter: Value::Null,
            })
            .await?;
        fully_read(&state, &req.sender, room, e.as_str()).await?;
    }
    Ok(ok(json!({})))
}

/// # `PUT /_matrix/client/v3/presence/{userId}/status`
pub async fn set_presence(
    state: web::Data<AppState>,
    req: Ruma<set_presence::v3::Request>,
) -> Result<HttpResponse, MatrixError> {
    let body = req.body;
    ensure_self(&req.sender, &body.user_id, "set presence")?;
    state
        .syncapi
        .send(PerformPresence {
            user_id: body.user_id.to_string(),
            presence: body.presence.to_string(),
            status_msg: body.status_msg,
        })
        .await?;
    Ok(ok(json!({})))
}

/// # `GET /_matrix/client/v3/presence/{userId}/status`
pub async fn get_presence(
    state: web::Data<AppState>,
    req: Ruma<get_presence::v3::Request>,
) -> Result<HttpResponse, MatrixError> {
    let v = state
        .syncapi
        .send(QueryPresence {
            user_id: req.body.user_id.to_string(),
            viewer: req.sender.user_id.to_string(),
        })
        .await?;
    Ok(ok(v))
}

/// # `PUT /_matrix/client/v3/sendToDevice/{eventType}/{txnId}`
pub async fn send_to_device(
    state: web::Data<AppState>,
    req: Ruma<send_event_to_device::v3::Request>,
) -> Result<HttpResponse, MatrixError> {
    let body = req.body;
    let mut messages = Vec::new();
    // Other servers' users: queued for their servers by the federationapi.
    let mut remote: BTreeMap<String, BTreeMap<String, Value>> = BTreeMap::new();
    for (user, devices) in &body.messages {
        let Some(localpart) = super::local_part(state.server_name(), user) else {
            let entry = remote.entry(user.to_string()).or_default();
            for (device, content) in devices {
                let content: Value = serde_json::from_str(content.json().get())
                    .map_err(|_| MatrixError::bad_json("message content must be JSON"))?;
                if !content.is_object() {
                    return Err(MatrixError::bad_json("message content must be an object"));
                }
                let device = match device {
                    DeviceIdOrAllDevices::DeviceId(d) => d.to_string(),
                    DeviceIdOrAllDevices::AllDevices => "*".to_owned(),
                };
                entry.insert(device, content);
            }
            continue;
        };
        for (device, content) in devices {
            let content: Value = serde_json::from_str(content.json().get())
                .map_err(|_| MatrixError::bad_json("message content must be JSON"))?;
            if !content.is_object() {
                return Err(MatrixError::bad_json("message content must be an object"));
            }
            match device {
                DeviceIdOrAllDevices::DeviceId(d) => {
                    messages.push((user.to_string(), d.to_string(), content))
                }
                DeviceIdOrAllDevices::AllDevices => {
                    let all = state
                        .userapi
                        .send(QueryDevices {
                            localpart: localpart.to_owned(),
                        })
                        .await?;
                    for d in all {
                        messages.push((user.to_string(), d.device_id, content.clone()));
                    }
                }
            }
        }
    }
    state
        .syncapi
        .send(PerformSendToDevice {
            sender: req.sender.user_id.to_string(),
            sender_device: req.sender.device_id.to_string(),
            txn_id: body.txn_id.to_string(),
            event_type: body.event_type.to_string(),
            messages,
        })
        .await?;
    if !remote.is_empty() {
        // The same request again (a client's retry) gives the same message ID, which the
        // receiving server takes once.
        state
            .federationapi
            .send(InputSendToDevice {
                sender: req.sender.user_id.to_string(),
                event_type: body.event_type.to_string(),
                message_id: format!("{}.{}", req.sender.device_id, body.txn_id),
                messages: remote,
            })
            .await?;
    }
    Ok(ok(json!({})))
}

/// # `GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags`
pub async fn get_tags(
    state: web::Data<AppState>,
    req: Ruma<get_tags::v3::Request>,
) -> Result<HttpResponse, MatrixError> {
    let body = req.body;
    ensure_self(&req.sender, &body.user_id, "read tags")?;
    let content = state
        .userapi
        .send(QueryAccountData {
            localpart: req.sender.localpart.clone(),
            room_id: Some(body.room_id.to_string()),
            data_type: "m.tag".into(),
        })
        .await?
        .and_then(|c| serde_json::from_str::<Value>(&c).ok())
        .unwrap_or_default();
    let tags = match &content["tags"] {
        Value::Object(t) => Value::Object(t.clone()),
        _ => json!({}),
    };
    Ok(ok(json!({ "tags": tags })))
}

/// # `PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}`
pub async fn create_tag(
    state: web::Data<AppState>,
    req: Ruma<create_tag::v3::Request>,
) -> Result<HttpResponse, MatrixError> {
    let body = req.body;
    ensure_self(&req.sender, &body.user_id, "set tags")?;
    let content = serde_json::to_value(&body.tag_info).map_err(|e| MatrixError::internal(e))?;
    update_tag(&state, &req.sender, &body.room_id, body.tag, Some(content)).await
}

/// # `DELETE /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}`
pub async fn delete_tag(
    state: web::Data<AppState>,
    req: Ruma<delete_tag::v3::Request>,
) -> Result<HttpResponse, MatrixError> {
    let body = req.body;
    ensure_self(&req.sender, &body.user_id, "delete tags")?;
    update_tag(&state, &req.sender, &body.room_id, body.tag, None).await
}

async fn update_tag(
    state: &AppState,
    sender: &crate::routing::ruma::Authed,
    room_id: &ruma::RoomId,
    tag: String,
    content: Option<Value>,
) -> Result<HttpResponse, MatrixError> {
    if tag.len() > 255 {
        return Err(MatrixError::invalid_param(
            "tag names are at most 255 bytes",
        ));
    }
    state
        .userapi
        .send(PerformRoomTagUpdate {
            localpart: sender.localpart.clone(),
            room_id: room_id.to_string(),
            tag,
            content,
        })
        .await?;
    Ok(ok(json!({})))
}
