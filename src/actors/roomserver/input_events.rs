//! The input path of events built elsewhere (federation will feed it; tests inject forks
//! through it): verify, place in the DAG, authorize against the auth events and the state
//! before the event (resolving the states of several prev events with ruma's state
//! resolution v2, or in room version 1 with `state_res_v1`), store (rejected events too: they
//! stay in the DAG), soft-fail what the room's current state refuses (stored, nothing more),
//! and otherwise move the room's extremities and current state, resolving forks; the
//! memberships index follows every member event that entered or left the current state, an
//! allowed redaction applies (or, when its target is not stored yet, waits for it and applies
//! when it arrives), and the event is output. Callers serialize per room.

use super::error::RoomserverError;
use super::input::{redaction_target, Deps, Redactor};
use super::messages::{InputOutcome, RoomserverOutput};
use super::state::{self, StateEntries};
use super::state_res_v1;
use super::storage::{event_types, events, memberships, pending_redactions, rooms, state_keys};
use crate::bus;
use crate::pdu::{self, PduEvent, Verified};
use crate::storage::Conn;
use ruma::events::{StateEventType, TimelineEventType};
use ruma::room_version_rules::{RoomVersionRules, StateResolutionVersion};
use ruma::state_res::{self, utils::event_id_set::EventIdSet, StateMap};
use ruma::{CanonicalJsonObject, EventId, OwnedEventId};
use std::collections::{HashMap, HashSet};

#[track_caller]
fn internal(e: impl std::fmt::Display) -> RoomserverError {
    RoomserverError::internal(e)
}

/// Events loaded so far, by ID, with their rows.
#[derive(Default)]
struct Cache {
    events: HashMap<OwnedEventId, PduEvent>,
    rows: HashMap<OwnedEventId, events::EventRow>,
}

impl Cache {
    async fn load(
        &mut self,
        db: &impl Conn,
        id: &EventId,
    ) -> Result<Option<&PduEvent>, RoomserverError> {
        if !self.events.contains_key(id) {
            let Some(row) = events::select_by_id(db, id.as_str()).await? else {
                return Ok(None);
            };
            let json: CanonicalJsonObject =
                serde_json::from_str(&row.json).map_err(|e| internal(e))?;
            let ev = PduEvent::from_json(id.to_owned(), &json, row.rejected)?;
            self.events.insert(id.to_owned(), ev);
            self.rows.insert(id.to_owned(), row);
        }
        Ok(self.events.get(id))
    }

    async fn load_nids(
        &mut self,
        db: &impl Conn,
        nids: &[i64],
    ) -> Result<Vec<OwnedEventId>, RoomserverError> {
        let mut ids = Vec::with_capacity(nids.len());
        for row in events::select_by_nids(db, nids).await? {
            let id = OwnedEventId::try_from(row.event_id.as_str()).map_err(|e| internal(e))?;
            if !self.events.contains_key(&id) {
                let json: CanonicalJsonObject =
                    serde_json::from_str(&row.json).map_err(|e| internal(e))?;
                self.events.insert(
                    id.clone(),
                    PduEvent::from_json(id.clone(), &json, row.rejected)?,
                );
                self.rows.insert(id.clone(), row);
            }
            ids.push(id);
        }
        Ok(ids)
    }

    /// A snapshot as a state map keyed by (type, state_key).
    async fn state_map(
        &mut self,
        db: &impl Conn,
        snapshot: Option<i64>,
    ) -> Result<StateMap<OwnedEventId>, RoomserverError> {
        let Some(snapshot) = snapshot else {
            return Ok(StateMap::new());
        };
        let nids: Vec<i64> = state::load(db, snapshot).await?.values().copied().collect();
        let ids = self.load_nids(db, &nids).await?;
        Ok(ids
            .into_iter()
            .filter_map(|id| {
                let ev = self.events.get(&id)?;
                let key = ev.state_key.clone()?;
                Some(((StateEventType::from(ev.kind.to_string()), key), id))
            })
            .collect())
    }

    /// The state after an event: the state before it, plus itself when it is an accepted
    /// state event.
    async fn state_after(
        &mut self,
        db: &impl Conn,
        id: &EventId,
    ) -> Result<StateMap<OwnedEventId>, RoomserverError> {
        let snapshot = self.rows.get(id).and_then(|r| r.state_snapshot_nid);
        let mut map = self.state_map(db, snapshot).await?;
        if let Some(ev) = self.events.get(id) {
            if let (Some(key), false) = (&ev.state_key, ev.rejected) {
                map.insert(
                    (StateEventType::from(ev.kind.to_string()), key.clone()),
                    id.to_owned(),
                );
            }
        }
        Ok(map)
    }

