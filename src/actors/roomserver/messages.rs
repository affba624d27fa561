//! The roomserver's public API (so far: sending local events and reading state and events).

use super::error::RoomserverError;
use actix::Message;
use serde::{Deserialize, Serialize};

/// An event stored and accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentEvent {
    pub event_id: String,
    pub room_id: String,
}

/// An event as stored, in federation format.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub event_id: String,
    pub room_id: String,
    pub json: serde_json::Value,
    /// It failed authorization: kept for the DAG, never served to clients.
    pub rejected: bool,
    /// When redacted: the redaction event (federation format, with its `event_id`); `json`
    /// is then already redacted by the room version's algorithm.
    pub redacted_because: Option<serde_json::Value>,
}

/// Builds an event for a local sender, authorizes it against the room's current state,
/// signs it and stores it (moving the room's state and extremities), all in the room's
/// order: events of one room are handled one at a time, rooms in parallel.
///
/// With `event_type = "m.room.create"` and no `room_id`, it creates a room: the room
/// version is `room_version` (or the server's default), the room ID is derived from the
/// create event (v12) or generated, and `room_version`/`creator` in the content are set by
/// the server.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<SentEvent, RoomserverError>")]
pub struct PerformRoomEvent {
    pub room_id: Option<String>,
    pub room_version: Option<String>,
    pub sender: String,
    pub event_type: String,
    /// `Some` for state events.
    pub state_key: Option<String>,
    /// A JSON object.
    pub content: serde_json::Value,
    /// The client's (device ID, transaction ID): a retry returns the event already sent.
    pub txn: Option<(String, String)>,
    /// For `m.room.redaction`: the event to redact, which must be in the room. It is
    /// redacted when the sender sent it or has the room's `redact` power (else the
    /// redaction is refused).
    pub redacts: Option<String>,
}

/// The room's current state events (federation format). `types` empty means *all* current
/// state, else only those (type, state_key) pairs that are set. `None`: no such room.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<Option<Vec<StoredEvent>>, RoomserverError>")]
pub struct QueryCurrentState {
    pub room_id: String,
    pub types: Vec<(String, String)>,
}

/// The rooms a user has joined, by room ID.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<Vec<String>, RoomserverError>")]
pub struct QueryJoinedRooms {
    pub user_id: String,
}

/// Forgets a room for a user, who must have left it (or been kicked or banned).
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<(), RoomserverError>")]
pub struct PerformForget {
    pub user_id: String,
    pub room_id: String,
}

/// One event by ID; `None` when it is not stored.
#[derive(Debug, Clone, Message, Serialize, Deserialize)]
#[rtype(result = "Result<Option<StoredEvent>, RoomserverError>")]
pub struct QueryEvent {
    pub event_id: String,
}

/// What the roomserver publishes on its stream (`roomserver`), keyed by room ID.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum RoomserverOutput {
    /// An event was accepted into a room.
    NewRoomEvent {
        room_id: String,
        event_id: String,
        event: serde_json::Value,
    },
}

crate::remote_messages!("roomserver":
    PerformRoomEvent,
    QueryCurrentState,
    QueryEvent,
    QueryJoinedRooms,
    PerformForget,
);
