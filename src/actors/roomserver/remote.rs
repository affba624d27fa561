//! Rooms shared with other servers: the membership templates of `make_join`/`make_leave`,
//! another server's `send_join`/`send_leave`, a room imported from our own `send_join`
//! (its state and auth chain stored as outliers, our join on top), and invites of our users
//! into rooms this server does not hold (kept in `roomserver_remote_invites` until the user
//! joins or rejects them).

use super::error::RoomserverError;
use super::input::{self, Deps};
use super::messages::*;
use super::state::{self, StateEntries};
use super::storage::{
    event_types, events, memberships, remote_invites, remote_knocks, rooms, state_keys,
};
use crate::bus;
use crate::pdu::{self, PduBuilder, PduEvent, Verified};
use crate::storage::Conn;
use ruma::events::{StateEventType, TimelineEventType};
use ruma::room_version_rules::{EventsReferenceFormatVersion, RoomVersionRules};
use ruma::state_res;
use ruma::{CanonicalJsonObject, EventId, OwnedEventId, OwnedRoomId, OwnedUserId, UInt};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};

#[track_caller]
fn internal(e: impl std::fmt::Display) -> RoomserverError {
    RoomserverError::internal(e)
}

fn bad(why: impl Into<String>) -> RoomserverError {
    RoomserverError::BadRequest(why.into())
}

/// The signature check of an event from elsewhere: the PDU format of `version`, the
/// signatures the room version requires (with the keys the input path uses), then the
/// content hash (`Verified::Signatures` when only that is wrong).
pub(super) async fn verify_pdu(
    deps: &Deps,
    json: &CanonicalJsonObject,
    version: &str,
) -> Result<Verified, RoomserverError> {
    let (_, rules) = pdu::rules(version)?;
    let keys = deps
        .keyring
        .keys_for(json, &rules, &deps.server_name, &deps.key)
        .await?;
    pdu::verify(json, version, &keys).map_err(|e| bad(format!("the event does not verify: {e}")))
}

/// Checks an event from elsewhere on its own ([`verify_pdu`]); a content hash mismatch gives
/// the redacted event, as the spec says. `unsigned` (which no signature covers) is dropped.
/// Returns the event ID and the event.
async fn verified(
    deps: &Deps,
    mut json: CanonicalJsonObject,
    version: &str,
) -> Result<(OwnedEventId, CanonicalJsonObject), RoomserverError> {
    json.remove("unsigned");
    let event_id = pdu::event_id_of(&json, version).map_err(|e| bad(e.to_string()))?;
    match verify_pdu(deps, &json, version).await? {
        Verified::All => Ok((event_id, json)),
        Verified::Signatures => Ok((event_id, pdu::redact(json, version)?)),
    }
}

/// The `membership` of a member event's content.
fn membership_of(ev: &PduEvent) -> Option<String> {
    serde_json::from_str::<Value>(ev.content.get())
        .ok()?
        .get("membership")?
        .as_str()
        .map(str::to_owned)
}

/// Whether one of our users is joined to the room (this server follows it).
async fn in_room(deps: &Deps, room_id: &str) -> Result<bool, RoomserverError> {
    Ok(super::server_reads::joined_servers(&deps.db, room_id)
        .await?
        .is_some_and(|s| s.iter().any(|s| s == deps.server_name.as_str())))
}

/// [`QueryMembershipTemplate`]: the event as this server would build it, unsigned.
pub async fn membership_template(
    deps: &Deps,
    msg: QueryMembershipTemplate,
) -> Result<MembershipTemplate, RoomserverError> {
    let db = &deps.db;
    let room = rooms::select(db, &msg.room_id)
        .await?
        .ok_or(RoomserverError::NoRoom)?;
    if let Some(versions) = &msg.supported_versions {
        if !versions.contains(&room.room_version) {
            return Err(RoomserverError::IncompatibleRoomVersion(room.room_version));
        }
    }
    // A room we no longer follow (every user of ours left) is not ours to let others into:
    // our copy of it is stale.
    if !in_room(deps, &msg.room_id).await? {
        return Err(RoomserverError::NoRoom);
    }
    let (_, rules) = pdu::rules(&room.room_version)?;
    let snapshot = room
        .state_snapshot_nid
        .ok_or_else(|| internal(format!("room {} has no state", msg.room_id)))?;
    let sender = OwnedUserId::try_from(msg.sender.as_str()).map_err(|e| bad(e.to_string()))?;
    OwnedUserId::try_from(msg.state_key.as_str()).map_err(|e| bad(e.to_string()))?;
    if !msg.content.is_object() || !msg.content["membership"].is_string() {
        return Err(bad("the content needs a membership"));
    }
    let raw = serde_json::value::to_raw_value(&msg.content).map_err(|e| bad(e.to_string()))?;
    let auth_types = state_res::auth_types_for_event(
        &TimelineEventType::RoomMember,
        &sender,
        Some(&msg.state_key),
        &raw,
        &rules.authorization,
    )
    .map_err(|e| bad(e.to_string()))?;
    let mut wanted = auth_types.clone();
    wanted.push((StateEventType::RoomCreate, String::new()));
    let (state_map, by_id) = input::state_events(db, snapshot, &wanted).await?;
    let auth_events: Vec<OwnedEventId> = auth_types
        .iter()
        .filter_map(|k| state_map.get(k).cloned())
        .collect();
    let mut prev_events = Vec::new();
    for row in events::select_by_nids(db, &room.latest_event_nids).await? {
        prev_events.push(OwnedEventId::try_from(row.event_id.as_str()).map_err(internal)?);
    }
    let hashes = input::reference_hashes(
        db,
        &room.room_version,
        &rules,
        prev_events.iter().chain(&auth_events),
    )
    .await?;
    let v1 = rules.events_reference_format == EventsReferenceFormatVersion::V1;
    let refs = |ids: &[OwnedEventId]| -> Value {
        ids.iter()
            .map(|id| match hashes.get(id).filter(|_| v1) {
                Some(h) => json!([id, {"sha256": h}]),
                None => json!(id),
            })
            .collect()
    };
    let event = json!({
        "type": "m.room.member",
        "room_id": msg.room_id,
        "sender": msg.sender,
        "state_key": msg.state_key,
        "content": msg.content,
        "prev_events": refs(&prev_events),
        "auth_events": refs(&auth_events),
        "depth": room.max_depth + 1,
        "origin": deps.server_name.as_str(),
        "origin_server_ts": input::now().0,
    });
    // The auth rules, as for the event once signed (they do not read signatures).
    let object: CanonicalJsonObject = serde_json::from_value(event.clone()).map_err(internal)?;
    let placeholder = OwnedEventId::try_from(format!("$template:{}", deps.server_name).as_str())
        .map_err(internal)?;
    let ev = PduEvent::from_json(placeholder, &object, false)?;
    let lookup = |t: &StateEventType, k: &str| {
        state_map
            .get(&(t.clone(), k.to_owned()))
            .and_then(|id| by_id.get(id))
    };
    state_res::check_state_dependent_auth_rules(&rules.authorization, &ev, lookup)
        .map_err(RoomserverError::NotAllowed)?;
    Ok(MembershipTemplate {
        room_version: room.room_version,
        event,
    })
}

