//! History this server did not see happen, fetched from other servers:
//!
//! - [`input_at_state`] (`InputRoomEventAtState`): an event whose prev events the origin
//!   could not give with `/get_missing_events`, placed on the state before each missing prev
//!   event as the origin told it (`/state_ids`); the events fetched for it are checked and
//!   stored as outliers, and the missing prev events become backward extremities.
//! - [`backfill`] (`PerformBackfill`): events before the room's backward extremities, from
//!   another server's `/backfill`, stored as backfilled outliers and output as
//!   `OldRoomEvent` for the syncapi's `/messages`.
//!
//! Both check each fetched event on its own (format, signatures, content hash, room) and
//! against its auth events (held here or in the same batch), as the import of a joined room
//! does (`remote.rs`).

use super::error::RoomserverError;
use super::input::Deps;
use super::messages::*;
use super::remote::{authorized, room_id_of_create, verify_pdu};
use super::state::{self, StateEntries};
use super::storage::{backward_extremities, event_types, events, rooms, state_keys};
use crate::bus;
use crate::pdu::{self, PduEvent, Verified};
use crate::storage::Conn;
use ruma::events::TimelineEventType;
use ruma::room_version_rules::RoomVersionRules;
use ruma::{CanonicalJsonObject, OwnedEventId, OwnedRoomId};
use serde_json::Value;
use std::collections::{HashMap, HashSet};

#[track_caller]
fn internal(e: impl std::fmt::Display) -> RoomserverError {
    RoomserverError::internal(e)
}

fn bad(why: impl Into<String>) -> RoomserverError {
    RoomserverError::BadRequest(why.into())
}

/// The most prev events one `InputRoomEventAtState` tells the state of.
const MAX_PREV_STATES: usize = 10;
/// The most events one `InputRoomEventAtState` or backfill brings (Synapse's state of big
/// rooms runs to tens of thousands; beyond this the event is refused).
const MAX_FETCHED: usize = 50_000;
/// The most backward extremities one backfill starts from.
const MAX_EXTREMITIES: i64 = 20;

/// Fetched events that passed the checks, not held here before: by ID, the event as stored
/// (redacted when only its content hash failed and `keep_redacted`) and as parsed (with
/// `rejected` set when its auth events refuse it).
#[derive(Default)]
struct Checked {
    jsons: HashMap<OwnedEventId, CanonicalJsonObject>,
    pdus: HashMap<OwnedEventId, PduEvent>,
}

