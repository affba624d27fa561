//! Reads for other servers: what the federation API serves from the room DAG (`/event`,
//! `/state`, `/state_ids`, `/event_auth`, `/backfill`, `/get_missing_events`, and the
//! servers in a room for `/query/directory`).
//!
//! Two checks guard them (Synapse's `assert_host_in_room` and `filter_events_for_server`):
//! - **May the server read the room at all?** One of its users is joined now (whatever the
//!   history visibility: a `world_readable` room included, as Synapse); `NotAllowed`
//!   otherwise. The room's server ACL is checked by the caller
//!   (`federation::acl`), which knows the request.
//! - **May it see each event?** [`ServerViewer`]: the history visibility for servers
//!   (`history_visibility::allows_server`) at the state after the event (the state before it
//!   plus the event itself, as Synapse judges by the event's state group): `world_readable`
//!   and `shared` events are seen, `invited` ones when one of its users was invited or joined
//!   then, `joined` ones when one was joined then. An event it may not see is served
//!   redacted, as Synapse does for every one of these reads. An event whose state before it
//!   is not known here (an outlier; the create event has none) counts as `shared`, as
//!   Synapse assumes for outliers.

use super::error::RoomserverError;
use super::input;
use super::messages::*;
use super::state;
use super::storage::{event_types, events, memberships, rooms, state_keys};
use crate::history_visibility::{self as rule, HistoryVisibility};
use crate::pdu;
use crate::storage::Db;
use serde_json::Value;
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet};

/// Fails with `NotAllowed` unless `server` may read the room: one of its users is joined
/// now (Synapse's `assert_host_in_room`; the spec's "the requesting host is not in the
/// room"). A `world_readable` room is no exception: its events are anyone's to read through
/// a server in the room, not through this one (Synapse serves a server with nobody joined
/// nothing either; peeking over federation is not in the spec).
async fn ensure_may_read(
    db: &Db,
    room_nid: i64,
    room_id: &str,
    server: &str,
) -> Result<(), RoomserverError> {
    if memberships::select_of_server(db, room_nid, "join", server)
        .await?
        .is_empty()
    {
        return Err(RoomserverError::NotAllowed(format!(
            "Server {server} is not in room {room_id}"
        )));
    }
    Ok(())
}

/// The room, once `server` may read it.
async fn readable_room(
    db: &Db,
    room_id: &str,
    server: &str,
) -> Result<rooms::Room, RoomserverError> {
    let room = rooms::select(db, room_id)
        .await?
        .ok_or(RoomserverError::NoRoom)?;
    ensure_may_read(db, room.room_nid, room_id, server).await?;
    Ok(room)
}

/// One of the room's events (`NoEvent` when it is not stored, in another room, or
/// rejected).
async fn room_event(
    db: &Db,
    room_nid: i64,
    event_id: &str,
) -> Result<events::EventRow, RoomserverError> {
    match events::select_by_id(db, event_id).await? {
        Some(row) if row.room_nid == room_nid && !row.rejected => Ok(row),
        _ => Err(RoomserverError::NoEvent(event_id.to_owned())),
    }
}

/// The event IDs an event refers to under `key` (`prev_events`, `auth_events`), in either
/// event format (plain IDs, or version 1-2 `[id, hashes]` pairs).
fn refs(json: &str, key: &str) -> Vec<String> {
    let Ok(event) = serde_json::from_str::<Value>(json) else {
        return Vec::new();
    };
    event
        .get(key)
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|r| match r {
                    Value::Array(pair) => pair.first().and_then(Value::as_str),
                    id => id.as_str(),
                })
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

/// What decides which of a room's events one server may see; settings and memberships are
/// read once per state snapshot.
pub struct ServerViewer<'a> {
    server: &'a str,
    setting_type: Option<i64>,
    member_type: Option<i64>,
    empty_key: Option<i64>,
    /// The state keys of the server's users who ever had a member event in the room.
    user_keys: Vec<i64>,
    /// (setting, the server's users' memberships by state key) by state snapshot.
    by_snapshot: HashMap<i64, (HistoryVisibility, HashMap<i64, String>)>,
}

