//! The syncapi's messages. Replies are JSON bodies in the client format, ready to send.

use super::SyncApiError;
use actix::Message;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `/sync`: what changed for a user's device since a token (waiting up to `timeout_ms` for
/// something to change).
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<Value, SyncApiError>")]
pub struct QuerySync {
    pub user_id: String,
    pub device_id: String,
    pub since: Option<String>,
    pub timeout_ms: u64,
    pub full_state: bool,
    /// The filter definition (inline, or the stored one the ID names).
    pub filter: Value,
    /// `online`, `offline` or `unavailable`; `None` is online.
    pub set_presence: Option<String>,
}

/// `PUT /rooms/{roomId}/typing/{userId}`.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<(), SyncApiError>")]
pub struct PerformTyping {
    pub room_id: String,
    pub user_id: String,
    pub typing: bool,
    pub timeout_ms: u64,
}

/// A receipt (`m.read`, `m.read.private`) of a user in a room.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<(), SyncApiError>")]
pub struct PerformReceipt {
    pub room_id: String,
    pub user_id: String,
    pub receipt_type: String,
    pub event_id: String,
    /// `main`, a thread root, or `None` for an unthreaded receipt.
    pub thread_id: Option<String>,
}

/// To-device messages, already expanded to devices: (user, device, content).
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<(), SyncApiError>")]
pub struct PerformSendToDevice {
    pub sender: String,
    pub sender_device: String,
    pub txn_id: String,
    pub event_type: String,
    pub messages: Vec<(String, String, Value)>,
}

/// Sets a user's presence.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<(), SyncApiError>")]
pub struct PerformPresence {
    pub user_id: String,
    pub presence: String,
    pub status_msg: Option<String>,
}

/// A user's presence as `viewer` may see it (they share a room, or it is themself).
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<Value, SyncApiError>")]
pub struct QueryPresence {
    pub user_id: String,
    pub viewer: String,
}

/// `GET /rooms/{roomId}/messages`.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<Value, SyncApiError>")]
pub struct QueryMessages {
    pub room_id: String,
    pub user_id: String,
    pub device_id: String,
    pub from: Option<String>,
    pub to: Option<String>,
    pub backwards: bool,
    pub limit: Option<i64>,
    pub filter: Value,
}

/// `GET /rooms/{roomId}/context/{eventId}`.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<Value, SyncApiError>")]
pub struct QueryContext {
    pub room_id: String,
    pub user_id: String,
    pub device_id: String,
    pub event_id: String,
    pub limit: i64,
    pub filter: Value,
}

/// `GET /rooms/{roomId}/relations/{eventId}[/{relType}[/{eventType}]]`.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<Value, SyncApiError>")]
pub struct QueryRelations {
    pub room_id: String,
    pub user_id: String,
    pub device_id: String,
    pub event_id: String,
    pub rel_type: Option<String>,
    pub event_type: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub limit: Option<i64>,
    pub backwards: bool,
    pub recurse: bool,
}

/// `GET /rooms/{roomId}/threads`.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<Value, SyncApiError>")]
pub struct QueryThreads {
    pub room_id: String,
    pub user_id: String,
    pub device_id: String,
    pub participated_only: bool,
    pub from: Option<String>,
    pub limit: Option<i64>,
}

/// `GET /initialSync`: a snapshot of every room the user is joined to or invited to (and
/// left, with `archived`), their global account data, presence and receipts, as Synapse's
/// `snapshot_all_rooms` gives it. `visibility` is left to the caller (the directory is the
/// roomserver's).
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<Value, SyncApiError>")]
pub struct QueryInitialSync {
    pub user_id: String,
    pub device_id: String,
    /// Timeline events per room; `None` is 10.
    pub limit: Option<i64>,
    /// Include rooms the user left.
    pub archived: bool,
}

/// `GET /rooms/{roomId}/initialSync`: one room's snapshot for a member, a former member (as
/// of their leave) or, in a world-readable room, anyone (peeking); `Forbidden` otherwise.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<Value, SyncApiError>")]
pub struct QueryRoomInitialSync {
    pub room_id: String,
    pub user_id: String,
    pub device_id: String,
    /// A guest counts as a member only while joined (as in Synapse).
    pub is_guest: bool,
    /// Timeline events; `None` is 10.
    pub limit: Option<i64>,
}

/// `GET /events`: what happened since `from` (a sync token) in the user's rooms, or in
/// `room_id` alone (which a non-member may read when it is world-readable), waiting up to
/// `timeout_ms` for something to. Answers `{chunk, start, end}`.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<Value, SyncApiError>")]
pub struct QueryEvents {
    pub user_id: String,
    pub device_id: String,
    /// `None`: from now on.
    pub from: Option<String>,
    /// Already bounded by the caller's defaults; capped at [`MAX_SYNC_TIMEOUT_MS`].
    pub timeout_ms: u64,
    pub room_id: Option<String>,
    /// Room events per response; `None` is 10.
    pub limit: Option<i64>,
    /// Whether the request marks the user online (not for guests).
    pub affect_presence: bool,
}

/// `GET /events/{eventId}`: one event in the client format, if the user may see it
/// (`NotFound` otherwise, as for an unknown event).
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<Value, SyncApiError>")]
pub struct QueryClientEvent {
    pub event_id: String,
    pub user_id: String,
    pub device_id: String,
}

/// Which of these users' accounts were erased (the spec's account erasure, as the syncapi
/// learned it from the userapi stream): for other servers' reads, which serve an erased
/// sender's events redacted, as Synapse does.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<Vec<String>, SyncApiError>")]
pub struct QueryErasedUsers {
    pub user_ids: Vec<String>,
}

/// The longest a `/sync` waits for something to change.
pub const MAX_SYNC_TIMEOUT_MS: u64 = 5 * 60 * 1000;

impl crate::actors::bridge::RemoteMessage for QuerySync {
    const COMPONENT: &'static str = "syncapi";
    const NAME: &'static str = "QuerySync";
    const TIMEOUT: std::time::Duration =
        std::time::Duration::from_millis(MAX_SYNC_TIMEOUT_MS + 60_000);
}

/// `/events` long-polls like `/sync`, so it gets `/sync`'s bridge timeout.
impl crate::actors::bridge::RemoteMessage for QueryEvents {
    const COMPONENT: &'static str = "syncapi";
    const NAME: &'static str = "QueryEvents";
    const TIMEOUT: std::time::Duration =
        std::time::Duration::from_millis(MAX_SYNC_TIMEOUT_MS + 60_000);
}

crate::remote_messages!("syncapi":
    PerformTyping,
    PerformReceipt,
    PerformSendToDevice,
    PerformPresence,
    QueryPresence,
    QueryMessages,
    QueryContext,
    QueryRelations,
    QueryThreads,
    QueryInitialSync,
    QueryRoomInitialSync,
    QueryClientEvent,
    QueryErasedUsers,
);