    /// The full auth chain of some events (every event reachable by auth edges).
    async fn auth_chain(
        &mut self,
        db: &impl Conn,
        from: impl Iterator<Item = OwnedEventId>,
    ) -> Result<HashSet<OwnedEventId>, RoomserverError> {
        let mut seen = HashSet::new();
        let mut todo: Vec<OwnedEventId> = from.collect();
        while let Some(id) = todo.pop() {
            let parents: Vec<OwnedEventId> = match self.load(db, &id).await? {
                Some(ev) => ev.auth_events.clone(),
                None => continue,
            };
            for p in parents {
                if seen.insert(p.clone()) {
                    todo.push(p);
                }
            }
        }
        Ok(seen)
    }

    /// State resolution of several state sets: v1 in room version 1, else v2.
    async fn resolve(
        &mut self,
        db: &impl Conn,
        rules: &RoomVersionRules,
        sets: &[StateMap<OwnedEventId>],
    ) -> Result<StateMap<OwnedEventId>, RoomserverError> {
        if rules.state_res == StateResolutionVersion::V1 {
            for id in sets.iter().flat_map(|s| s.values()) {
                self.load(db, id).await?;
            }
            let events = &self.events;
            return Ok(state_res_v1::resolve(&rules.authorization, sets, |id| {
                events.get(id)
            }));
        }
        let mut chains = Vec::with_capacity(sets.len());
        for set in sets {
            let chain = self.auth_chain(db, set.values().cloned()).await?;
            // The events themselves are loaded too, for the fetch below.
            for id in set.values().chain(chain.iter()) {
                self.load(db, id).await?;
            }
            chains.push(chain.into_iter().collect::<EventIdSet<OwnedEventId>>());
        }
        let v2 = rules
            .state_res
            .v2_rules()
            .ok_or_else(|| internal("room version without state resolution v2"))?;
        let events = &self.events;
        let subgraph = |conflicted: &StateMap<Vec<OwnedEventId>>| {
            Some(conflicted_subgraph(events, conflicted.values().flatten()))
        };
        state_res::resolve(
            &rules.authorization,
            v2,
            sets.iter(),
            chains,
            |id: &EventId| events.get(id),
            subgraph,
        )
        .map_err(|e| internal(e))
    }

    /// Turns a state map back into storable entries.
    async fn entries(
        &mut self,
        db: &impl Conn,
        map: &StateMap<OwnedEventId>,
    ) -> Result<StateEntries, RoomserverError> {
        let mut out = StateEntries::new();
        for id in map.values() {
            self.load(db, id).await?;
            let row = self
                .rows
                .get(id)
                .ok_or_else(|| internal(format!("state event {id} not stored")))?;
            if let Some(key) = row.state_key_nid {
                out.insert((row.type_nid, key), row.event_nid);
            }
        }
        Ok(out)
    }
}

/// The conflicted state subgraph (room version 12): the events that lie on an auth path
/// from one conflicted event to another, the conflicted events included.
fn conflicted_subgraph<'a>(
    events: &HashMap<OwnedEventId, PduEvent>,
    conflicted: impl Iterator<Item = &'a OwnedEventId>,
) -> EventIdSet<OwnedEventId> {
    let conflicted: HashSet<OwnedEventId> = conflicted.cloned().collect();
    // Everything reachable from the conflicted events by auth edges.
    let mut reach: HashSet<OwnedEventId> = conflicted.clone();
    let mut todo: Vec<OwnedEventId> = conflicted.iter().cloned().collect();
    while let Some(id) = todo.pop() {
        for p in events
            .get(&id)
            .map(|e| e.auth_events.clone())
            .unwrap_or_default()
        {
            if reach.insert(p.clone()) {
                todo.push(p);
            }
        }
    }
    // ...of which those from which a conflicted event is reachable (or which are one).
    let leads_to_conflict = |start: &OwnedEventId| {
        let mut seen = HashSet::new();
        let mut todo = vec![start.clone()];
        while let Some(id) = todo.pop() {
            if conflicted.contains(&id) {
                return true;
            }
            for p in events
                .get(&id)
                .map(|e| e.auth_events.clone())
                .unwrap_or_default()
            {
                if seen.insert(p.clone()) {
                    todo.push(p);
                }
            }
        }
        false
    };
    reach
        .into_iter()
        .filter(|id| leads_to_conflict(id))
        .collect()
}