/// Checks events fetched from another server for a room (`version`, `rules`): each one's
/// format, signatures and content hash (a mismatch: redacted when `keep_redacted`, else
/// dropped) and room; those held here already are left out. Then each is authorized by its
/// auth events, which must be held here (not rejected) or among the batch (decided first).
async fn check_fetched(
    deps: &Deps,
    room_id: &str,
    room_nid: i64,
    version: &str,
    rules: &RoomVersionRules,
    values: Vec<Value>,
    keep_redacted: bool,
) -> Result<Checked, RoomserverError> {
    if values.len() > MAX_FETCHED {
        return Err(bad(format!(
            "{} events fetched at once; at most {MAX_FETCHED} are taken",
            values.len()
        )));
    }
    let room = OwnedRoomId::try_from(room_id).map_err(|e| bad(e.to_string()))?;
    let mut out = Checked::default();
    for value in values {
        let Ok(mut object) = serde_json::from_value::<CanonicalJsonObject>(value) else {
            tracing::info!(room_id, "dropped a fetched event that is not a PDU");
            continue;
        };
        object.remove("unsigned");
        let Ok(id) = pdu::event_id_of(&object, version) else {
            tracing::info!(room_id, "dropped a fetched event without an ID");
            continue;
        };
        if out.pdus.contains_key(&id)
            || events::select_by_id(&deps.db, id.as_str()).await?.is_some()
        {
            continue;
        }
        let object = match verify_pdu(deps, &object, version).await {
            Ok(Verified::All) => object,
            Ok(Verified::Signatures) if keep_redacted => pdu::redact(object, version)?,
            Ok(Verified::Signatures) => {
                tracing::info!(event_id = %id, "dropped a fetched event with a wrong content hash");
                continue;
            }
            Err(e) => {
                tracing::info!(event_id = %id, reason = %e, "dropped a fetched event");
                continue;
            }
        };
        let Ok(ev) = PduEvent::from_json(id.clone(), &object, false) else {
            tracing::info!(event_id = %id, "dropped a malformed fetched event");
            continue;
        };
        let right_room = if ev.kind == TimelineEventType::RoomCreate
            && rules.authorization.room_create_event_id_as_room_id
        {
            room_id_of_create(&id)? == room
        } else {
            ev.room_id.as_ref() == Some(&room)
        };
        if !right_room {
            tracing::info!(event_id = %id, "dropped a fetched event of another room");
            continue;
        }
        out.jsons.insert(id.clone(), object);
        out.pdus.insert(id, ev);
    }

    // The auth events held here, as they were decided.
    let mut all: HashMap<OwnedEventId, PduEvent> = out.pdus.clone();
    let mut decided: HashMap<OwnedEventId, bool> = HashMap::new();
    let wanted: HashSet<OwnedEventId> = out
        .pdus
        .values()
        .flat_map(|e| e.auth_events.iter().cloned())
        .filter(|a| !out.pdus.contains_key(a))
        .collect();
    let wanted: Vec<String> = wanted.iter().map(|id| id.to_string()).collect();
    for row in events::select_by_ids_in_room(&deps.db, room_nid, &wanted).await? {
        let id = OwnedEventId::try_from(row.event_id.as_str()).map_err(internal)?;
        let json: CanonicalJsonObject = serde_json::from_str(&row.json).map_err(internal)?;
        all.insert(
            id.clone(),
            PduEvent::from_json(id.clone(), &json, row.rejected)?,
        );
        decided.insert(id, !row.rejected);
    }
    // Version 12: the create event authorizes everything without being named.
    let create_id = if rules.authorization.room_create_event_id_as_room_id {
        let id = OwnedEventId::try_from(format!("${}", room.strip_sigil()).as_str())
            .map_err(internal)?;
        if !all.contains_key(&id) {
            if let Some(row) = events::select_by_id(&deps.db, id.as_str()).await? {
                let json: CanonicalJsonObject =
                    serde_json::from_str(&row.json).map_err(internal)?;
                all.insert(
                    id.clone(),
                    PduEvent::from_json(id.clone(), &json, row.rejected)?,
                );
            }
        }
        id
    } else {
        OwnedEventId::try_from("$unused:localhost").map_err(internal)?
    };
    let mut pending: Vec<OwnedEventId> = out.pdus.keys().cloned().collect();
    pending.sort_by_key(|id| out.pdus[id].depth);
    loop {
        let mut progress = false;
        let mut rest = Vec::new();
        for id in pending {
            let ev = &out.pdus[&id];
            let waiting = ev
                .auth_events
                .iter()
                .any(|a| out.pdus.contains_key(a) && !decided.contains_key(a));
            if waiting {
                rest.push(id);
                continue;
            }
            let ok = ev.auth_events.iter().all(|a| decided.get(a) == Some(&true))
                && authorized(rules, ev, &all, &create_id).is_ok();
            if !ok {
                tracing::info!(event_id = %id, "a fetched event fails the auth rules");
            }
            decided.insert(id, ok);
            progress = true;
        }
        pending = rest;
        if pending.is_empty() || !progress {
            break;
        }
    }
    for id in pending {
        decided.insert(id, false);
    }
    for (id, ev) in out.pdus.iter_mut() {
        ev.rejected = decided.get(id) != Some(&true);
    }
    Ok(out)
}