impl<'a> ServerViewer<'a> {
    /// Prepares the checks of `server` in a room (3 statements).
    pub async fn load(
        db: &Db,
        room_nid: i64,
        server: &'a str,
    ) -> Result<ServerViewer<'a>, RoomserverError> {
        let types = event_types::select_nids(
            db,
            &["m.room.history_visibility".into(), "m.room.member".into()],
        )
        .await?;
        let member_type = types.get("m.room.member").copied();
        let user_keys = match member_type {
            Some(t) => events::select_keys_of_server(db, room_nid, t, server)
                .await?
                .into_iter()
                .map(|(nid, _)| nid)
                .collect(),
            None => Vec::new(),
        };
        Ok(ServerViewer {
            server,
            setting_type: types.get("m.room.history_visibility").copied(),
            member_type,
            empty_key: state_keys::select_nid(db, "").await?,
            user_keys,
            by_snapshot: HashMap::new(),
        })
    }

    /// Whether the server may see `row` (one of the room's events) unredacted.
    pub async fn may_see(
        &mut self,
        db: &Db,
        row: &events::EventRow,
    ) -> Result<bool, RoomserverError> {
        let (mut setting, mut members) = match row.state_snapshot_nid {
            Some(snapshot) => self.at_snapshot(db, snapshot).await?,
            None => (HistoryVisibility::Shared, HashMap::new()),
        };
        // The state after the event: the event itself, when it is accepted state.
        if let (Some(key), false) = (row.state_key_nid, row.rejected) {
            if Some(row.type_nid) == self.setting_type && Some(key) == self.empty_key {
                setting = HistoryVisibility::from_event_json(&row.json);
            }
            if Some(row.type_nid) == self.member_type && self.user_keys.contains(&key) {
                match rule::membership_of_event(&row.json) {
                    Some(m) => members.insert(key, m),
                    None => members.remove(&key),
                };
            }
        }
        let visible = rule::allows_server(setting, members.values().map(String::as_str));
        if !visible {
            tracing::debug!(server = self.server, event_id = %row.event_id, "served redacted");
        }
        Ok(visible)
    }

    /// The setting and the server's users' memberships in a state snapshot.
    async fn at_snapshot(
        &mut self,
        db: &Db,
        snapshot: i64,
    ) -> Result<(HistoryVisibility, HashMap<i64, String>), RoomserverError> {
        if let Some(found) = self.by_snapshot.get(&snapshot) {
            return Ok(found.clone());
        }
        let setting_key = self.setting_type.zip(self.empty_key);
        let mut keys: Vec<state::StateKey> = setting_key.into_iter().collect();
        if let Some(t) = self.member_type {
            keys.extend(self.user_keys.iter().map(|k| (t, *k)));
        }
        let entries = if keys.is_empty() {
            state::StateEntries::new()
        } else {
            state::load_keys(db, snapshot, &keys).await?
        };
        let nids: Vec<i64> = entries.values().copied().collect();
        let rows = events::select_by_nids(db, &nids).await?;
        let json_of = |nid: i64| rows.iter().find(|r| r.event_nid == nid).map(|r| &r.json);
        // No setting in the state: shared (the spec's default); one whose event is missing
        // or unreadable: joined.
        let setting = match setting_key.and_then(|k| entries.get(&k)) {
            None => HistoryVisibility::default(),
            Some(nid) => json_of(*nid).map_or(HistoryVisibility::Joined, |j| {
                HistoryVisibility::from_event_json(j)
            }),
        };
        let members: HashMap<i64, String> = entries
            .iter()
            .filter(|((t, _), _)| Some(*t) == self.member_type)
            .filter_map(|((_, k), nid)| {
                let membership = rule::membership_of_event(json_of(*nid)?)?;
                Some((*k, membership))
            })
            .collect();
        let found = (setting, members);
        self.by_snapshot.insert(snapshot, found.clone());
        Ok(found)
    }
}