/// Accepts or rejects one event built elsewhere. Errors are for events that cannot be
/// placed at all (bad signature, unknown prev events, another room).
pub async fn input(
    deps: &Deps,
    room_id: &str,
    event: serde_json::Value,
    send_on_behalf_of: Option<String>,
) -> Result<InputOutcome, RoomserverError> {
    let db = &deps.db;
    let room = rooms::select(db, room_id)
        .await?
        .ok_or(RoomserverError::NoRoom)?;
    let (_, rules) = pdu::rules(&room.room_version)?;
    let mut json: CanonicalJsonObject = serde_json::from_value(event)
        .map_err(|e| RoomserverError::BadRequest(format!("not a PDU: {e}")))?;
    let event_id = pdu::event_id_of(&json, &room.room_version)?;
    if let Some(row) = events::select_by_id(db, event_id.as_str()).await? {
        let event_id = event_id.to_string();
        return Ok(if row.rejected {
            InputOutcome::Rejected {
                event_id,
                reason: "rejected when it first arrived".into(),
            }
        } else if row.soft_failed {
            InputOutcome::SoftFailed {
                event_id,
                reason: "soft-failed when it first arrived".into(),
            }
        } else {
            InputOutcome::Accepted { event_id }
        });
    }
    let keys = deps
        .keyring
        .keys_for(&json, &rules, &deps.server_name, &deps.key)
        .await?;
    match pdu::verify(&json, &room.room_version, &keys) {
        Ok(Verified::All) => {}
        // A content hash mismatch: the event is authorized (and kept) redacted.
        Ok(Verified::Signatures) => json = pdu::redact(json, &room.room_version)?,
        Err(e) => {
            return Err(RoomserverError::BadRequest(format!(
                "event {event_id} does not verify: {e}"
            )))
        }
    }
    let ev = PduEvent::from_json(event_id.clone(), &json, false)?;
    if ev.room_id.as_ref().is_some_and(|r| r.as_str() != room_id) {
        return Err(RoomserverError::BadRequest(
            "event is for another room".into(),
        ));
    }

    let mut cache = Cache::default();
    let mut before_sets = Vec::new();
    for prev in &ev.prev_events {
        if cache.load(db, prev).await?.is_none() {
            return Err(RoomserverError::BadRequest(format!(
                "prev event {prev} is unknown here"
            )));
        }
        // An outlier (the state of a room joined over federation) has no state here to
        // build on: the origin must tell it (`InputRoomEventAtState`).
        if cache
            .rows
            .get(prev)
            .is_some_and(|r| r.state_snapshot_nid.is_none())
        {
            return Err(RoomserverError::BadRequest(format!(
                "the state at prev event {prev} is unknown here"
            )));
        }
        before_sets.push(cache.state_after(db, prev).await?);
    }
    let state_before = match before_sets.len() {
        0 => {
            return Err(RoomserverError::BadRequest(
                "an event needs prev events".into(),
            ))
        }
        1 => before_sets.remove(0),
        _ => cache.resolve(db, &rules, &before_sets).await?,
    };

    // Authorization: format-independent rules, then the auth events, then the state before.
    let mut auth_state = StateMap::new();
    for id in ev.auth_events.clone() {
        if let Some(a) = cache.load(db, &id).await? {
            if let Some(key) = a.state_key.clone() {
                auth_state.insert((StateEventType::from(a.kind.to_string()), key), id);
            }
        }
    }
    let create_key = (StateEventType::RoomCreate, String::new());
    if let Some(create) = state_before.get(&create_key).cloned() {
        auth_state.entry(create_key).or_insert(create);
    }
    for id in state_before.values() {
        cache.load(db, id).await?;
    }
    let verdict = {
        let events = &cache.events;
        let fetch_event = |id: &EventId| events.get(id);
        let auth_lookup = |t: &StateEventType, k: &str| {
            auth_state
                .get(&(t.clone(), k.to_owned()))
                .and_then(|id| events.get(id))
        };
        let before_lookup = |t: &StateEventType, k: &str| {
            state_before
                .get(&(t.clone(), k.to_owned()))
                .and_then(|id| events.get(id))
        };
        state_res::check_state_independent_auth_rules(&rules.authorization, &ev, fetch_event)
            .and_then(|_| {
                state_res::check_state_dependent_auth_rules(&rules.authorization, &ev, auth_lookup)
            })
            .and_then(|_| {
                state_res::check_state_dependent_auth_rules(
                    &rules.authorization,
                    &ev,
                    before_lookup,
                )
            })
    };
    let rejected = verdict.is_err();
    let prev_nids: HashSet<i64> = ev
        .prev_events
        .iter()
        .filter_map(|p| cache.rows.get(p).map(|r| r.event_nid))
        .collect();
    // Soft failure: an event its own state allows must also be allowed by the room's current
    // state, or it is kept out of it (an event of a banned user built on an older part of
    // the DAG, say). An event on exactly the room's extremities has the current state as
    // its state before, so it was just checked against it.
    let on_head = prev_nids == room.latest_event_nids.iter().copied().collect();
    let soft_failure = match (&verdict, room.state_snapshot_nid) {
        (Ok(()), Some(current)) if !on_head => {
            let current = cache.state_map(db, Some(current)).await?;
            let events = &cache.events;
            let current_lookup = |t: &StateEventType, k: &str| {
                current
                    .get(&(t.clone(), k.to_owned()))
                    .and_then(|id| events.get(id))
            };
            state_res::check_state_dependent_auth_rules(&rules.authorization, &ev, current_lookup)
                .err()
        }
        _ => None,
    };

    // Store it, with the state before it; move the extremities and the current state.
    let before_entries = cache.entries(db, &state_before).await?;
    let txn = db.begin().await?;
    let type_nid = event_types::intern(&txn, &ev.kind.to_string()).await?;
    let key_nid = match &ev.state_key {
        Some(k) => Some(state_keys::intern(&txn, k).await?),
        None => None,
    };
    let before_snapshot = state::store(&txn, room.room_nid, &before_entries).await?;
    let text = serde_json::to_string(&json).map_err(|e| internal(e))?;
    let depth = json
        .get("depth")
        .and_then(|d| d.as_integer())
        .map_or(0, i64::from);
    let nid = events::insert(
        &txn,
        &events::NewEvent {
            room_nid: room.room_nid,
            event_id: event_id.as_str(),
            type_nid,
            state_key_nid: key_nid,
            depth,
            json: &text,
            rejected,
            state_snapshot_nid: None,
            state_after_snapshot_nid: None,
            stream_position: None,
            origin_server_ts: i64::try_from(u64::from(ev.origin_server_ts.0)).unwrap_or(i64::MAX),
        },
    )
    .await?
    .ok_or_else(|| internal(format!("event {event_id} stored twice")))?;
    events::set_state_snapshot(&txn, nid, before_snapshot).await?;
    // Redactions that arrived before this event apply to it now (a rejected event is never
    // served, so they are dropped).
    let redacted_by =
        late_redaction(&txn, &mut cache, &rules, room.room_nid, &event_id, rejected).await?;
    if let Err(reason) = verdict {
        txn.commit().await?;
        tracing::info!(event_id = %event_id, reason, "rejected an event");
        return Ok(InputOutcome::Rejected {
            event_id: event_id.to_string(),
            reason,
        });
    }
    // The state after it, as for any accepted event (soft-failed ones included: later events
    // may build on them).
    let after_snapshot = match key_nid {
        Some(k) => {
            state::derive(
                &txn,
                room.room_nid,
                Some(before_snapshot),
                &[((type_nid, k), nid)],
            )
            .await?
        }
        None => before_snapshot,
    };
    events::set_state_after(&txn, nid, after_snapshot).await?;
    if let Some(reason) = soft_failure {
        events::set_soft_failed(&txn, nid, true).await?;
        txn.commit().await?;
        tracing::info!(event_id = %event_id, reason, "soft-failed an event");
        return Ok(InputOutcome::SoftFailed {
            event_id: event_id.to_string(),
            reason,
        });
    }
    let mut extremities: Vec<i64> = room
        .latest_event_nids
        .iter()
        .copied()
        .filter(|n| !prev_nids.contains(n))
        .collect();
    extremities.push(nid);
    // The state after this event...
    let mut after = state_before.clone();
    if let Some(key) = &ev.state_key {
        after.insert(
            (StateEventType::from(ev.kind.to_string()), key.clone()),
            event_id.clone(),
        );
    }
    let mut after_entries = before_entries;
    if let Some(key_nid) = key_nid {
        after_entries.insert((type_nid, key_nid), nid);
    }
    // ...resolved with the state after every other extremity.
    let current_entries = if extremities.len() == 1 {
        after_entries
    } else {
        let mut sets = vec![after];
        let others: Vec<i64> = extremities.iter().copied().filter(|n| *n != nid).collect();
        for id in cache.load_nids(&txn, &others).await? {
            sets.push(cache.state_after(&txn, &id).await?);
        }
        // The new event must be fetchable by the resolution.
        cache.events.insert(event_id.clone(), ev.clone());
        cache.rows.insert(
            event_id.clone(),
            events::EventRow {
                event_nid: nid,
                room_nid: room.room_nid,
                event_id: event_id.to_string(),
                type_nid,
                state_key_nid: key_nid,
                depth,
                state_snapshot_nid: Some(before_snapshot),
                json: text.clone(),
                rejected: false,
                redacted_by: None,
                soft_failed: false,
            },
        );
        let resolved = cache.resolve(&txn, &rules, &sets).await?;
        cache.entries(&txn, &resolved).await?
    };
    let current = state::store(&txn, room.room_nid, &current_entries).await?;
    // What entered and left the current state, for the stream's consumers.
    let old: StateEntries = match room.state_snapshot_nid {
        Some(s) => state::load(&txn, s).await?,
        None => StateEntries::new(),
    };
    let added: Vec<i64> = current_entries
        .iter()
        .filter(|(k, v)| old.get(k) != Some(v))
        .map(|(_, v)| *v)
        .collect();
    let removed: Vec<i64> = old
        .iter()
        .filter(|(k, v)| current_entries.get(k) != Some(v))
        .map(|(_, v)| *v)
        .collect();
    // Left the state with nothing in their place.
    let vacated: HashSet<i64> = old
        .iter()
        .filter(|(k, _)| !current_entries.contains_key(k))
        .map(|(_, v)| *v)
        .collect();
    let added_rows = events::select_by_nids(&txn, &added).await?;
    let removed_rows = events::select_by_nids(&txn, &removed).await?;
    rooms::update_head(
        &txn,
        room.room_nid,
        current,
        &extremities,
        room.max_depth.max(depth),
    )
    .await?;
    follow_memberships(&txn, room.room_nid, &added_rows, &removed_rows, &vacated).await?;
    // A redaction applies as a local one does, if its sender may redact the target (judged
    // by the state before the redaction).
    let redacts = match (&ev.kind, &ev.redacts) {
        (TimelineEventType::RoomRedaction, Some(target)) => {
            let lookup = |t: StateEventType| {
                state_before
                    .get(&(t, String::new()))
                    .and_then(|id| cache.events.get(id))
            };
            match redaction_target(
                &txn,
                room.room_nid,
                target.as_str(),
                &ev.sender,
                lookup(StateEventType::RoomCreate),
                lookup(StateEventType::RoomPowerLevels),
                &rules,
                Redactor::Server,
            )
            .await
            {
                Ok((target_nid, target_id)) => {
                    events::set_redacted(&txn, target_nid, event_id.as_str()).await?;
                    Some(target_id.to_string())
                }
                // A target not stored yet: the redaction waits for it (`late_redaction`).
                Err(RoomserverError::NoEvent(_))
                    if events::select_by_id(&txn, target.as_str()).await?.is_none() =>
                {
                    pending_redactions::insert(&txn, room.room_nid, target.as_str(), nid).await?;
                    tracing::info!(event_id = %event_id, target = %target, "redaction waits for its target");
                    None
                }
                // The redaction stays in the timeline; it just does not apply.
                Err(e @ (RoomserverError::NoEvent(_) | RoomserverError::NotAllowed(_))) => {
                    tracing::info!(event_id = %event_id, reason = %e, "redaction not applied");
                    None
                }
                Err(e) => return Err(e),
            }
        }
        _ => None,
    };
    let mut appended = Vec::new();
    // A soft-failed event or an outlier (a prev event placed on the state its server told)
    // that this resolution brought into the current state was never output: it is now,
    // first, so the stream's consumers know the event `adds_state` names.
    let others: Vec<i64> = added.iter().copied().filter(|n| *n != nid).collect();
    let unoutput = events::select_unpositioned(&txn, &others).await?;
    for row in added_rows
        .iter()
        .filter(|r| r.soft_failed || unoutput.contains(&r.event_nid))
    {
        if row.soft_failed {
            events::set_soft_failed(&txn, row.event_nid, false).await?;
        }
        let output = RoomserverOutput::NewRoomEvent {
            room_id: room_id.to_owned(),
            event_id: row.event_id.clone(),
            event: serde_json::from_str(&row.json).map_err(|e| internal(e))?,
            adds_state: Vec::new(),
            removes_state: Vec::new(),
            redacts: None,
            redacted_by: row.redacted_by.clone(),
            transaction: None,
            send_on_behalf_of: None,
        };
        let out = bus::append(&txn, super::input::STREAM, room_id, &output).await?;
        events::set_stream_position(&txn, row.event_nid, out.position).await?;
        appended.push(out);
    }
    let ids = |rows: &[events::EventRow]| rows.iter().map(|r| r.event_id.clone()).collect();
    let output = RoomserverOutput::NewRoomEvent {
        room_id: room_id.to_owned(),
        event_id: event_id.to_string(),
        event: serde_json::to_value(&json).map_err(|e| internal(e))?,
        adds_state: ids(&added_rows),
        removes_state: ids(&removed_rows),
        redacts,
        redacted_by,
        transaction: None,
        send_on_behalf_of,
    };
    let last = bus::append(&txn, super::input::STREAM, room_id, &output).await?;
    events::set_stream_position(&txn, nid, last.position).await?;
    appended.push(last);
    deps.bus.commit(txn, &appended).await?;
    Ok(InputOutcome::Accepted {
        event_id: event_id.to_string(),
    })
}