/// Stores checked events as outliers (and, with `backfilled`, as backfilled history).
async fn store_checked(
    txn: &impl Conn,
    room_nid: i64,
    checked: &Checked,
    backfilled: bool,
) -> Result<(), RoomserverError> {
    let mut ids: Vec<&OwnedEventId> = checked.pdus.keys().collect();
    ids.sort_by_key(|id| (checked.pdus[*id].depth, id.as_str().to_owned()));
    for id in ids {
        let ev = &checked.pdus[id];
        let type_nid = event_types::intern(txn, &ev.kind.to_string()).await?;
        let key_nid = match &ev.state_key {
            Some(k) => Some(state_keys::intern(txn, k).await?),
            None => None,
        };
        let text = serde_json::to_string(&checked.jsons[id]).map_err(internal)?;
        let stored = events::insert_outlier(
            txn,
            &events::NewEvent {
                room_nid,
                event_id: id.as_str(),
                type_nid,
                state_key_nid: key_nid,
                depth: i64::try_from(u64::from(ev.depth)).unwrap_or(i64::MAX),
                json: &text,
                rejected: ev.rejected,
                state_snapshot_nid: None,
                state_after_snapshot_nid: None,
                stream_position: None,
                origin_server_ts: i64::try_from(u64::from(ev.origin_server_ts.0))
                    .unwrap_or(i64::MAX),
            },
        )
        .await?;
        if let (Some(nid), true) = (stored, backfilled) {
            events::set_backfilled(txn, nid).await?;
        }
    }
    Ok(())
}

/// The prev events of a PDU (plain IDs, or `[id, hashes]` pairs in versions 1 and 2).
fn prev_events_of(object: &CanonicalJsonObject) -> Vec<String> {
    let Some(ruma::CanonicalJsonValue::Array(list)) = object.get("prev_events") else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|p| match p {
            ruma::CanonicalJsonValue::String(s) => Some(s.clone()),
            ruma::CanonicalJsonValue::Array(pair) => {
                pair.first().and_then(|v| v.as_str()).map(str::to_owned)
            }
            _ => None,
        })
        .collect()
}