/// The checks of [`PerformRemoteMembership`] before the event is input (no writes); the
/// event to input: as given, or for the join of a restricted room that one of our users
/// vouches for (`join_authorised_via_users_server`), with our signature added once the
/// user is found to satisfy the room's allow rules.
pub async fn check_remote_membership(
    deps: &Deps,
    msg: &PerformRemoteMembership,
) -> Result<Value, RoomserverError> {
    let room = rooms::select(&deps.db, &msg.room_id)
        .await?
        .ok_or(RoomserverError::NoRoom)?;
    if !in_room(deps, &msg.room_id).await? {
        return Err(RoomserverError::NoRoom);
    }
    let json: CanonicalJsonObject =
        serde_json::from_value(msg.event.clone()).map_err(|e| bad(format!("not a PDU: {e}")))?;
    let event_id = pdu::event_id_of(&json, &room.room_version).map_err(|e| bad(e.to_string()))?;
    if event_id.as_str() != msg.event_id {
        return Err(bad(format!(
            "the event's ID is {event_id}, not {}",
            msg.event_id
        )));
    }
    let ev = PduEvent::from_json(event_id, &json, false).map_err(|e| bad(e.to_string()))?;
    if ev.room_id.as_ref().map(|r| r.as_str()) != Some(msg.room_id.as_str()) {
        return Err(bad("the event is for another room"));
    }
    if ev.kind != TimelineEventType::RoomMember {
        return Err(bad("the event is not an m.room.member event"));
    }
    if ev.state_key.as_deref() != Some(ev.sender.as_str()) {
        return Err(bad("the event's state_key is not its sender"));
    }
    if ev.sender.server_name().as_str() != msg.origin {
        return Err(bad(format!(
            "the sender {} is not a user of {}",
            ev.sender, msg.origin
        )));
    }
    if membership_of(&ev).as_deref() != Some(msg.membership.as_str()) {
        return Err(bad(format!("the membership is not {}", msg.membership)));
    }
    let content: Value = serde_json::from_str(ev.content.get()).unwrap_or_default();
    let Some(via) = content
        .get("join_authorised_via_users_server")
        .filter(|_| msg.membership == "join")
    else {
        return Ok(msg.event.clone());
    };
    let (_, rules) = pdu::rules(&room.room_version)?;
    if !rules.authorization.restricted_join_rule {
        return Ok(msg.event.clone());
    }
    let via = via
        .as_str()
        .and_then(|v| OwnedUserId::try_from(v).ok())
        .ok_or_else(|| bad("join_authorised_via_users_server is not a user ID"))?;
    if via.server_name() != deps.server_name {
        return Err(bad(format!(
            "join_authorised_via_users_server names {via}, not a user of this server"
        )));
    }
    let judged = super::restricted::join_authorisation(
        &deps.db,
        &deps.server_name,
        &msg.room_id,
        ev.sender.as_str(),
    )
    .await?;
    match judged {
        JoinAuthorisation::NotNeeded | JoinAuthorisation::Authorised { .. } => {}
        JoinAuthorisation::NotAllowed
        | JoinAuthorisation::CannotCheck
        | JoinAuthorisation::NoLocalInviter => {
            return Err(RoomserverError::NotAllowed(format!(
                "{} may not join: they are in none of the rooms the join rules allow",
                ev.sender
            )));
        }
    }
    // The auth rules check that `via` is joined and may invite when the event is input;
    // the signature of its server (ours) is what they need besides.
    let mut signed = json;
    ruma::signatures::sign_event(
        deps.server_name.as_str(),
        deps.key.key_pair(),
        &mut signed,
        &rules.redaction,
    )
    .map_err(internal)?;
    serde_json::to_value(&signed).map_err(internal)
}

/// The answer of [`PerformRemoteMembership`] once the event is stored and accepted.
pub async fn membership_answer(
    deps: &Deps,
    msg: &PerformRemoteMembership,
    servers_in_room: Vec<String>,
) -> Result<MembershipAnswer, RoomserverError> {
    let db = &deps.db;
    let row = events::select_by_id(db, &msg.event_id)
        .await?
        .ok_or_else(|| internal(format!("event {} not stored", msg.event_id)))?;
    let event: Value = serde_json::from_str(&row.json).map_err(internal)?;
    if msg.membership != "join" {
        return Ok(MembershipAnswer {
            event,
            state: Vec::new(),
            auth_chain: Vec::new(),
            members_omitted: false,
            servers_in_room,
        });
    }
    let entries = match row.state_snapshot_nid {
        Some(s) => state::load(db, s).await?,
        None => StateEntries::new(),
    };
    let nids: Vec<i64> = entries.values().copied().collect();
    let state_rows = events::select_by_nids(db, &nids).await?;
    let mut state = Vec::new();
    let mut in_state = HashSet::new();
    let mut todo: Vec<OwnedEventId> = PduEvent::from_json(
        OwnedEventId::try_from(row.event_id.as_str()).map_err(internal)?,
        &serde_json::from_str(&row.json).map_err(internal)?,
        false,
    )?
    .auth_events;
    for r in &state_rows {
        let value: Value = serde_json::from_str(&r.json).map_err(internal)?;
        let object: CanonicalJsonObject = serde_json::from_str(&r.json).map_err(internal)?;
        let id = OwnedEventId::try_from(r.event_id.as_str()).map_err(internal)?;
        todo.extend(PduEvent::from_json(id.clone(), &object, false)?.auth_events);
        if msg.omit_members && value["type"] == "m.room.member" {
            continue;
        }
        in_state.insert(id);
        state.push(value);
    }
    // The auth chain: every event reachable by auth edges (those in `state` may be left out
    // when members are omitted, as the spec allows).
    let mut seen: HashSet<OwnedEventId> = HashSet::new();
    let mut auth_chain = Vec::new();
    while let Some(id) = todo.pop() {
        if !seen.insert(id.clone()) {
            continue;
        }
        let Some(r) = events::select_by_id(db, id.as_str()).await? else {
            continue;
        };
        let object: CanonicalJsonObject = serde_json::from_str(&r.json).map_err(internal)?;
        todo.extend(PduEvent::from_json(id.clone(), &object, false)?.auth_events);
        if !(msg.omit_members && in_state.contains(&id)) {
            auth_chain.push(serde_json::from_str(&r.json).map_err(internal)?);
        }
    }
    Ok(MembershipAnswer {
        event,
        state,
        auth_chain,
        members_omitted: msg.omit_members,
        servers_in_room,
    })
}