/// Serves rows as PDUs: redacted when a redaction applies, or when the viewer may not see
/// them.
async fn serve(
    db: &Db,
    room_id: &str,
    room_version: &str,
    viewer: &mut ServerViewer<'_>,
    rows: Vec<events::EventRow>,
) -> Result<Vec<Value>, RoomserverError> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let visible = viewer.may_see(db, &row).await?;
        let stored = input::stored(db, room_id, room_version, row).await?;
        out.push(if visible || stored.redacted_because.is_some() {
            stored.json
        } else {
            redacted(stored.json, room_version)?
        });
    }
    Ok(out)
}

/// An event as the room version's redaction algorithm leaves it.
fn redacted(json: Value, room_version: &str) -> Result<Value, RoomserverError> {
    let object: ruma::CanonicalJsonObject =
        serde_json::from_value(json).map_err(|e| RoomserverError::internal(e))?;
    serde_json::to_value(pdu::redact(object, room_version)?)
        .map_err(|e| RoomserverError::internal(e))
}

/// Every event of the room reachable by `auth_events` from `from` (the starting events
/// themselves only when reached), least deep first. Read a generation at a time.
async fn auth_chain(
    db: &Db,
    room_nid: i64,
    from: &[events::EventRow],
) -> Result<Vec<events::EventRow>, RoomserverError> {
    let mut seen = HashSet::new();
    let mut todo: Vec<String> = from
        .iter()
        .flat_map(|r| refs(&r.json, "auth_events"))
        .filter(|id| seen.insert(id.clone()))
        .collect();
    let mut out = Vec::new();
    while !todo.is_empty() {
        let rows = events::select_by_ids_in_room(db, room_nid, &todo).await?;
        todo = rows
            .iter()
            .flat_map(|r| refs(&r.json, "auth_events"))
            .filter(|id| seen.insert(id.clone()))
            .collect();
        out.extend(rows);
    }
    out.sort_by_key(|r| (r.depth, r.event_nid));
    Ok(out)
}

/// The state before one of the room's events, as rows.
async fn state_before(
    db: &Db,
    room_nid: i64,
    event_id: &str,
) -> Result<Vec<events::EventRow>, RoomserverError> {
    let row = room_event(db, room_nid, event_id).await?;
    let Some(snapshot) = row.state_snapshot_nid else {
        // Only the create event has no state before it; any other is an event whose state
        // is not known here.
        let is_create = event_types::select_nid(db, "m.room.create").await? == Some(row.type_nid);
        return if is_create {
            Ok(Vec::new())
        } else {
            Err(RoomserverError::NoEvent(event_id.to_owned()))
        };
    };
    let nids: Vec<i64> = state::load(db, snapshot).await?.values().copied().collect();
    let mut rows = events::select_by_nids(db, &nids).await?;
    rows.sort_by_key(|r| r.event_nid);
    Ok(rows)
}

/// `QueryEventForServer`.
pub async fn event(
    db: &Db,
    event_id: &str,
    server: &str,
) -> Result<Option<ServerEvent>, RoomserverError> {
    let Some(row) = events::select_by_id(db, event_id).await? else {
        return Ok(None);
    };
    let (room_id, version) = rooms::select_by_nid(db, row.room_nid)
        .await?
        .ok_or_else(|| RoomserverError::internal(format!("event {event_id} without a room")))?;
    ensure_may_read(db, row.room_nid, &room_id, server).await?;
    let mut viewer = ServerViewer::load(db, row.room_nid, server).await?;
    let pdu = serve(db, &room_id, &version, &mut viewer, vec![row])
        .await?
        .pop()
        .ok_or_else(|| RoomserverError::internal("an event served as nothing"))?;
    Ok(Some(ServerEvent {
        room_id,
        room_version: version,
        pdu,
    }))
}