/// Applies the redactions that waited for an event just stored (`nid` is in `txn`): the
/// first whose sender may redact it, by the state before the redaction, as when the target
/// is there first (`redaction_target` with `Redactor::Server`). The waiting rows go either
/// way. Returns the redaction that applied.
async fn late_redaction(
    txn: &impl Conn,
    cache: &mut Cache,
    rules: &RoomVersionRules,
    room_nid: i64,
    event_id: &EventId,
    rejected: bool,
) -> Result<Option<String>, RoomserverError> {
    let waiting = pending_redactions::select(txn, room_nid, event_id.as_str()).await?;
    if waiting.is_empty() {
        return Ok(None);
    }
    pending_redactions::delete(txn, room_nid, event_id.as_str()).await?;
    if rejected {
        return Ok(None);
    }
    for redaction in cache.load_nids(txn, &waiting).await? {
        let (sender, snapshot) = match (cache.events.get(&redaction), cache.rows.get(&redaction)) {
            (Some(ev), Some(row)) => (ev.sender.clone(), row.state_snapshot_nid),
            _ => continue,
        };
        let before = cache.state_map(txn, snapshot).await?;
        let lookup = |t: StateEventType| {
            before
                .get(&(t, String::new()))
                .and_then(|id| cache.events.get(id))
        };
        match redaction_target(
            txn,
            room_nid,
            event_id.as_str(),
            &sender,
            lookup(StateEventType::RoomCreate),
            lookup(StateEventType::RoomPowerLevels),
            rules,
            Redactor::Server,
        )
        .await
        {
            Ok((target_nid, _)) => {
                events::set_redacted(txn, target_nid, redaction.as_str()).await?;
                tracing::info!(event_id = %event_id, redaction = %redaction, "redaction applied to a late target");
                return Ok(Some(redaction.to_string()));
            }
            Err(e @ (RoomserverError::NoEvent(_) | RoomserverError::NotAllowed(_))) => {
                tracing::info!(event_id = %redaction, reason = %e, "redaction not applied");
            }
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// Brings the memberships index in line with a change of the room's current state: each
/// `m.room.member` event that entered it sets its user's membership, and a user whose member
/// event left it with none in its place (`vacated`) has no membership any more.
async fn follow_memberships(
    txn: &impl Conn,
    room_nid: i64,
    added: &[events::EventRow],
    removed: &[events::EventRow],
    vacated: &HashSet<i64>,
) -> Result<(), RoomserverError> {
    let member = |row: &events::EventRow| -> Result<Option<(String, String)>, RoomserverError> {
        let json: serde_json::Value = serde_json::from_str(&row.json).map_err(|e| internal(e))?;
        Ok(match (json["type"].as_str(), json["state_key"].as_str()) {
            (Some("m.room.member"), Some(user)) => Some((
                user.to_owned(),
                json["content"]["membership"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )),
            _ => None,
        })
    };
    for row in added {
        if let Some((user, membership)) = member(row)? {
            memberships::upsert(txn, room_nid, &user, &membership, row.event_nid).await?;
        }
    }
    for row in removed.iter().filter(|r| vacated.contains(&r.event_nid)) {
        if let Some((user, _)) = member(row)? {
            memberships::delete(txn, room_nid, &user).await?;
        }
    }
    Ok(())
}