/// The room ID a version 12+ create event makes (`!` + its reference hash).
pub(super) fn room_id_of_create(create_id: &EventId) -> Result<OwnedRoomId, RoomserverError> {
    ruma::RoomId::new_v2(create_id.localpart()).map_err(|e| bad(e.to_string()))
}

/// [`InputJoinedRoom`]: checks the resident server's answer and stores the room with our
/// join on top. Runs in the room's actor.
pub async fn import_room(deps: &Deps, msg: InputJoinedRoom) -> Result<SentEvent, RoomserverError> {
    // Another of our users got in first (two joins at once): this server follows the room
    // already, so the join is an event like any other from elsewhere.
    if in_room(deps, &msg.room_id).await? {
        return match super::input_events::input(deps, &msg.room_id, msg.join_event, None).await? {
            InputOutcome::Accepted { event_id } => Ok(SentEvent {
                event_id,
                room_id: msg.room_id,
            }),
            InputOutcome::Rejected { reason, .. } | InputOutcome::SoftFailed { reason, .. } => {
                Err(RoomserverError::NotAllowed(reason))
            }
        };
    }
    let version = msg.room_version.as_str();
    let (_, rules) = pdu::rules(version)?;
    let room_id = OwnedRoomId::try_from(msg.room_id.as_str()).map_err(|e| bad(e.to_string()))?;

    // 1. Each event on its own: format, signatures, the room; duplicates once.
    let mut jsons: HashMap<OwnedEventId, CanonicalJsonObject> = HashMap::new();
    let mut pdus: HashMap<OwnedEventId, PduEvent> = HashMap::new();
    let mut state_ids: Vec<OwnedEventId> = Vec::new();
    let given = msg
        .state
        .into_iter()
        .map(|e| (e, true))
        .chain(msg.auth_chain.into_iter().map(|e| (e, false)));
    for (value, in_state) in given {
        let Ok(object) = serde_json::from_value::<CanonicalJsonObject>(value) else {
            tracing::info!(room_id = %room_id, "dropped a returned event that is not a PDU");
            continue;
        };
        let (id, object) = match verified(deps, object, version).await {
            Ok(v) => v,
            Err(e) => {
                tracing::info!(room_id = %room_id, reason = %e, "dropped a returned event");
                continue;
            }
        };
        let ev = match PduEvent::from_json(id.clone(), &object, false) {
            Ok(ev) => ev,
            Err(e) => {
                tracing::info!(event_id = %id, reason = %e, "dropped a returned event");
                continue;
            }
        };
        let v12_create = ev.kind == TimelineEventType::RoomCreate
            && rules.authorization.room_create_event_id_as_room_id;
        let right_room = if v12_create {
            room_id_of_create(&id)? == room_id
        } else {
            ev.room_id.as_ref() == Some(&room_id)
        };
        if !right_room {
            tracing::info!(event_id = %id, "dropped a returned event of another room");
            continue;
        }
        if in_state && ev.state_key.is_some() && !state_ids.contains(&id) {
            state_ids.push(id.clone());
        }
        jsons.entry(id.clone()).or_insert(object);
        pdus.entry(id).or_insert(ev);
    }

    // 2. The create event names the room and its version.
    let create = state_ids
        .iter()
        .filter_map(|id| pdus.get(id))
        .find(|e| e.kind == TimelineEventType::RoomCreate && e.state_key.as_deref() == Some(""))
        .ok_or_else(|| bad("the returned state has no valid m.room.create event"))?;
    let create_version = serde_json::from_str::<Value>(create.content.get())
        .ok()
        .and_then(|c| c["room_version"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "1".to_owned());
    if create_version != version {
        return Err(bad(format!(
            "the room's create event says version {create_version}, not {version}"
        )));
    }
    let create_id = create.event_id.clone();
    let creates = state_ids
        .iter()
        .filter(|id| pdus[*id].kind == TimelineEventType::RoomCreate)
        .count();
    if creates != 1 {
        return Err(bad(
            "the returned state has more than one m.room.create event",
        ));
    }

    // 3. Each event authorized by its auth events, auth events first. An event whose auth
    //    events are missing or rejected is rejected.
    let mut decided: HashMap<OwnedEventId, bool> = HashMap::new();
    let mut pending: Vec<OwnedEventId> = pdus.keys().cloned().collect();
    pending.sort_by_key(|id| pdus[id].depth);
    loop {
        let mut progress = false;
        let mut rest = Vec::new();
        for id in pending {
            let ev = &pdus[&id];
            let waiting = ev
                .auth_events
                .iter()
                .any(|a| pdus.contains_key(a) && !decided.contains_key(a));
            if waiting {
                rest.push(id);
                continue;
            }
            let ok = ev.auth_events.iter().all(|a| decided.get(a) == Some(&true))
                && authorized(&rules, ev, &pdus, &create_id).is_ok();
            if !ok {
                tracing::info!(event_id = %id, "rejected a returned event");
            }
            decided.insert(id, ok);
            progress = true;
        }
        pending = rest;
        if pending.is_empty() || !progress {
            break;
        }
    }
    // What is left waits on itself (an auth cycle): rejected.
    for id in pending {
        decided.insert(id, false);
    }
    for (id, ok) in &decided {
        if let Some(ev) = pdus.get_mut(id) {
            ev.rejected = !ok;
        }
    }
    let mut state_map: HashMap<(String, String), OwnedEventId> = HashMap::new();
    for id in &state_ids {
        let ev = &pdus[id];
        if let (Some(key), false) = (&ev.state_key, ev.rejected) {
            state_map.insert((ev.kind.to_string(), key.clone()), id.clone());
        }
    }
    if !state_map.contains_key(&("m.room.create".to_owned(), String::new())) {
        return Err(bad("the room's create event fails the auth rules"));
    }

    // 4. Our join: ours, for this room, allowed by its auth events and the returned state.
    let join_object: CanonicalJsonObject =
        serde_json::from_value(msg.join_event).map_err(|e| bad(format!("not a PDU: {e}")))?;
    let (join_id, join_object) = verified(deps, join_object, version).await?;
    let join = PduEvent::from_json(join_id.clone(), &join_object, false)?;
    if join.room_id.as_ref() != Some(&room_id)
        || join.kind != TimelineEventType::RoomMember
        || join.state_key.as_deref() != Some(join.sender.as_str())
        || join.sender.server_name() != deps.server_name
        || membership_of(&join).as_deref() != Some("join")
    {
        return Err(bad(
            "the join event is not a join of one of our users into this room",
        ));
    }
    authorized(&rules, &join, &pdus, &create_id).map_err(RoomserverError::NotAllowed)?;
    {
        let lookup = |t: &StateEventType, k: &str| {
            state_map
                .get(&(t.to_string(), k.to_owned()))
                .and_then(|id| pdus.get(id))
        };
        state_res::check_state_dependent_auth_rules(&rules.authorization, &join, lookup)
            .map_err(RoomserverError::NotAllowed)?;
    }

    // 5. Store it all in one transaction.
    let db = &deps.db;
    let txn = db.begin().await?;
    let room_nid = rooms::insert(&txn, room_id.as_str(), version).await?;
    let room = rooms::select(&txn, room_id.as_str())
        .await?
        .ok_or_else(|| internal("room vanished"))?;
    let mut ids: Vec<&OwnedEventId> = pdus.keys().collect();
    ids.sort_by_key(|id| (pdus[*id].depth, id.as_str().to_owned()));
    let mut nids: HashMap<OwnedEventId, (i64, i64, Option<i64>)> = HashMap::new();
    let mut new_events: Vec<OwnedEventId> = Vec::new();
    let mut max_depth = room.max_depth;
    for id in ids {
        let ev = &pdus[id];
        let type_nid = event_types::intern(&txn, &ev.kind.to_string()).await?;
        let key_nid = match &ev.state_key {
            Some(k) => Some(state_keys::intern(&txn, k).await?),
            None => None,
        };
        let depth = i64::try_from(u64::from(ev.depth)).unwrap_or(i64::MAX);
        max_depth = max_depth.max(depth);
        let text = serde_json::to_string(&jsons[id]).map_err(internal)?;
        let nid = match events::select_by_id(&txn, id.as_str()).await? {
            Some(row) => row.event_nid,
            None => {
                let nid = events::insert_outlier(
                    &txn,
                    &events::NewEvent {
                        room_nid,
                        event_id: id.as_str(),
                        type_nid,
                        state_key_nid: key_nid,
                        depth,
                        json: &text,
                        rejected: ev.rejected,
                        state_snapshot_nid: None,
                        state_after_snapshot_nid: None,
                        stream_position: None,
                        origin_server_ts: i64::try_from(u64::from(ev.origin_server_ts.0))
                            .unwrap_or(i64::MAX),
                    },
                )
                .await?
                .ok_or_else(|| internal(format!("event {id} stored twice")))?;
                new_events.push(id.clone());
                nid
            }
        };
        nids.insert(id.clone(), (nid, type_nid, key_nid));
    }
    let mut before = StateEntries::new();
    for id in state_map.values() {
        if let Some((nid, type_nid, Some(key_nid))) = nids.get(id) {
            before.insert((*type_nid, *key_nid), *nid);
        }
    }
    let before_snapshot = state::store(&txn, room_nid, &before).await?;
    let join_type = event_types::intern(&txn, "m.room.member").await?;
    let join_key = state_keys::intern(&txn, join.sender.as_str()).await?;
    let join_depth = i64::try_from(u64::from(join.depth)).unwrap_or(i64::MAX);
    let join_text = serde_json::to_string(&join_object).map_err(internal)?;
    let join_nid = events::insert(
        &txn,
        &events::NewEvent {
            room_nid,
            event_id: join_id.as_str(),
            type_nid: join_type,
            state_key_nid: Some(join_key),
            depth: join_depth,
            json: &join_text,
            rejected: false,
            state_snapshot_nid: Some(before_snapshot),
            state_after_snapshot_nid: None,
            stream_position: None,
            origin_server_ts: i64::try_from(u64::from(join.origin_server_ts.0)).unwrap_or(i64::MAX),
        },
    )
    .await?
    .ok_or_else(|| RoomserverError::BadState(format!("event {join_id} is already stored")))?;
    let after_snapshot = state::derive(
        &txn,
        room_nid,
        Some(before_snapshot),
        &[((join_type, join_key), join_nid)],
    )
    .await?;
    events::set_state_after(&txn, join_nid, after_snapshot).await?;
    rooms::update_head(
        &txn,
        room_nid,
        after_snapshot,
        &[join_nid],
        max_depth.max(join_depth),
    )
    .await?;
    // What the syncapi knew of the room before (a room joined again) leaves its state.
    let old: StateEntries = match room.state_snapshot_nid {
        Some(s) => state::load(&txn, s).await?,
        None => StateEntries::new(),
    };
    let mut after = before.clone();
    after.insert((join_type, join_key), join_nid);
    let removed: Vec<i64> = old
        .iter()
        .filter(|(k, v)| after.get(k) != Some(v))
        .map(|(_, v)| *v)
        .collect();
    let removed_ids: Vec<String> = events::select_by_nids(&txn, &removed)
        .await?
        .into_iter()
        .map(|r| r.event_id)
        .collect();
    // The memberships index follows the new state.
    for (key, id) in &state_map {
        if key.0 == "m.room.member" {
            if let (Some(m), Some((nid, _, _))) = (membership_of(&pdus[id]), nids.get(id)) {
                memberships::upsert(&txn, room_nid, &key.1, &m, *nid).await?;
            }
        }
    }
    memberships::upsert(&txn, room_nid, join.sender.as_str(), "join", join_nid).await?;
    remote_invites::delete(&txn, room_id.as_str(), join.sender.as_str()).await?;
    remote_knocks::delete(&txn, room_id.as_str(), join.sender.as_str()).await?;
    // What came before our join is history this server has not seen: `PerformBackfill`
    // asks for it from the join's prev events on.
    for prev in &join.prev_events {
        super::storage::backward_extremities::insert(&txn, room_nid, prev.as_str()).await?;
    }
    // The syncapi has never seen the new state events: each is output before the join
    // (no `adds_state` of their own), and the join adds them all to the room's state.
    let mut appended = Vec::new();
    let mut state_order: Vec<&OwnedEventId> = state_map.values().collect();
    state_order.sort_by_key(|id| (pdus[*id].depth, id.as_str().to_owned()));
    for id in state_order.iter().filter(|id| new_events.contains(id)) {
        let output = RoomserverOutput::NewRoomEvent {
            room_id: room_id.to_string(),
            event_id: id.to_string(),
            event: serde_json::to_value(&jsons[*id]).map_err(internal)?,
            adds_state: Vec::new(),
            removes_state: Vec::new(),
            redacts: None,
            redacted_by: None,
            transaction: None,
            send_on_behalf_of: None,
        };
        appended.push(bus::append(&txn, input::STREAM, room_id.as_str(), &output).await?);
    }
    let mut adds_state: Vec<String> = state_order.iter().map(|id| id.to_string()).collect();
    adds_state.push(join_id.to_string());
    let output = RoomserverOutput::NewRoomEvent {
        room_id: room_id.to_string(),
        event_id: join_id.to_string(),
        event: serde_json::to_value(&join_object).map_err(internal)?,
        adds_state,
        removes_state: removed_ids,
        redacts: None,
        redacted_by: None,
        transaction: None,
        send_on_behalf_of: None,
    };
    let last = bus::append(&txn, input::STREAM, room_id.as_str(), &output).await?;
    events::set_stream_position(&txn, join_nid, last.position).await?;
    appended.push(last);
    deps.bus.commit(txn, &appended).await?;
    tracing::info!(room_id = %room_id, event_id = %join_id, state = state_map.len(), "joined a room over federation");
    Ok(SentEvent {
        event_id: join_id.to_string(),
        room_id: room_id.to_string(),
    })
}

/// The auth rules for an event against its own auth events (all in `pdus`) and the room's
/// create event (`create_id`, the one of the returned state).
pub(super) fn authorized(
    rules: &RoomVersionRules,
    ev: &PduEvent,
    pdus: &HashMap<OwnedEventId, PduEvent>,
    create_id: &EventId,
) -> Result<(), String> {
    let fetch = |id: &EventId| pdus.get(id);
    state_res::check_state_independent_auth_rules(&rules.authorization, ev, fetch)?;
    let mut auth_state: HashMap<(String, String), &PduEvent> = HashMap::new();
    for a in &ev.auth_events {
        if let Some(a) = pdus.get(a) {
            if let Some(k) = &a.state_key {
                auth_state.insert((a.kind.to_string(), k.clone()), a);
            }
        }
    }
    // The create event authorizes everything, named in auth_events or not (version 12).
    if let Some(create) = pdus.get(create_id) {
        auth_state
            .entry(("m.room.create".to_owned(), String::new()))
            .or_insert(create);
    }
    let lookup =
        |t: &StateEventType, k: &str| auth_state.get(&(t.to_string(), k.to_owned())).copied();
    state_res::check_state_dependent_auth_rules(&rules.authorization, ev, lookup)
}

/// [`InputRemoteInvite`] for a room not known here (the caller input it otherwise): the
/// checks, our signature, the remote invite row and its output, in one transaction.
pub async fn check_and_sign_invite(
    deps: &Deps,
    msg: &InputRemoteInvite,
) -> Result<(OwnedEventId, CanonicalJsonObject), RoomserverError> {
    let (_, rules) = pdu::rules(&msg.room_version)?;
    let mut object: CanonicalJsonObject =
        serde_json::from_value(msg.event.clone()).map_err(|e| bad(format!("not a PDU: {e}")))?;
    // Nothing signs `unsigned`: the stripped state travels beside the event.
    object.remove("unsigned");
    let event_id = pdu::event_id_of(&object, &msg.room_version).map_err(|e| bad(e.to_string()))?;
    if event_id.as_str() != msg.event_id {
        return Err(bad(format!(
            "the event's ID is {event_id}, not {}",
            msg.event_id
        )));
    }
    let ev =
        PduEvent::from_json(event_id.clone(), &object, false).map_err(|e| bad(e.to_string()))?;
    if ev.room_id.as_ref().map(|r| r.as_str()) != Some(msg.room_id.as_str()) {
        return Err(bad("the event is for another room"));
    }
    if ev.kind != TimelineEventType::RoomMember || membership_of(&ev).as_deref() != Some("invite") {
        return Err(bad("the event is not an m.room.member invite"));
    }
    if ev.sender.server_name().as_str() != msg.origin {
        return Err(bad(format!(
            "the sender {} is not a user of {}",
            ev.sender, msg.origin
        )));
    }
    let invitee = ev
        .state_key
        .as_deref()
        .and_then(|k| OwnedUserId::try_from(k).ok())
        .ok_or_else(|| bad("the invite's state_key is not a user ID"))?;
    if invitee.server_name() != deps.server_name {
        return Err(RoomserverError::NotAllowed(format!(
            "{invitee} is not a user of this server"
        )));
    }
    if verify_pdu(deps, &object, &msg.room_version).await? != Verified::All {
        return Err(bad("the invite's content hash is wrong"));
    }
    ruma::signatures::sign_event(
        deps.server_name.as_str(),
        deps.key.key_pair(),
        &mut object,
        &rules.redaction,
    )
    .map_err(internal)?;
    Ok((event_id, object))
}

/// Keeps an invite into a room not known here and outputs it (with the stripped state in
/// `unsigned.invite_room_state`, where the syncapi reads it).
pub async fn store_remote_invite(
    deps: &Deps,
    msg: &InputRemoteInvite,
    event_id: &EventId,
    object: &CanonicalJsonObject,
) -> Result<(), RoomserverError> {
    let mut event = serde_json::to_value(object).map_err(internal)?;
    event["unsigned"] = json!({"invite_room_state": msg.invite_room_state});
    let invitee = event["state_key"].as_str().unwrap_or_default().to_owned();
    let txn = deps.db.begin().await?;
    // The invite answers the user's knock, if they knocked: it replaces it.
    let knock = remote_knocks::select(&txn, &msg.room_id, &invitee).await?;
    remote_knocks::delete(&txn, &msg.room_id, &invitee).await?;
    remote_invites::upsert(
        &txn,
        &msg.room_id,
        &invitee,
        &remote_invites::RemoteInviteRow {
            event_id: event_id.to_string(),
            room_version: msg.room_version.clone(),
            json: event.to_string(),
        },
    )
    .await?;
    let output = RoomserverOutput::NewRoomEvent {
        room_id: msg.room_id.clone(),
        event_id: event_id.to_string(),
        event,
        adds_state: vec![event_id.to_string()],
        removes_state: knock.into_iter().map(|k| k.event_id).collect(),
        redacts: None,
        redacted_by: None,
        transaction: None,
        send_on_behalf_of: None,
    };
    let out = bus::append(&txn, input::STREAM, &msg.room_id, &output).await?;
    deps.bus.commit(txn, &[out]).await?;
    tracing::info!(room_id = %msg.room_id, event_id = %event_id, "received an invite into a room on another server");
    Ok(())
}

/// [`QueryRemoteInvite`].
pub async fn remote_invite(
    db: &impl Conn,
    room_id: &str,
    user_id: &str,
) -> Result<Option<RemoteInvite>, RoomserverError> {
    let Some(row) = remote_invites::select(db, room_id, user_id).await? else {
        return Ok(None);
    };
    Ok(Some(RemoteInvite {
        event_id: row.event_id,
        room_version: row.room_version,
        event: serde_json::from_str(&row.json).map_err(internal)?,
    }))
}

/// [`PerformRetireRemoteInvite`].
pub async fn retire_remote_invite(
    deps: &Deps,
    msg: PerformRetireRemoteInvite,
) -> Result<(), RoomserverError> {
    let row = remote_invites::select(&deps.db, &msg.room_id, &msg.user_id)
        .await?
        .ok_or(RoomserverError::NoRoom)?;
    let ended = Ended {
        room_id: &msg.room_id,
        user_id: &msg.user_id,
        event_id: &row.event_id,
        room_version: &row.room_version,
        json: &row.json,
        knock: false,
    };
    retire(deps, ended, msg.leave_event).await
}

/// [`PerformRetireRemoteKnock`].
pub async fn retire_remote_knock(
    deps: &Deps,
    msg: PerformRetireRemoteKnock,
) -> Result<(), RoomserverError> {
    let row = remote_knocks::select(&deps.db, &msg.room_id, &msg.user_id)
        .await?
        .ok_or(RoomserverError::NoRoom)?;
    let ended = Ended {
        room_id: &msg.room_id,
        user_id: &msg.user_id,
        event_id: &row.event_id,
        room_version: &row.room_version,
        json: &row.json,
        knock: true,
    };
    retire(deps, ended, msg.leave_event).await
}

/// A remote invite or knock being ended by a leave.
struct Ended<'a> {
    room_id: &'a str,
    user_id: &'a str,
    event_id: &'a str,
    room_version: &'a str,
    json: &'a str,
    /// A knock (`roomserver_remote_knocks`), else an invite.
    knock: bool,
}

