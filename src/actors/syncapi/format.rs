//! Events as clients see them: the client format of a stored event (`unsigned` with `age`,
//! the sender's `transaction_id`, `redacted_because`, `prev_content`) and the aggregations
//! bundled into it (`m.replace`, `m.reference`, `m.thread`).

use super::storage::relations::{self, Relation};
use super::storage::room_events::{self, RoomEvent};
use crate::storage::{Conn, StorageError};
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// How events are written for one reader.
#[derive(Debug, Clone)]
pub struct Format<'a> {
    pub user_id: &'a str,
    /// The reader's device: its own sends carry their `transaction_id`.
    pub device_id: Option<&'a str>,
    /// `federation` gives the stored event as is, `room_id` included (`event_format` of
    /// filters).
    pub federation: bool,
    /// `event_fields` of filters.
    pub fields: Option<&'a [String]>,
    /// Sync sections leave `room_id` out (the room is the key above them).
    pub with_room_id: bool,
    /// Relations after this position are not aggregated (the reader left the room there).
    pub upto: i64,
    /// Relations from these senders are not aggregated (the reader ignores them).
    pub ignored: std::sync::Arc<std::collections::HashSet<String>>,
}

impl<'a> Format<'a> {
    /// The client format with `room_id`, for the history endpoints.
    pub fn client(user_id: &'a str, device_id: Option<&'a str>) -> Format<'a> {
        Format {
            user_id,
            device_id,
            federation: false,
            fields: None,
            with_room_id: true,
            upto: i64::MAX,
            ignored: Default::default(),
        }
    }
}

/// The stored JSON of an event (an object; `{}` if it somehow is not).
pub fn json_of(e: &RoomEvent) -> Value {
    serde_json::from_str(&e.json).unwrap_or_else(|_| json!({}))
}

/// One event in `f`'s format, with `bundled` as its `unsigned.m.relations`.
pub fn event(e: &RoomEvent, f: &Format, bundled: Option<&Value>) -> Value {
    let j = json_of(e);
    let mut out = if f.federation {
        // The event as the roomserver stored it, as Synapse's `federation` format: with
        // its `room_id` (sync sections included), hashes, signatures, depth, prev and
        // auth events, and its `event_id` (room versions 3 and later leave it out).
        let mut o = j.clone();
        o["event_id"] = json!(e.event_id);
        if o.get("room_id").is_none() {
            o["room_id"] = json!(e.room_id);
        }
        o
    } else {
        let mut o = Map::new();
        for k in [
            "sender",
            "type",
            "content",
            "origin_server_ts",
            "state_key",
            "redacts",
        ] {
            if let Some(v) = j.get(k) {
                o.insert(k.into(), v.clone());
            }
        }
        o.insert("event_id".into(), json!(e.event_id));
        if f.with_room_id {
            o.insert("room_id".into(), json!(e.room_id));
        }
        Value::Object(o)
    };
    let mut unsigned = Map::new();
    if let Some(ts) = j["origin_server_ts"].as_i64() {
        unsigned.insert("age".into(), json!((crate::storage::now_ms() - ts).max(0)));
    }
    if let (Some(device), Some(txn)) = (&e.sender_device, &e.txn_id) {
        if e.sender == f.user_id && f.device_id == Some(device.as_str()) {
            unsigned.insert("transaction_id".into(), json!(txn));
        }
    }
    if let Some(because) = &e.redacted_because {
        if let Ok(r) = serde_json::from_str::<Value>(because) {
            let redaction = RoomEvent {
                event_id: r["event_id"].as_str().unwrap_or_default().to_owned(),
                room_id: e.room_id.clone(),
                sender: r["sender"].as_str().unwrap_or_default().to_owned(),
                json: because.clone(),
                ..Default::default()
            };
            let inner = Format {
                fields: None,
                ..f.clone()
            };
            unsigned.insert("redacted_because".into(), event(&redaction, &inner, None));
        }
    }
    if let Some(prev) = e
        .prev_state
        .as_deref()
        .and_then(|p| serde_json::from_str::<Value>(p).ok())
    {
        if let Some(o) = prev.as_object() {
            for (k, v) in o {
                unsigned.insert(k.clone(), v.clone());
            }
        }
    }
    if let Some(b) = bundled {
        unsigned.insert("m.relations".into(), b.clone());
    }
    out["unsigned"] = Value::Object(unsigned);
    match f.fields {
        Some(fields) => super::filter::select_fields(&out, fields),
        None => out,
    }
}

