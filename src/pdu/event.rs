//! [`PduEvent`]: a stored or freshly built event, parsed once into the fields that
//! authorization and state resolution read (ruma's `state_res::Event`).

use super::PduError;
use ruma::events::TimelineEventType;
use ruma::state_res::Event;
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId,
    OwnedUserId, RoomId, UInt, UserId,
};
use serde_json::value::RawValue;

/// An event as authorization sees it.
#[derive(Debug, Clone)]
pub struct PduEvent {
    pub event_id: OwnedEventId,
    pub room_id: Option<OwnedRoomId>,
    pub sender: OwnedUserId,
    pub origin_server_ts: MilliSecondsSinceUnixEpoch,
    pub kind: TimelineEventType,
    pub content: Box<RawValue>,
    pub state_key: Option<String>,
    /// Orders events in state resolution v1 (room version 1).
    pub depth: UInt,
    pub prev_events: Vec<OwnedEventId>,
    pub auth_events: Vec<OwnedEventId>,
    pub redacts: Option<OwnedEventId>,
    pub rejected: bool,
}

fn bad(what: &str) -> PduError {
    PduError::Format(format!("event has no valid `{what}`"))
}

impl PduEvent {
    /// Parses the fields of a federation-format event. `redacts` is read from the top level
    /// or, for room versions 11 and later, from the content. `prev_events` and `auth_events`
    /// may be IDs or (event format v1) `[id, hashes]` pairs: the format check of the room
    /// version ([`super::verify()`]) decides which one an event may use.
    pub fn from_json(
        event_id: OwnedEventId,
        json: &CanonicalJsonObject,
        rejected: bool,
    ) -> Result<PduEvent, PduError> {
        let text = |k: &str| json.get(k).and_then(CanonicalJsonValue::as_str);
        let ids = |k: &str| -> Result<Vec<OwnedEventId>, PduError> {
            json.get(k)
                .and_then(CanonicalJsonValue::as_array)
                .ok_or_else(|| bad(k))?
                .iter()
                .map(|v| {
                    let id = match v {
                        CanonicalJsonValue::Array(pair) => pair.first(),
                        id => Some(id),
                    };
                    id.and_then(CanonicalJsonValue::as_str)
                        .and_then(|s| OwnedEventId::try_from(s).ok())
                        .ok_or_else(|| bad(k))
                })
                .collect()
        };
        let content = json.get("content").ok_or_else(|| bad("content"))?;
        let ts = json
            .get("origin_server_ts")
            .and_then(CanonicalJsonValue::as_integer)
            .and_then(|i| UInt::try_from(i64::from(i)).ok())
            .ok_or_else(|| bad("origin_server_ts"))?;
        let redacts = text("redacts").or_else(|| {
            content
                .as_object()
                .and_then(|c| c.get("redacts"))
                .and_then(CanonicalJsonValue::as_str)
        });
        Ok(PduEvent {
            event_id,
            room_id: text("room_id").and_then(|r| OwnedRoomId::try_from(r).ok()),
            sender: text("sender")
                .and_then(|s| OwnedUserId::try_from(s).ok())
                .ok_or_else(|| bad("sender"))?,
            origin_server_ts: MilliSecondsSinceUnixEpoch(ts),
            kind: text("type").ok_or_else(|| bad("type"))?.into(),
            content: serde_json::value::to_raw_value(content).map_err(|_| bad("content"))?,
            state_key: text("state_key").map(str::to_owned),
            depth: json
                .get("depth")
                .and_then(CanonicalJsonValue::as_integer)
                .and_then(|i| UInt::try_from(i64::from(i)).ok())
                .ok_or_else(|| bad("depth"))?,
            prev_events: ids("prev_events")?,
            auth_events: ids("auth_events")?,
            redacts: redacts.and_then(|r| OwnedEventId::try_from(r).ok()),
            rejected,
        })
    }
}

impl Event for PduEvent {
    type Id = OwnedEventId;

    fn event_id(&self) -> &OwnedEventId {
        &self.event_id
    }
    fn room_id(&self) -> Option<&RoomId> {
        self.room_id.as_deref()
    }
    fn sender(&self) -> &UserId {
        &self.sender
    }
    fn origin_server_ts(&self) -> MilliSecondsSinceUnixEpoch {
        self.origin_server_ts
    }
    fn event_type(&self) -> &TimelineEventType {
        &self.kind
    }
    fn content(&self) -> &RawValue {
        &self.content
    }
    fn state_key(&self) -> Option<&str> {
        self.state_key.as_deref()
    }
    fn prev_events(&self) -> Box<dyn DoubleEndedIterator<Item = &OwnedEventId> + '_> {
        Box::new(self.prev_events.iter())
    }
    fn auth_events(&self) -> Box<dyn DoubleEndedIterator<Item = &OwnedEventId> + '_> {
        Box::new(self.auth_events.iter())
    }
    fn redacts(&self) -> Option<&OwnedEventId> {
        self.redacts.as_ref()
    }
    fn rejected(&self) -> bool {
        self.rejected
    }
}