/// Removes a remote invite or knock and outputs the leave that replaces it for the
/// syncapi: `leave_event` as the room's server accepted it, or one made here on top of the
/// invite or knock, known to nobody else.
async fn retire(
    deps: &Deps,
    ended: Ended<'_>,
    leave_event: Option<Value>,
) -> Result<(), RoomserverError> {
    let version = ended.room_version;
    let mut membership: CanonicalJsonObject = serde_json::from_str(ended.json).map_err(internal)?;
    membership.remove("unsigned");
    let leave = match leave_event {
        Some(leave) => {
            let object: CanonicalJsonObject =
                serde_json::from_value(leave).map_err(|e| bad(format!("not a PDU: {e}")))?;
            let id = pdu::event_id_of(&object, version)?;
            (id, object)
        }
        None => {
            // Known to nobody else: it only ends the invite or knock here.
            let (version_id, rules) = pdu::rules(version)?;
            let ended_id = OwnedEventId::try_from(ended.event_id).map_err(internal)?;
            let mut hashes = HashMap::new();
            if rules.events_reference_format == EventsReferenceFormatVersion::V1 {
                hashes.insert(
                    ended_id.clone(),
                    pdu::reference_hash_of(&membership, version)?,
                );
            }
            let depth = membership
                .get("depth")
                .and_then(|d| d.as_integer())
                .map_or(0, i64::from);
            let built = PduBuilder {
                room_version: version_id,
                room_id: Some(
                    OwnedRoomId::try_from(ended.room_id).map_err(|e| bad(e.to_string()))?,
                ),
                sender: input::local_sender(deps, ended.user_id)?,
                event_type: TimelineEventType::RoomMember,
                state_key: Some(ended.user_id.to_owned()),
                content: json!({"membership": "leave"}),
                redacts: None,
                prev_events: vec![ended_id.clone()],
                auth_events: vec![ended_id],
                reference_hashes: hashes,
                depth: UInt::try_from(depth + 1).map_err(|e| bad(e.to_string()))?,
                origin_server_ts: input::now(),
            }
            .build(&deps.key, &deps.server_name)?;
            (built.event_id, built.json)
        }
    };
    let txn = deps.db.begin().await?;
    if ended.knock {
        remote_knocks::delete(&txn, ended.room_id, ended.user_id).await?;
    } else {
        remote_invites::delete(&txn, ended.room_id, ended.user_id).await?;
    }
    let output = RoomserverOutput::NewRoomEvent {
        room_id: ended.room_id.to_owned(),
        event_id: leave.0.to_string(),
        event: serde_json::to_value(&leave.1).map_err(internal)?,
        adds_state: vec![leave.0.to_string()],
        removes_state: vec![ended.event_id.to_owned()],
        redacts: None,
        redacted_by: None,
        transaction: None,
        send_on_behalf_of: None,
    };
    let out = bus::append(&txn, input::STREAM, ended.room_id, &output).await?;
    deps.bus.commit(txn, &[out]).await?;
    Ok(())
}