/// The `m.relations` to bundle into each of `events` (only those with any).
pub async fn aggregations(
    db: &impl Conn,
    events: &[RoomEvent],
    f: &Format<'_>,
) -> Result<HashMap<String, Value>, StorageError> {
    // Relations never aggregate onto state events or onto relations themselves.
    let targets: Vec<String> = events
        .iter()
        .filter(|e| e.state_key.is_none())
        .map(|e| e.event_id.clone())
        .collect();
    if targets.is_empty() {
        return Ok(HashMap::new());
    }
    let senders: HashMap<&str, &str> = events
        .iter()
        .map(|e| (e.event_id.as_str(), e.sender.as_str()))
        .collect();
    let mut rels = relations::select_to(db, &targets).await?;
    rels.retain(|r| r.position <= f.upto && !f.ignored.contains(&r.sender));
    if rels.is_empty() {
        return Ok(HashMap::new());
    }
    let mut by_target: HashMap<&str, Vec<&Relation>> = HashMap::new();
    for r in &rels {
        by_target.entry(&r.relates_to).or_default().push(r);
    }
    // The full events of the newest edit and the newest thread reply of each target.
    let mut wanted = Vec::new();
    for (target, rs) in &by_target {
        let original_sender = senders.get(target).copied().unwrap_or_default();
        if let Some(edit) = rs
            .iter()
            .filter(|r| r.rel_type == "m.replace" && r.sender == original_sender)
            .max_by_key(|r| r.position)
        {
            wanted.push(edit.event_id.clone());
        }
        if let Some(reply) = rs
            .iter()
            .filter(|r| r.rel_type == "m.thread")
            .max_by_key(|r| r.position)
        {
            wanted.push(reply.event_id.clone());
        }
    }
    let loaded: HashMap<String, RoomEvent> = room_events::select_by_ids(db, &wanted)
        .await?
        .into_iter()
        .map(|e| (e.event_id.clone(), e))
        .collect();
    let inner = Format {
        fields: None,
        ..f.clone()
    };
    let mut out = HashMap::new();
    for (target, rs) in by_target {
        let original_sender = senders.get(target).copied().unwrap_or_default();
        let mut agg = Map::new();
        let edit = rs
            .iter()
            .filter(|r| r.rel_type == "m.replace" && r.sender == original_sender)
            .max_by_key(|r| r.position)
            .and_then(|r| loaded.get(&r.event_id));
        if let Some(edit) = edit {
            agg.insert("m.replace".into(), event(edit, &inner, None));
        }
        let refs: Vec<Value> = rs
            .iter()
            .filter(|r| r.rel_type == "m.reference")
            .map(|r| json!({"event_id": r.event_id}))
            .collect();
        if !refs.is_empty() {
            agg.insert("m.reference".into(), json!({ "chunk": refs }));
        }
        let replies: Vec<&&Relation> = rs.iter().filter(|r| r.rel_type == "m.thread").collect();
        if let Some(latest) = replies
            .iter()
            .max_by_key(|r| r.position)
            .and_then(|r| loaded.get(&r.event_id))
        {
            let participated =
                original_sender == f.user_id || replies.iter().any(|r| r.sender == f.user_id);
            agg.insert(
                "m.thread".into(),
                json!({
                    "latest_event": event(latest, &inner, None),
                    "count": replies.len(),
                    "current_user_participated": participated,
                }),
            );
        }
        if !agg.is_empty() {
            out.insert(target.to_owned(), Value::Object(agg));
        }
    }
    Ok(out)
}

/// Events in `f`'s format with their bundled aggregations.
pub async fn events(
    db: &impl Conn,
    events: &[RoomEvent],
    f: &Format<'_>,
) -> Result<Vec<Value>, StorageError> {
    let agg = aggregations(db, events, f).await?;
    Ok(events
        .iter()
        .map(|e| event(e, f, agg.get(&e.event_id)))
        .collect())
}

/// The relation an event declares: (target, rel_type), from `content.m.relates_to`.
pub fn relation_of(json: &Value) -> Option<(String, String)> {
    let r = &json["content"]["m.relates_to"];
    let target = r["event_id"].as_str()?;
    let rel_type = r["rel_type"].as_str()?;
    Some((target.to_owned(), rel_type.to_owned()))
}