/// `QueryStateForServer`.
pub async fn state_at(
    db: &Db,
    room_id: &str,
    event_id: &str,
    server: &str,
) -> Result<ServerState, RoomserverError> {
    let room = readable_room(db, room_id, server).await?;
    let state = state_before(db, room.room_nid, event_id).await?;
    let chain = auth_chain(db, room.room_nid, &state).await?;
    Ok(ServerState {
        pdus: whole(db, room_id, &room.room_version, state).await?,
        auth_chain: whole(db, room_id, &room.room_version, chain).await?,
    })
}

/// Serves rows as PDUs as they are stored (redacted only when a redaction applies): the
/// state and auth events a server needs to check the room, as Synapse serves them.
async fn whole(
    db: &Db,
    room_id: &str,
    room_version: &str,
    rows: Vec<events::EventRow>,
) -> Result<Vec<Value>, RoomserverError> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        out.push(input::stored(db, room_id, room_version, row).await?.json);
    }
    Ok(out)
}

/// `QueryStateIdsForServer`.
pub async fn state_ids_at(
    db: &Db,
    room_id: &str,
    event_id: &str,
    server: &str,
) -> Result<ServerStateIds, RoomserverError> {
    let room = readable_room(db, room_id, server).await?;
    let state = state_before(db, room.room_nid, event_id).await?;
    let chain = auth_chain(db, room.room_nid, &state).await?;
    Ok(ServerStateIds {
        pdu_ids: state.into_iter().map(|r| r.event_id).collect(),
        auth_chain_ids: chain.into_iter().map(|r| r.event_id).collect(),
    })
}

/// `QueryEventAuthForServer`.
pub async fn event_auth(
    db: &Db,
    room_id: &str,
    event_id: &str,
    server: &str,
) -> Result<Vec<Value>, RoomserverError> {
    let room = readable_room(db, room_id, server).await?;
    let row = room_event(db, room.room_nid, event_id).await?;
    let chain = auth_chain(db, room.room_nid, &[row]).await?;
    whole(db, room_id, &room.room_version, chain).await
}

/// `QueryBackfillForServer`.
pub async fn backfill(
    db: &Db,
    room_id: &str,
    event_ids: &[String],
    limit: u64,
    server: &str,
) -> Result<ServerPdus, RoomserverError> {
    let room = readable_room(db, room_id, server).await?;
    let limit = limit.min(MAX_BACKFILL) as usize;
    if limit == 0 {
        return Ok(ServerPdus {
            room_version: room.room_version,
            pdus: Vec::new(),
        });
    }
    // The deepest event not yet taken comes next (ties: the later stored).
    let mut queue: BinaryHeap<(i64, i64, String)> = BinaryHeap::new();
    let mut rows: HashMap<String, events::EventRow> = HashMap::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut wanted: Vec<String> = event_ids
        .iter()
        .filter(|id| seen.insert((*id).clone()))
        .cloned()
        .collect();
    let mut taken = Vec::new();
    loop {
        if !wanted.is_empty() {
            for row in events::select_by_ids_in_room(db, room.room_nid, &wanted).await? {
                queue.push((row.depth, row.event_nid, row.event_id.clone()));
                rows.insert(row.event_id.clone(), row);
            }
        }
        let Some(row) = queue.pop().and_then(|(_, _, id)| rows.remove(&id)) else {
            break;
        };
        wanted = refs(&row.json, "prev_events")
            .into_iter()
            .filter(|p| seen.insert(p.clone()))
            .collect();
        if !row.rejected {
            taken.push(row);
            if taken.len() >= limit {
                break;
            }
        }
    }
    let mut viewer = ServerViewer::load(db, room.room_nid, server).await?;
    let pdus = serve(db, room_id, &room.room_version, &mut viewer, taken).await?;
    Ok(ServerPdus {
        room_version: room.room_version,
        pdus,
    })
}