/// [`InputRemoteKnock`]: the checks, the remote knock row (replacing an earlier knock) and
/// its output, in one transaction.
pub async fn store_remote_knock(deps: &Deps, msg: InputRemoteKnock) -> Result<(), RoomserverError> {
    let version = msg.room_version.as_str();
    let mut object: CanonicalJsonObject =
        serde_json::from_value(msg.event).map_err(|e| bad(format!("not a PDU: {e}")))?;
    object.remove("unsigned");
    let event_id = pdu::event_id_of(&object, version).map_err(|e| bad(e.to_string()))?;
    let ev =
        PduEvent::from_json(event_id.clone(), &object, false).map_err(|e| bad(e.to_string()))?;
    if ev.room_id.as_ref().map(|r| r.as_str()) != Some(msg.room_id.as_str())
        || ev.kind != TimelineEventType::RoomMember
        || membership_of(&ev).as_deref() != Some("knock")
        || ev.state_key.as_deref() != Some(ev.sender.as_str())
        || ev.sender.server_name() != deps.server_name
    {
        return Err(bad(
            "the event is not a knock of one of our users on this room",
        ));
    }
    if verify_pdu(deps, &object, version).await? != Verified::All {
        return Err(bad("the knock's content hash is wrong"));
    }
    let user = ev.sender.to_string();
    let mut event = serde_json::to_value(&object).map_err(internal)?;
    event["unsigned"] = json!({"knock_room_state": msg.knock_room_state});
    let txn = deps.db.begin().await?;
    let earlier = remote_knocks::select(&txn, &msg.room_id, &user).await?;
    remote_knocks::upsert(
        &txn,
        &msg.room_id,
        &user,
        &remote_knocks::RemoteKnockRow {
            event_id: event_id.to_string(),
            room_version: msg.room_version.clone(),
            json: event.to_string(),
            servers: serde_json::to_string(&msg.servers).map_err(internal)?,
        },
    )
    .await?;
    let output = RoomserverOutput::NewRoomEvent {
        room_id: msg.room_id.clone(),
        event_id: event_id.to_string(),
        event,
        adds_state: vec![event_id.to_string()],
        removes_state: earlier.into_iter().map(|k| k.event_id).collect(),
        redacts: None,
        redacted_by: None,
        transaction: None,
        send_on_behalf_of: None,
    };
    let out = bus::append(&txn, input::STREAM, &msg.room_id, &output).await?;
    deps.bus.commit(txn, &[out]).await?;
    tracing::info!(room_id = %msg.room_id, event_id = %event_id, "knocked on a room on another server");
    Ok(())
}