/// [`InputRoomEventAtState`]. Runs in the room's actor.
pub async fn input_at_state(
    deps: &Deps,
    msg: InputRoomEventAtState,
) -> Result<InputOutcome, RoomserverError> {
    let db = &deps.db;
    let room = rooms::select(db, &msg.room_id)
        .await?
        .ok_or(RoomserverError::NoRoom)?;
    let version = room.room_version.as_str();
    let (_, rules) = pdu::rules(version)?;
    let object: CanonicalJsonObject =
        serde_json::from_value(msg.event.clone()).map_err(|e| bad(format!("not a PDU: {e}")))?;
    let prevs = prev_events_of(&object);
    if msg.prev_states.len() > MAX_PREV_STATES {
        return Err(bad(format!(
            "the state of {} prev events was given; at most {MAX_PREV_STATES} are taken",
            msg.prev_states.len()
        )));
    }
    if let Some(p) = msg
        .prev_states
        .iter()
        .find(|p| !prevs.contains(&p.event_id))
    {
        return Err(bad(format!(
            "{} is not one of the event's prev events",
            p.event_id
        )));
    }
    let total: usize = msg.prev_states.iter().map(|p| p.state_before.len()).sum();
    if total > MAX_FETCHED {
        return Err(bad(format!(
            "{total} state events named; at most {MAX_FETCHED} are taken"
        )));
    }
    let checked = check_fetched(
        deps,
        &msg.room_id,
        room.room_nid,
        version,
        &rules,
        msg.fetched,
        false,
    )
    .await?;
    let txn = db.begin().await?;
    store_checked(&txn, room.room_nid, &checked, false).await?;
    for prev in &msg.prev_states {
        let row = events::select_by_id(&txn, &prev.event_id)
            .await?
            .filter(|r| r.room_nid == room.room_nid)
            .ok_or_else(|| {
                bad(format!(
                    "prev event {} could not be had from the origin, or did not verify",
                    prev.event_id
                ))
            })?;
        if row.state_snapshot_nid.is_some() {
            continue;
        }
        let mut wanted = prev.state_before.clone();
        wanted.sort();
        wanted.dedup();
        let rows = events::select_by_ids_in_room(&txn, room.room_nid, &wanted).await?;
        if rows.len() < wanted.len() {
            let held: HashSet<&str> = rows.iter().map(|r| r.event_id.as_str()).collect();
            let lacking: Vec<&str> = wanted
                .iter()
                .map(String::as_str)
                .filter(|id| !held.contains(id))
                .take(3)
                .collect();
            return Err(bad(format!(
                "the state before prev event {} names events that could not be had from the \
                 origin or did not verify ({}{})",
                prev.event_id,
                lacking.join(", "),
                if rows.len() + 3 < wanted.len() {
                    ", ..."
                } else {
                    ""
                }
            )));
        }
        let mut entries = StateEntries::new();
        let mut has_create = false;
        for r in rows.iter().filter(|r| !r.rejected) {
            let Some(key_nid) = r.state_key_nid else {
                return Err(bad(format!(
                    "the state before prev event {} names {}, which is not a state event",
                    prev.event_id, r.event_id
                )));
            };
            if entries.insert((r.type_nid, key_nid), r.event_nid).is_some() {
                return Err(bad(format!(
                    "the state before prev event {} names two events for one state key",
                    prev.event_id
                )));
            }
            let json: Value = serde_json::from_str(&r.json).map_err(internal)?;
            has_create |= json["type"] == "m.room.create";
        }
        if !has_create {
            return Err(bad(format!(
                "the state before prev event {} has no valid m.room.create event",
                prev.event_id
            )));
        }
        let before = state::store(&txn, room.room_nid, &entries).await?;
        events::set_state_snapshot(&txn, row.event_nid, before).await?;
        let after = match (row.state_key_nid, row.rejected) {
            (Some(key_nid), false) => {
                state::derive(
                    &txn,
                    room.room_nid,
                    Some(before),
                    &[((row.type_nid, key_nid), row.event_nid)],
                )
                .await?
            }
            _ => before,
        };
        events::set_state_after(&txn, row.event_nid, after).await?;
    }
    txn.commit().await?;
    let outcome = super::input_events::input(deps, &msg.room_id, msg.event, None).await?;
    if !matches!(outcome, InputOutcome::Rejected { .. }) {
        let held = events::select_in_history(db, room.room_nid, &prevs).await?;
        for p in prevs.iter().filter(|p| !held.contains(*p)) {
            backward_extremities::insert(db, room.room_nid, p).await?;
        }
    }
    Ok(outcome)
}

/// What [`backfill`] asks other servers for: the room's backward extremities not held in
/// its history by now (those that are, are forgotten), and the servers to ask. `None` when
/// there is nothing to ask for, or no one to ask.
pub async fn backfill_request(
    deps: &Deps,
    room_id: &str,
) -> Result<Option<(Vec<String>, Vec<String>)>, RoomserverError> {
    let db = &deps.db;
    let room = rooms::select(db, room_id)
        .await?
        .ok_or(RoomserverError::NoRoom)?;
    let mut from = backward_extremities::select(db, room.room_nid, MAX_EXTREMITIES).await?;
    if from.is_empty() {
        return Ok(None);
    }
    let held = events::select_in_history(db, room.room_nid, &from).await?;
    for id in &held {
        backward_extremities::delete(db, room.room_nid, id).await?;
    }
    from.retain(|id| !held.contains(id));
    let servers: Vec<String> = super::server_reads::joined_servers(db, room_id)
        .await?
        .unwrap_or_default()
        .into_iter()
        .filter(|s| s != deps.server_name.as_str())
        .collect();
    if from.is_empty() || servers.is_empty() {
        return Ok(None);
    }
    Ok(Some((from, servers)))
}