/// `QueryMissingEventsForServer`.
pub async fn missing_events(
    db: &Db,
    msg: &QueryMissingEventsForServer,
) -> Result<ServerPdus, RoomserverError> {
    let room = readable_room(db, &msg.room_id, &msg.server_name).await?;
    let limit = msg.limit.min(MAX_MISSING_EVENTS) as usize;
    let min_depth = i64::try_from(msg.min_depth).unwrap_or(i64::MAX);
    let mut seen: HashSet<String> = msg
        .earliest_events
        .iter()
        .chain(&msg.latest_events)
        .cloned()
        .collect();
    let earliest: HashSet<&String> = msg.earliest_events.iter().collect();
    let latest: Vec<String> = msg
        .latest_events
        .iter()
        .filter(|id| !earliest.contains(id))
        .cloned()
        .collect();
    let mut front: Vec<events::EventRow> =
        events::select_by_ids_in_room(db, room.room_nid, &latest)
            .await?
            .into_iter()
            .filter(|row| !row.rejected)
            .collect();
    let mut found = Vec::new();
    while !front.is_empty() && found.len() < limit {
        let prevs: Vec<String> = front
            .iter()
            .flat_map(|row| refs(&row.json, "prev_events"))
            .filter(|p| seen.insert(p.clone()))
            .collect();
        let mut next: Vec<events::EventRow> =
            events::select_by_ids_in_room(db, room.room_nid, &prevs)
                .await?
                .into_iter()
                .filter(|p| !p.rejected && p.depth >= min_depth)
                .collect();
        // Deepest first within a step, so the cut at the limit keeps the nearest events.
        next.sort_by_key(|r| std::cmp::Reverse((r.depth, r.event_nid)));
        found.extend(next.iter().take(limit - found.len()).cloned());
        front = next;
    }
    // Found walking back from the latest events: oldest first now.
    found.reverse();
    let mut viewer = ServerViewer::load(db, room.room_nid, &msg.server_name).await?;
    let pdus = serve(db, &msg.room_id, &room.room_version, &mut viewer, found).await?;
    Ok(ServerPdus {
        room_version: room.room_version,
        pdus,
    })
}

/// `QueryEventByTimestampForServer`.
pub async fn event_by_timestamp(
    db: &Db,
    msg: &QueryEventByTimestampForServer,
) -> Result<Option<(String, i64)>, RoomserverError> {
    let room = readable_room(db, &msg.room_id, &msg.server_name).await?;
    let from = (msg.ts, if msg.forward { i64::MIN } else { i64::MAX });
    Ok(
        events::select_by_ts(db, room.room_nid, from, msg.forward, 1)
            .await?
            .into_iter()
            .next()
            .map(|(row, ts)| (row.event_id, ts)),
    )
}

/// `QueryJoinedServers`.
pub async fn joined_servers(
    db: &Db,
    room_id: &str,
) -> Result<Option<Vec<String>>, RoomserverError> {
    let Some(room) = rooms::select(db, room_id).await? else {
        return Ok(None);
    };
    let servers: BTreeSet<String> = memberships::select_with(db, room.room_nid, "join")
        .await?
        .iter()
        .filter_map(|u| memberships::server_of(u).map(str::to_owned))
        .collect();
    Ok(Some(servers.into_iter().collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn references_in_both_formats() {
        let v3 = json!({"prev_events": ["$a", "$b"], "auth_events": ["$c"]}).to_string();
        assert_eq!(refs(&v3, "prev_events"), ["$a", "$b"]);
        assert_eq!(refs(&v3, "auth_events"), ["$c"]);
        let v1 = json!({"prev_events": [["$a:x", {"sha256": "h"}]]}).to_string();
        assert_eq!(refs(&v1, "prev_events"), ["$a:x"]);
        assert!(refs(&v1, "auth_events").is_empty());
        assert!(refs("{not json", "prev_events").is_empty());
        assert!(refs(
            &json!({"prev_events": [1, null]}).to_string(),
            "prev_events"
        )
        .is_empty());
    }
}