/// [`QueryRemoteKnock`].
pub async fn remote_knock(
    db: &impl Conn,
    room_id: &str,
    user_id: &str,
) -> Result<Option<RemoteKnock>, RoomserverError> {
    let Some(row) = remote_knocks::select(db, room_id, user_id).await? else {
        return Ok(None);
    };
    Ok(Some(RemoteKnock {
        event_id: row.event_id,
        room_version: row.room_version,
        event: serde_json::from_str(&row.json).map_err(internal)?,
        servers: serde_json::from_str(&row.servers).map_err(internal)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::input::Deps;
    use super::super::messages::*;
    use super::super::RoomserverError;
    use crate::actors::bridge::Handle;
    use crate::bus::Bus;
    use crate::signing_key::SigningKey;
    use crate::storage::testing::*;
    use serde_json::{json, Value};
    use std::sync::Arc;

    const ROOM: &str = "!imported:test.local";

    /// An event of the room `ROOM` (version 11) signed with `key` as `test.local`: (ID, PDU).
    #[allow(clippy::too_many_arguments)]
    fn build(
        key: &SigningKey,
        sender: &str,
        kind: &str,
        state_key: &str,
        content: Value,
        prev: &[&String],
        auth: &[&String],
        depth: u32,
    ) -> (String, Value) {
        let (version, _) = crate::pdu::rules("11").unwrap();
        let ids = |l: &[&String]| l.iter().map(|i| i.as_str().try_into().unwrap()).collect();
        let pdu = crate::pdu::PduBuilder {
            room_version: version,
            room_id: Some(ROOM.try_into().unwrap()),
            sender: format!("@{sender}:test.local").try_into().unwrap(),
            event_type: kind.into(),
            state_key: Some(state_key.to_owned()),
            content,
            redacts: None,
            prev_events: ids(prev),
            auth_events: ids(auth),
            reference_hashes: Default::default(),
            depth: depth.into(),
            origin_server_ts: ruma::MilliSecondsSinceUnixEpoch::now(),
        }
        .build(key, "test.local".try_into().unwrap())
        .unwrap();
        (
            pdu.event_id.to_string(),
            serde_json::to_value(&pdu.json).unwrap(),
        )
    }

    /// A room's state and auth chain as a resident server would return them, and a join of
    /// bob for `join_rule`; the state holds one event a non-member sent (it fails the auth
    /// rules) and one signed with a key that is not the server's (it does not verify).
    struct Answer {
        state: Vec<Value>,
        auth_chain: Vec<Value>,
        join: Value,
        join_id: String,
        rejected: String,
        forged: String,
    }

    fn answer(key: &SigningKey, join_rule: &str) -> Answer {
        let alice = "@alice:test.local";
        let (create, create_ev) = build(
            key,
            "alice",
            "m.room.create",
            "",
            json!({"room_version": "11"}),
            &[],
            &[],
            1,
        );
        let (member, member_ev) = build(
            key,
            "alice",
            "m.room.member",
            alice,
            json!({"membership": "join"}),
            &[&create],
            &[&create],
            2,
        );
        let (pl, pl_ev) = build(
            key,
            "alice",
            "m.room.power_levels",
            "",
            json!({"users": {alice: 100}}),
            &[&member],
            &[&create, &member],
            3,
        );
        let (jr, jr_ev) = build(
            key,
            "alice",
            "m.room.join_rules",
            "",
            json!({"join_rule": "public"}),
            &[&pl],
            &[&create, &member, &pl],
            4,
        );
        let (jr2, jr2_ev) = build(
            key,
            "alice",
            "m.room.join_rules",
            "",
            json!({"join_rule": join_rule}),
            &[&jr],
            &[&create, &member, &pl],
            5,
        );
        let (_, name_ev) = build(
            key,
            "alice",
            "m.room.name",
            "",
            json!({"name": "Elsewhere"}),
            &[&jr2],
            &[&create, &member, &pl],
            6,
        );
        let (rejected, topic_ev) = build(
            key,
            "mallory",
            "m.room.topic",
            "",
            json!({"topic": "mine"}),
            &[&jr2],
            &[&create, &pl],
            6,
        );
        let other_dir = tempfile::tempdir().unwrap();
        let other = SigningKey::load_or_generate(other_dir.path()).unwrap();
        let (forged, forged_ev) = build(
            &other,
            "alice",
            "m.room.avatar",
            "",
            json!({"url": "mxc://x/y"}),
            &[&jr2],
            &[&create, &member, &pl],
            6,
        );
        let bob = "@bob:test.local";
        // Its auth events allow it (public); the state it joins may not (`join_rule`).
        let (join_id, join) = build(
            key,
            "bob",
            "m.room.member",
            bob,
            json!({"membership": "join"}),
            &[&jr2],
            &[&create, &pl, &jr],
            7,
        );
        Answer {
            state: vec![
                create_ev.clone(),
                member_ev.clone(),
                pl_ev.clone(),
                jr2_ev,
                name_ev,
                topic_ev,
                forged_ev,
            ],
            auth_chain: vec![create_ev.clone(), member_ev, pl_ev, jr_ev, create_ev],
            join,
            join_id,
            rejected,
            forged,
        }
    }

    fn import(a: &Answer, room_id: &str) -> InputJoinedRoom {
        InputJoinedRoom {
            room_id: room_id.into(),
            room_version: "11".into(),
            join_event: a.join.clone(),
            state: a.state.clone(),
            auth_chain: a.auth_chain.clone(),
        }
    }

    #[actix_web::test]
    async fn a_joined_room_is_checked_and_imported() {
        for backend in BACKENDS {
            let t = test_db(backend).await;
            let dir = tempfile::tempdir().unwrap();
            let key = Arc::new(SigningKey::load_or_generate(dir.path()).unwrap());
            let rs = Handle::Local(super::super::start(
                Deps {
                    db: t.db.clone(),
                    bus: Bus::new(),
                    key: key.clone(),
                    server_name: "test.local".try_into().unwrap(),
                    default_room_version: "12".into(),
                    keyring: Default::default(),
                },
                &crate::actors::executors::Executors::start(2),
            ));
            // A create event of another room, a join the state refuses: nothing stored.
            let good = answer(&key, "public");
            let wrong_room = rs.send(import(&good, "!other:test.local")).await;
            assert!(
                matches!(&wrong_room, Err(RoomserverError::BadRequest(why)) if why.contains("no valid m.room.create")),
                "{wrong_room:?}"
            );
            let closed = answer(&key, "invite");
            let refused = rs.send(import(&closed, ROOM)).await;
            assert!(
                matches!(refused, Err(RoomserverError::NotAllowed(_))),
                "{refused:?}"
            );
            let none = rs
                .send(QueryJoinedServers {
                    room_id: ROOM.into(),
                })
                .await
                .unwrap();
            assert_eq!(none, None, "{backend}");

            let sent = rs.send(import(&good, ROOM)).await.unwrap();
            assert_eq!(sent.event_id, good.join_id);
            let state = rs
                .send(QueryCurrentState {
                    room_id: ROOM.into(),
                    types: vec![],
                })
                .await
                .unwrap()
                .unwrap();
            let mut keys: Vec<String> = state
                .iter()
                .map(|e| {
                    format!(
                        "{}|{}",
                        e.json["type"].as_str().unwrap(),
                        e.json["state_key"].as_str().unwrap()
                    )
                })
                .collect();
            keys.sort();
            assert_eq!(
                keys,
                [
                    "m.room.create|",
                    "m.room.join_rules|",
                    "m.room.member|@alice:test.local",
                    "m.room.member|@bob:test.local",
                    "m.room.name|",
                    "m.room.power_levels|",
                ],
                "{backend}"
            );
            // The event the auth rules refuse is kept rejected; the forged one is not kept.
            let rejected = rs
                .send(QueryEvent {
                    event_id: good.rejected.clone(),
                })
                .await
                .unwrap()
                .unwrap();
            assert!(rejected.rejected);
            let forged = rs
                .send(QueryEvent {
                    event_id: good.forged.clone(),
                })
                .await
                .unwrap();
            assert!(forged.is_none(), "{backend}");
            let joined = rs
                .send(QueryJoinedRooms {
                    user_id: "@bob:test.local".into(),
                })
                .await
                .unwrap();
            assert_eq!(joined, vec![ROOM.to_owned()]);
            let servers = rs
                .send(QueryJoinedServers {
                    room_id: ROOM.into(),
                })
                .await
                .unwrap();
            assert_eq!(servers, Some(vec!["test.local".to_owned()]));
            // The room continues from the join: a local event builds on it.
            let next = rs
                .send(PerformRoomEvent {
                    room_id: Some(ROOM.into()),
                    room_version: None,
                    sender: "@bob:test.local".into(),
                    event_type: "m.room.message".into(),
                    state_key: None,
                    content: json!({"msgtype": "m.text", "body": "hi"}),
                    txn: None,
                    redacts: None,
                })
                .await
                .unwrap();
            let stored = rs
                .send(QueryEvent {
                    event_id: next.event_id,
                })
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                stored.json["prev_events"],
                json!([good.join_id]),
                "{backend}"
            );
        }
    }

    #[actix_web::test]
    async fn remote_knocks_are_kept_and_retired() {
        for backend in BACKENDS {
            let t = test_db(backend).await;
            let dir = tempfile::tempdir().unwrap();
            let key = Arc::new(SigningKey::load_or_generate(dir.path()).unwrap());
            let rs = Handle::Local(super::super::start(
                Deps {
                    db: t.db.clone(),
                    bus: Bus::new(),
                    key: key.clone(),
                    server_name: "test.local".try_into().unwrap(),
                    default_room_version: "12".into(),
                    keyring: Default::default(),
                },
                &crate::actors::executors::Executors::start(2),
            ));
            let prev = "$prev".to_owned();
            let (knock_id, knock) = build(
                &key,
                "bob",
                "m.room.member",
                "@bob:test.local",
                json!({"membership": "knock"}),
                &[&prev],
                &[&prev],
                4,
            );
            let (_, join) = build(
                &key,
                "bob",
                "m.room.member",
                "@bob:test.local",
                json!({"membership": "join"}),
                &[&prev],
                &[&prev],
                4,
            );
            let input = |event: Value| InputRemoteKnock {
                room_id: ROOM.into(),
                room_version: "11".into(),
                event,
                knock_room_state: vec![json!({"type": "m.room.name", "content": {"name": "N"}})],
                servers: vec!["a.test".into()],
            };
            let refused = rs.send(input(join)).await;
            assert!(
                matches!(refused, Err(RoomserverError::BadRequest(_))),
                "{refused:?}"
            );
            let mut tampered = knock.clone();
            tampered["content"]["reason"] = json!("changed after signing");
            let refused = rs.send(input(tampered)).await;
            assert!(
                matches!(refused, Err(RoomserverError::BadRequest(_))),
                "{refused:?}"
            );
            rs.send(input(knock)).await.unwrap();
            let kept = rs
                .send(QueryRemoteKnock {
                    room_id: ROOM.into(),
                    user_id: "@bob:test.local".into(),
                })
                .await
                .unwrap()
                .unwrap();
            assert_eq!(kept.event_id, knock_id);
            assert_eq!(kept.servers, vec!["a.test".to_owned()]);
            assert_eq!(
                kept.event["unsigned"]["knock_room_state"][0]["type"], "m.room.name",
                "{backend}"
            );
            let retire = || PerformRetireRemoteKnock {
                room_id: ROOM.into(),
                user_id: "@bob:test.local".into(),
                leave_event: None,
            };
            rs.send(retire()).await.unwrap();
            let gone = rs
                .send(QueryRemoteKnock {
                    room_id: ROOM.into(),
                    user_id: "@bob:test.local".into(),
                })
                .await
                .unwrap();
            assert_eq!(gone, None, "{backend}");
            let again = rs.send(retire()).await;
            assert!(matches!(again, Err(RoomserverError::NoRoom)), "{again:?}");
        }
    }
}