/// Stores what another server's `/backfill` answered for `from` (the backward extremities
/// asked for) and outputs the events new to the room's history, newest first. Runs in the
/// room's actor.
pub async fn store_backfill(
    deps: &Deps,
    room_id: &str,
    from: Vec<String>,
    answer: Vec<Value>,
) -> Result<Backfilled, RoomserverError> {
    let db = &deps.db;
    let room = rooms::select(db, room_id)
        .await?
        .ok_or(RoomserverError::NoRoom)?;
    let version = room.room_version.as_str();
    let (_, rules) = pdu::rules(version)?;
    // The IDs the answer names (held here or not).
    let mut named: Vec<String> = Vec::new();
    for value in &answer {
        if let Ok(object) = serde_json::from_value::<CanonicalJsonObject>(value.clone()) {
            if let Ok(id) = pdu::event_id_of(&object, version) {
                named.push(id.to_string());
            }
        }
    }
    let checked =
        check_fetched(deps, room_id, room.room_nid, version, &rules, answer, true).await?;
    let txn = db.begin().await?;
    // Held here already, outside the history (the state of our join): history now.
    let in_history = events::select_in_history(&txn, room.room_nid, &named).await?;
    let held: Vec<String> = named
        .iter()
        .filter(|id| !in_history.contains(*id))
        .filter(|id| !checked.pdus.keys().any(|k| k.as_str() == id.as_str()))
        .cloned()
        .collect();
    let mut output: Vec<(i64, i64, String, Value)> = Vec::new();
    for row in events::select_by_ids_in_room(&txn, room.room_nid, &held).await? {
        events::set_backfilled(&txn, row.event_nid).await?;
        if !row.rejected {
            let json: Value = serde_json::from_str(&row.json).map_err(internal)?;
            let ts = json["origin_server_ts"].as_i64().unwrap_or(0);
            output.push((row.depth, ts, row.event_id, json));
        }
    }
    store_checked(&txn, room.room_nid, &checked, true).await?;
    for (id, ev) in checked.pdus.iter().filter(|(_, ev)| !ev.rejected) {
        let json = serde_json::to_value(&checked.jsons[id]).map_err(internal)?;
        output.push((
            i64::try_from(u64::from(ev.depth)).unwrap_or(i64::MAX),
            i64::try_from(u64::from(ev.origin_server_ts.0)).unwrap_or(i64::MAX),
            id.to_string(),
            json,
        ));
    }
    // The backward extremities move back: what was asked for is forgotten when it came (or
    // when nothing new did: the servers have nothing more), and the prev events of what came
    // that are not in the history take their place.
    for id in from
        .iter()
        .filter(|id| named.contains(id) || output.is_empty())
    {
        backward_extremities::delete(&txn, room.room_nid, id).await?;
    }
    let mut prevs: Vec<String> = Vec::new();
    for (_, _, id, json) in &output {
        backward_extremities::delete(&txn, room.room_nid, id).await?;
        let object: CanonicalJsonObject = serde_json::from_value(json.clone()).map_err(internal)?;
        prevs.extend(prev_events_of(&object));
    }
    prevs.sort();
    prevs.dedup();
    let placed = events::select_in_history(&txn, room.room_nid, &prevs).await?;
    for p in prevs.iter().filter(|p| !placed.contains(*p)) {
        backward_extremities::insert(&txn, room.room_nid, p).await?;
    }
    output.sort_by(|a, b| (b.0, b.1, &b.2).cmp(&(a.0, a.1, &a.2)));
    let mut appended = Vec::with_capacity(output.len());
    for (_, _, event_id, event) in &output {
        let out = RoomserverOutput::OldRoomEvent {
            room_id: room_id.to_owned(),
            event_id: event_id.clone(),
            event: event.clone(),
        };
        appended.push(bus::append(&txn, super::input::STREAM, room_id, &out).await?);
    }
    deps.bus.commit(txn, &appended).await?;
    tracing::info!(room_id, events = output.len(), "backfilled history");
    Ok(Backfilled {
        asked: true,
        events: output.len() as u64,
    })
}
