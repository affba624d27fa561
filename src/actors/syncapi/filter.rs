//! Sync and history filters (the client-server API's `Filter` and `RoomEventFilter`), read
//! leniently from their JSON and applied to events.

use serde::Deserialize;
use serde_json::Value;

/// The filter of `/sync`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct SyncFilter {
    pub event_fields: Option<Vec<String>>,
    pub event_format: Option<String>,
    pub presence: EventFilter,
    pub account_data: EventFilter,
    pub room: RoomFilter,
}

/// The `room` part of a sync filter.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct RoomFilter {
    pub rooms: Option<Vec<String>>,
    pub not_rooms: Vec<String>,
    pub include_leave: bool,
    pub timeline: EventFilter,
    pub state: EventFilter,
    pub ephemeral: EventFilter,
    pub account_data: EventFilter,
}

impl RoomFilter {
    /// Whether a room passes `rooms` and `not_rooms`.
    pub fn room_allowed(&self, room_id: &str) -> bool {
        !self.not_rooms.iter().any(|r| r == room_id)
            && self
                .rooms
                .as_ref()
                .is_none_or(|rs| rs.iter().any(|r| r == room_id))
    }
}

/// An event filter (`Filter` and `RoomEventFilter` of the spec, together).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct EventFilter {
    pub limit: Option<i64>,
    pub types: Option<Vec<String>>,
    pub not_types: Vec<String>,
    pub senders: Option<Vec<String>>,
    pub not_senders: Vec<String>,
    pub rooms: Option<Vec<String>>,
    pub not_rooms: Vec<String>,
    pub contains_url: Option<bool>,
    pub lazy_load_members: bool,
    pub include_redundant_members: bool,
    pub unread_thread_notifications: bool,
}

/// `*` matches any run of characters; everything else matches itself.
pub fn glob(pattern: &str, value: &str) -> bool {
    if !pattern.contains('*') {
        return pattern == value;
    }
    let parts: Vec<&str> = pattern.split('*').collect();
    let mut rest = value;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

impl EventFilter {
    /// Whether an event (any format) passes the filter (the limit aside).
    pub fn allows(&self, event: &Value) -> bool {
        let ty = event["type"].as_str().unwrap_or_default();
        let sender = event["sender"].as_str().unwrap_or_default();
        let room = event["room_id"].as_str().unwrap_or_default();
        if self.not_types.iter().any(|p| glob(p, ty)) {
            return false;
        }
        if let Some(types) = &self.types {
            if !types.iter().any(|p| glob(p, ty)) {
                return false;
            }
        }
        if self.not_senders.iter().any(|s| s == sender) {
            return false;
        }
        if let Some(senders) = &self.senders {
            if !senders.iter().any(|s| s == sender) {
                return false;
            }
        }
        if !room.is_empty() {
            if self.not_rooms.iter().any(|r| r == room) {
                return false;
            }
            if let Some(rooms) = &self.rooms {
                if !rooms.iter().any(|r| r == room) {
                    return false;
                }
            }
        }
        if let Some(wanted) = self.contains_url {
            let has = event["content"]["url"].is_string();
            if has != wanted {
                return false;
            }
        }
        true
    }

    /// Whether the filter lets every event through (its limit aside).
    pub fn is_unconstrained(&self) -> bool {
        self.types.is_none()
            && self.not_types.is_empty()
            && self.senders.is_none()
            && self.not_senders.is_empty()
            && self.rooms.is_none()
            && self.not_rooms.is_empty()
            && self.contains_url.is_none()
    }

    /// The limit, clamped to what a response may hold.
    pub fn limit_or(&self, default: i64) -> i64 {
        self.limit.unwrap_or(default).clamp(0, 1000)
    }
}

/// Keeps only the listed dotted fields of an event (`event_fields`; `\.` escapes a dot).
pub fn select_fields(event: &Value, fields: &[String]) -> Value {
    let mut out = Value::Object(Default::default());
    for field in fields {
        let path = split_path(field);
        let mut src = event;
        let mut found = true;
        for p in &path {
            match src.get(p) {
                Some(v) => src = v,
                None => {
                    found = false;
                    break;
                }
            }
        }
        if !found {
            continue;
        }
        let mut dst = &mut out;
        for (i, p) in path.iter().enumerate() {
            if i == path.len() - 1 {
                dst[p.as_str()] = src.clone();
            } else {
                if !dst[p.as_str()].is_object() {
                    dst[p.as_str()] = Value::Object(Default::default());
                }
                dst = &mut dst[p.as_str()];
            }
        }
    }
    out
}

fn split_path(field: &str) -> Vec<String> {
    let mut parts = vec![String::new()];
    let mut chars = field.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'.') => {
                if let Some(p) = parts.last_mut() {
                    p.push('.');
                }
                chars.next();
            }
            '.' => parts.push(String::new()),
            c => {
                if let Some(p) = parts.last_mut() {
                    p.push(c);
                }
            }
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn globs_types_senders_and_fields() {
        assert!(glob("m.*", "m.room.message"));
        assert!(glob("*.message", "m.room.message"));
        assert!(glob("m.*.message", "m.room.message"));
        assert!(!glob("m.room", "m.room.message"));
        let f: EventFilter = serde_json::from_value(json!({
            "types": ["m.room.*"], "not_types": ["m.room.member"], "not_senders": ["@spam:x"]
        }))
        .unwrap();
        let ev = |t: &str, s: &str| json!({"type": t, "sender": s, "content": {}});
        assert!(f.allows(&ev("m.room.message", "@a:x")));
        assert!(!f.allows(&ev("m.room.member", "@a:x")));
        assert!(!f.allows(&ev("m.reaction", "@a:x")));
        assert!(!f.allows(&ev("m.room.message", "@spam:x")));
        let e = json!({"type": "t", "content": {"body": "b", "a.b": 1, "x": 2}, "sender": "s"});
        assert_eq!(
            select_fields(
                &e,
                &["content.body".into(), "content.a\\.b".into(), "type".into()]
            ),
            json!({"content": {"body": "b", "a.b": 1}, "type": "t"})
        );
    }
}
