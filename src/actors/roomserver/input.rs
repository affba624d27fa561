//! The input path of events built on this server: build (prev events, auth events, depth from
//! the room's head), sign, authorize with ruma's state-res against the room's current state,
//! and store: the event, the state after it (a derived snapshot), the room's new head and the
//! output, all in one transaction. Callers serialize per room (the room actors).

use super::error::RoomserverError;
use super::messages::{PerformRoomEvent, RoomserverOutput, SentEvent, StoredEvent};
use super::state::{self, StateKey};
use super::storage::{event_types, events, memberships, rooms, state_keys, transactions};
use crate::bus::{self, Bus};
use crate::pdu::{self, Pdu, PduBuilder, PduEvent};
use crate::signing_key::SigningKey;
use crate::storage::{Conn, Db};
use ruma::events::{StateEventType, TimelineEventType};
use ruma::room_version_rules::EventsReferenceFormatVersion;
use ruma::state_res;
use ruma::{
    EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedServerName, OwnedUserId,
    UInt,
};
use std::collections::HashMap;
use std::sync::Arc;

/// The roomserver's output stream.
pub const STREAM: &str = "roomserver";

/// What the input path uses; cheap to clone.
#[derive(Clone)]
pub struct Deps {
    pub db: Db,
    pub bus: Bus,
    pub key: Arc<SigningKey>,
    pub server_name: OwnedServerName,
    /// The version of new rooms that do not name one.
    pub default_room_version: String,
    /// Other servers' keys, for events built elsewhere.
    pub keyring: super::keyring::Keyring,
}

pub(super) fn bad(e: impl ToString) -> RoomserverError {
    RoomserverError::BadRequest(e.to_string())
}

pub(super) fn local_sender(deps: &Deps, sender: &str) -> Result<OwnedUserId, RoomserverError> {
    let sender = OwnedUserId::try_from(sender).map_err(bad)?;
    if sender.server_name() != deps.server_name {
        return Err(bad("the sender is not a user of this server"));
    }
    Ok(sender)
}

pub(super) fn now() -> MilliSecondsSinceUnixEpoch {
    MilliSecondsSinceUnixEpoch::now()
}

/// The events of a room's current state for the given keys, loaded and parsed: the state map
/// and the events by ID.
pub(super) async fn state_events(
    db: &Db,
    snapshot: i64,
    wanted: &[(StateEventType, String)],
) -> Result<
    (
        HashMap<(StateEventType, String), OwnedEventId>,
        HashMap<OwnedEventId, PduEvent>,
    ),
    RoomserverError,
> {
    let mut keys: Vec<StateKey> = Vec::new();
    let mut names: HashMap<StateKey, (StateEventType, String)> = HashMap::new();
    // Two statements for all the types and keys, not two per pair.
    let type_names: Vec<String> = wanted.iter().map(|(t, _)| t.to_string()).collect();
    let key_names: Vec<String> = wanted.iter().map(|(_, k)| k.clone()).collect();
    let type_nids = event_types::select_nids(db, &type_names).await?;
    let key_nids = state_keys::select_nids(db, &key_names).await?;
    for (t, k) in wanted {
        let type_nid = type_nids.get(&t.to_string()).copied();
        let key_nid = key_nids.get(k).copied();
        if let (Some(tn), Some(kn)) = (type_nid, key_nid) {
            keys.push((tn, kn));
            names.insert((tn, kn), (t.clone(), k.clone()));
        }
    }
    let entries = state::load_keys(db, snapshot, &keys).await?;
    let nids: Vec<i64> = entries.values().copied().collect();
    let rows = events::select_by_nids(db, &nids).await?;
    let mut by_nid: HashMap<i64, OwnedEventId> = HashMap::new();
    let mut by_id = HashMap::new();
    for row in rows {
        let id = OwnedEventId::try_from(row.event_id.as_str())
            .map_err(|e| RoomserverError::internal(e))?;
        let json: ruma::CanonicalJsonObject =
            serde_json::from_str(&row.json).map_err(|e| RoomserverError::internal(e))?;
        by_id.insert(
            id.clone(),
            PduEvent::from_json(id.clone(), &json, row.rejected)?,
        );
        by_nid.insert(row.event_nid, id);
    }
    let map = entries
        .iter()
        .filter_map(|(k, nid)| Some((names.get(k)?.clone(), by_nid.get(nid)?.clone())))
        .collect();
    Ok((map, by_id))
}

/// What a room's actor remembers between the events it builds, so that sending into a busy
/// room reads only the room's head before its write: the state events read at the room's
/// current snapshot (a snapshot's state never changes, so they stay true as long as the room
/// is at that snapshot; a new snapshot starts afresh) and the IDs of the events it wrote last
/// (the next event's `prev_events`). Events from elsewhere and redactions can change how an
/// event reads (its redacted form), so after those the cache starts afresh; it also does so
/// after [`RoomCache::MAX_AGE`], which keeps it well inside the redaction retention period.
#[derive(Default)]
pub struct RoomCache {
    snapshot: Option<i64>,
    since: Option<std::time::Instant>,
    /// (type, state key) -> the event at it in `snapshot`, or `None` when there is none.
    state: HashMap<(StateEventType, String), Option<OwnedEventId>>,
    events: HashMap<OwnedEventId, PduEvent>,
    /// event nid -> ID of the events this actor wrote last.
    ids: HashMap<i64, OwnedEventId>,
}

impl RoomCache {
    /// How long cached state is used before it is read again.
    pub const MAX_AGE: std::time::Duration = std::time::Duration::from_secs(600);
    /// The most state entries kept (a large room's senders' member events): past it, the
    /// cache starts afresh, so a room actor's memory stays bounded.
    pub const MAX_ENTRIES: usize = 2048;

    /// Forgets everything.
    pub fn clear(&mut self) {
        *self = RoomCache::default();
    }

    /// Starts afresh unless it holds `snapshot`'s state and is young enough.
    fn at(&mut self, snapshot: i64) {
        let fresh = self.snapshot == Some(snapshot)
            && self.since.is_some_and(|t| t.elapsed() < Self::MAX_AGE);
        if !fresh {
            let ids = std::mem::take(&mut self.ids);
            self.clear();
            self.ids = ids;
            self.snapshot = Some(snapshot);
            self.since = Some(std::time::Instant::now());
        }
    }

    /// The state map and events of `wanted` at `snapshot`, from the cache as far as it goes.
    async fn state_events(
        cell: &std::cell::RefCell<RoomCache>,
        db: &Db,
        snapshot: i64,
        wanted: &[(StateEventType, String)],
    ) -> Result<
        (
            HashMap<(StateEventType, String), OwnedEventId>,
            HashMap<OwnedEventId, PduEvent>,
        ),
        RoomserverError,
    > {
        let missing: Vec<(StateEventType, String)> = {
            let mut c = cell.borrow_mut();
            c.at(snapshot);
            wanted
                .iter()
                .filter(|k| !c.state.contains_key(k))
                .cloned()
                .collect()
        };
        let (mut map, mut events) = if missing.is_empty() {
            Default::default()
        } else {
            state_events(db, snapshot, &missing).await?
        };
        let mut c = cell.borrow_mut();
        for k in wanted {
            if map.contains_key(k) {
                continue;
            }
            if let Some(Some(id)) = c.state.get(k) {
                if let Some(ev) = c.events.get(id) {
                    events.insert(id.clone(), ev.clone());
                }
                map.insert(k.clone(), id.clone());
            }
        }
        // Another read may have moved the cache on while this one waited: keep the answers
        // only if it still holds the same snapshot.
        if !missing.is_empty() && c.snapshot == Some(snapshot) {
            if c.state.len() + missing.len() > Self::MAX_ENTRIES {
                c.state.clear();
                c.events.clear();
            }
            for k in &missing {
                let id = map.get(k).cloned();
                if let Some(ev) = id.as_ref().and_then(|id| events.get(id)) {
                    c.events.insert(ev.event_id.clone(), ev.clone());
                }
                c.state.insert(k.clone(), id);
            }
        }
        Ok((map, events))
    }

    /// The IDs of the events with these nids.
    async fn event_ids(
        cell: &std::cell::RefCell<RoomCache>,
        db: &Db,
        nids: &[i64],
    ) -> Result<Vec<OwnedEventId>, RoomserverError> {
        {
            let c = cell.borrow();
            let known: Vec<OwnedEventId> =
                nids.iter().filter_map(|n| c.ids.get(n).cloned()).collect();
            if known.len() == nids.len() {
                return Ok(known);
            }
        }
        events::select_by_nids(db, nids)
            .await?
            .into_iter()
            .map(|row| {
                OwnedEventId::try_from(row.event_id.as_str())
                    .map_err(|e| RoomserverError::internal(e))
            })
            .collect()
    }

    /// Records the event just written as the room's head.
    fn wrote(&mut self, nid: i64, id: &EventId) {
        self.ids.clear();
        self.ids.insert(nid, id.to_owned());
    }
}

/// Sends an event into an existing room. Call it for one room at a time.
pub async fn in_room(
    deps: &Deps,
    room_id: &str,
    msg: PerformRoomEvent,
    cache: &std::cell::RefCell<RoomCache>,
) -> Result<SentEvent, RoomserverError> {
    let sender = local_sender(deps, &msg.sender)?;
    if msg.event_type == "m.room.create" {
        return Err(RoomserverError::NotAllowed(
            "m.room.create can only be the first event of a room".into(),
        ));
    }
    let db = &deps.db;
    let request = format!(
        "{room_id} {} {}",
        msg.event_type,
        msg.redacts.as_deref().unwrap_or_default()
    );
    if let Some((device, txn_id)) = &msg.txn {
        if let Some(event_id) =
            transactions::select(db, sender.as_str(), device, txn_id, &request).await?
        {
            return Ok(SentEvent {
                event_id,
                room_id: room_id.to_owned(),
            });
        }
    }
    let room = rooms::select(db, room_id)
        .await?
        .ok_or(RoomserverError::NoRoom)?;
    let (version_id, rules) = pdu::rules(&room.room_version)?;
    let snapshot = room
        .state_snapshot_nid
        .ok_or_else(|| RoomserverError::internal(format!("room {room_id} has no state")))?;
    let event_type = TimelineEventType::from(msg.event_type.as_str());
    let raw_content = serde_json::value::to_raw_value(&msg.content).map_err(bad)?;
    let auth_types = state_res::auth_types_for_event(
        &event_type,
        &sender,
        msg.state_key.as_deref(),
        &raw_content,
        &rules.authorization,
    )
    .map_err(bad)?;
    let mut wanted = auth_types.clone();
    wanted.push((StateEventType::RoomCreate, String::new()));
    let replaces = msg
        .state_key
        .as_ref()
        .map(|k| (StateEventType::from(msg.event_type.as_str()), k.clone()));
    wanted.extend(replaces.clone());
    let (state_map, events_by_id) = RoomCache::state_events(cache, db, snapshot, &wanted).await?;
    // State identical to the current state (same type, key, sender and content) is not sent
    // again: the current event's ID is the answer (as Synapse; a repeated join, a profile
    // change that changes nothing, a client re-sending a room name).
    if let Some(current) = replaces
        .and_then(|k| state_map.get(&k))
        .and_then(|id| events_by_id.get(id))
    {
        let same_content = serde_json::from_str::<serde_json::Value>(current.content.get())
            .is_ok_and(|c| c == msg.content);
        if current.sender == sender && same_content && msg.redacts.is_none() {
            return Ok(SentEvent {
                event_id: current.event_id.to_string(),
                room_id: room_id.to_owned(),
            });
        }
    }
    let auth_events: Vec<OwnedEventId> = auth_types
        .iter()
        .filter_map(|k| state_map.get(k).cloned())
        .collect();
    let redacted = match (&event_type, &msg.redacts) {
        (TimelineEventType::RoomRedaction, Some(target)) => {
            let lookup = |k: StateEventType| {
                state_map
                    .get(&(k, String::new()))
                    .and_then(|id| events_by_id.get(id))
            };
            let create = lookup(StateEventType::RoomCreate);
            let power_levels = lookup(StateEventType::RoomPowerLevels);
            Some(
                redaction_target(
                    db,
                    room.room_nid,
                    target,
                    &sender,
                    create,
                    power_levels,
                    &rules,
                    Redactor::Sender,
                )
                .await?,
            )
        }
        (TimelineEventType::RoomRedaction, None) => {
            return Err(bad("a redaction needs the event it redacts"))
        }
        _ => None,
    };
    let prev_events = RoomCache::event_ids(cache, db, &room.latest_event_nids).await?;
    let depth = room.max_depth + 1;
    let reference_hashes = reference_hashes(
        db,
        &room.room_version,
        &rules,
        prev_events.iter().chain(&auth_events),
    )
    .await?;
    let pdu = PduBuilder {
        room_version: version_id,
        room_id: Some(OwnedRoomId::try_from(room_id).map_err(bad)?),
        sender,
        event_type: event_type.clone(),
        state_key: msg.state_key.clone(),
        content: msg.content,
        redacts: redacted.as_ref().map(|(_, id)| id.clone()),
        prev_events,
        auth_events,
        reference_hashes,
        depth: UInt::try_from(depth).map_err(bad)?,
        origin_server_ts: now(),
    }
    .build(&deps.key, &deps.server_name)?;
    let event = PduEvent::from_json(pdu.event_id.clone(), &pdu.json, false)?;
    let fetch_event = |id: &EventId| events_by_id.get(id);
    state_res::check_state_independent_auth_rules(&rules.authorization, &event, fetch_event)
        .map_err(RoomserverError::NotAllowed)?;
    let fetch_state = |t: &StateEventType, k: &str| {
        state_map
            .get(&(t.clone(), k.to_owned()))
            .and_then(|id| events_by_id.get(id))
    };
    state_res::check_state_dependent_auth_rules(&rules.authorization, &event, fetch_state)
        .map_err(RoomserverError::NotAllowed)?;
    let redaction = redacted.is_some();
    let txn = db.begin().await?;
    let (sent, nid) = persist(
        deps,
        txn,
        room.room_nid,
        Some(snapshot),
        &pdu,
        &msg.event_type,
        msg.state_key.as_deref(),
        depth,
        msg.txn
            .as_ref()
            .map(|(d, t)| (d.as_str(), t.as_str(), request.as_str())),
        redacted.as_ref().map(|(nid, id)| (*nid, id.as_str())),
    )
    .await?;
    let mut c = cache.borrow_mut();
    if redaction {
        // The target now reads redacted, and it may be in the cached state.
        c.clear();
    }
    c.wrote(nid, &pdu.event_id);
    Ok(sent)
}

/// Room versions 1 and 2: the reference hashes of the events a new event refers to, written
/// next to their IDs. Empty in later versions, whose references are plain IDs.
pub(super) async fn reference_hashes(
    db: &Db,
    version: &str,
    rules: &ruma::room_version_rules::RoomVersionRules,
    ids: impl Iterator<Item = &OwnedEventId>,
) -> Result<HashMap<OwnedEventId, String>, RoomserverError> {
    let mut hashes = HashMap::new();
    if rules.events_reference_format != EventsReferenceFormatVersion::V1 {
        return Ok(hashes);
    }
    for id in ids {
        let row = events::select_by_id(db, id.as_str())
            .await?
            .ok_or_else(|| RoomserverError::internal(format!("event {id} not stored")))?;
        let json: ruma::CanonicalJsonObject =
            serde_json::from_str(&row.json).map_err(|e| RoomserverError::internal(e))?;
        hashes.insert(id.clone(), pdu::reference_hash_of(&json, version)?);
    }
    Ok(hashes)
}

/// Who, without the room's `redact` power level, may redact an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Redactor {
    /// Its sender (a redaction a local client asks for, as Synapse's client API).
    Sender,
    /// Any user of its sender's server (a redaction built elsewhere: the spec's rule from room
    /// version 3; in versions 1 and 2 the auth rules already require it of the event ID's
    /// server).
    Server,
}

/// The event a redaction names, if it is in the room (and not rejected) and the sender may
/// redact it: by `who`, or with the room's `redact` power level. `NoEvent` and `NotAllowed`
/// say why not.
#[allow(clippy::too_many_arguments)]
pub(super) async fn redaction_target(
    db: &impl Conn,
    room_nid: i64,
    target: &str,
    sender: &ruma::UserId,
    create: Option<&PduEvent>,
    power_levels: Option<&PduEvent>,
    rules: &ruma::room_version_rules::RoomVersionRules,
    who: Redactor,
) -> Result<(i64, OwnedEventId), RoomserverError> {
    let row = events::select_by_id(db, target)
        .await?
        .filter(|row| row.room_nid == room_nid && !row.rejected)
        .ok_or_else(|| RoomserverError::NoEvent(target.to_owned()))?;
    let json: serde_json::Value =
        serde_json::from_str(&row.json).map_err(|e| RoomserverError::internal(e))?;
    let target_sender = json["sender"].as_str().unwrap_or_default();
    let own = match who {
        Redactor::Sender => target_sender == sender.as_str(),
        Redactor::Server => ruma::UserId::parse(target_sender)
            .is_ok_and(|u| u.server_name() == sender.server_name()),
    };
    let content = |e: Option<&PduEvent>| -> serde_json::Value {
        e.and_then(|e| serde_json::from_str(e.content.get()).ok())
            .unwrap_or_default()
    };
    let pl = content(power_levels);
    if !own && power_of(sender, create, &pl, rules) < level(&pl["redact"], 50) {
        return Err(RoomserverError::NotAllowed(
            "You don't have permission to redact this event".into(),
        ));
    }
    let id =
        OwnedEventId::try_from(row.event_id.as_str()).map_err(|e| RoomserverError::internal(e))?;
    Ok((row.event_nid, id))
}

/// A power level as the content gives it (an integer, or a numeric string in old versions).
pub(super) fn level(v: &serde_json::Value, default: i64) -> i64 {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        .unwrap_or(default)
}

/// A user's power level in a room: creators of v12+ rooms are above every level.
pub(super) fn power_of(
    user: &ruma::UserId,
    create: Option<&PduEvent>,
    power_levels: &serde_json::Value,
    rules: &ruma::room_version_rules::RoomVersionRules,
) -> i64 {
    if let Some(create) = create {
        if rules.authorization.explicitly_privilege_room_creators {
            let content: serde_json::Value =
                serde_json::from_str(create.content.get()).unwrap_or_default();
            let additional = content["additional_creators"]
                .as_array()
                .is_some_and(|a| a.iter().any(|u| u.as_str() == Some(user.as_str())));
            if create.sender == user || additional {
                return i64::MAX;
            }
        }
        if power_levels.is_null() {
            // Before any power levels, the creator has 100 and everyone else 0.
            return if create.sender == user { 100 } else { 0 };
        }
    }
    match power_levels["users"].get(user.as_str()) {
        Some(v) => level(v, 0),
        None => level(&power_levels["users_default"], 0),
    }
}

/// Stores an accepted event, the state after it, the room's new head and the output, and
/// commits.
#[allow(clippy::too_many_arguments)]
async fn persist(
    deps: &Deps,
    txn: crate::storage::Txn,
    room_nid: i64,
    state_before: Option<i64>,
    pdu: &Pdu,
    event_type: &str,
    state_key: Option<&str>,
    depth: i64,
    client_txn: Option<(&str, &str, &str)>,
    redacts: Option<(i64, &str)>,
) -> Result<(SentEvent, i64), RoomserverError> {
    let stored = store(
        &txn,
        room_nid,
        state_before,
        pdu,
        event_type,
        state_key,
        depth,
        client_txn,
        redacts,
    )
    .await?
    .ok_or_else(|| RoomserverError::internal(format!("event {} stored twice", pdu.event_id)))?;
    deps.bus.commit(txn, &[stored.appended]).await?;
    Ok((stored.sent, stored.nid))
}

/// An event [`store`]d in a transaction that has yet to commit.
pub(super) struct Stored {
    pub sent: SentEvent,
    /// Its numeric ID.
    pub nid: i64,
    /// Its output, to announce once the transaction commits.
    pub appended: bus::Appended,
    /// The state snapshot after it.
    pub state_after: i64,
}

/// Stores an accepted event, the state after it, the room's new head and the output in
/// `txn`, without committing; `None` when an event with its ID is already stored.
#[allow(clippy::too_many_arguments)]
pub(super) async fn store(
    txn: &crate::storage::Txn,
    room_nid: i64,
    state_before: Option<i64>,
    pdu: &Pdu,
    event_type: &str,
    state_key: Option<&str>,
    depth: i64,
    client_txn: Option<(&str, &str, &str)>,
    redacts: Option<(i64, &str)>,
) -> Result<Option<Stored>, RoomserverError> {
    let type_nid = event_types::intern(txn, event_type).await?;
    let key_nid = match state_key {
        Some(k) => Some(state_keys::intern(txn, k).await?),
        None => None,
    };
    let json = serde_json::to_string(&pdu.json).map_err(|e| RoomserverError::internal(e))?;
    // The output goes first, so the event row is written once with its position (and, for
    // an event that is not state, the state after it). Should the event turn out to be stored
    // already, the caller drops the transaction, output and all.
    let (mut adds_state, mut removes_state) = (Vec::new(), Vec::new());
    if let (Some(k), Some(before)) = (key_nid, state_before) {
        adds_state.push(pdu.event_id.to_string());
        let replaced: Vec<i64> = state::load_keys(txn, before, &[(type_nid, k)])
            .await?
            .into_values()
            .collect();
        removes_state = events::select_by_nids(txn, &replaced)
            .await?
            .into_iter()
            .map(|row| row.event_id)
            .collect();
    } else if key_nid.is_some() {
        adds_state.push(pdu.event_id.to_string());
    }
    let output = RoomserverOutput::NewRoomEvent {
        room_id: pdu.room_id.to_string(),
        event_id: pdu.event_id.to_string(),
        event: serde_json::to_value(&pdu.json).map_err(|e| RoomserverError::internal(e))?,
        adds_state,
        removes_state,
        redacts: redacts.map(|(_, id)| id.to_owned()),
        redacted_by: None,
        transaction: client_txn.map(|(device, txn_id, _)| (device.to_owned(), txn_id.to_owned())),
        send_on_behalf_of: None,
    };
    let appended = bus::append(txn, STREAM, pdu.room_id.as_str(), &output).await?;
    let after_if_not_state = match key_nid {
        Some(_) => None,
        None => {
            Some(state_before.ok_or_else(|| RoomserverError::internal("a room without state"))?)
        }
    };
    let nid = events::insert(
        txn,
        &events::NewEvent {
            room_nid,
            event_id: pdu.event_id.as_str(),
            type_nid,
            state_key_nid: key_nid,
            depth,
            json: &json,
            rejected: false,
            origin_server_ts: pdu
                .json
                .get("origin_server_ts")
                .and_then(|v| v.as_integer())
                .map_or(0, i64::from),
            state_snapshot_nid: state_before,
            state_after_snapshot_nid: after_if_not_state,
            stream_position: Some(appended.position),
        },
    )
    .await?;
    let Some(nid) = nid else {
        return Ok(None);
    };
    if let Some((target, _)) = redacts {
        events::set_redacted(txn, target, pdu.event_id.as_str()).await?;
    }
    if let (true, Some(target)) = (event_type == "m.room.member", state_key) {
        let membership = pdu
            .json
            .get("content")
            .and_then(|c| c.as_object())
            .and_then(|c| c.get("membership"))
            .and_then(|m| m.as_str())
            .unwrap_or_default();
        memberships::upsert(txn, room_nid, target, membership, nid).await?;
    }
    let after = match (key_nid, after_if_not_state) {
        (_, Some(after)) => after,
        (Some(k), None) => {
            let after = state::derive(txn, room_nid, state_before, &[((type_nid, k), nid)]).await?;
            events::set_state_after(txn, nid, after).await?;
            after
        }
        (None, None) => unreachable!("an event that is not state has its state after"),
    };
    rooms::update_head(txn, room_nid, after, &[nid], depth).await?;
    if let Some((device, txn_id, request)) = client_txn {
        let sender = pdu
            .json
            .get("sender")
            .and_then(|s| s.as_str())
            .unwrap_or_default();
        transactions::insert(txn, sender, device, txn_id, request, pdu.event_id.as_str()).await?;
    }
    Ok(Some(Stored {
        nid,
        sent: SentEvent {
            event_id: pdu.event_id.to_string(),
            room_id: pdu.room_id.to_string(),
        },
        appended,
        state_after: after,
    }))
}

/// Reads the room's current state events, all or only `types`.
pub async fn current_state(
    db: &Db,
    room_id: &str,
    types: &[(String, String)],
) -> Result<Option<Vec<StoredEvent>>, RoomserverError> {
    let Some(room) = rooms::select(db, room_id).await? else {
        return Ok(None);
    };
    let Some(snapshot) = room.state_snapshot_nid else {
        return Ok(Some(Vec::new()));
    };
    let entries = if types.is_empty() {
        state::load(db, snapshot).await?
    } else {
        let mut keys = Vec::new();
        for (t, k) in types {
            if let (Some(tn), Some(kn)) = (
                event_types::select_nid(db, t).await?,
                state_keys::select_nid(db, k).await?,
            ) {
                keys.push((tn, kn));
            }
        }
        state::load_keys(db, snapshot, &keys).await?
    };
    let nids: Vec<i64> = entries.values().copied().collect();
    let mut out = Vec::with_capacity(nids.len());
    for row in events::select_by_nids(db, &nids).await? {
        out.push(stored(db, room_id, &room.room_version, row).await?);
    }
    Ok(Some(out))
}

pub(super) async fn stored(
    db: &impl Conn,
    room_id: &str,
    version: &str,
    row: events::EventRow,
) -> Result<StoredEvent, RoomserverError> {
    let mut json: serde_json::Value =
        serde_json::from_str(&row.json).map_err(|e| RoomserverError::internal(e))?;
    let mut redacted_because = None;
    if let Some(redaction_id) = &row.redacted_by {
        let object: ruma::CanonicalJsonObject =
            serde_json::from_value(json).map_err(|e| RoomserverError::internal(e))?;
        let redacted = pdu::redact(object, version)?;
        json = serde_json::to_value(redacted).map_err(|e| RoomserverError::internal(e))?;
        if let Some(r) = events::select_by_id(db, redaction_id).await? {
            let mut because: serde_json::Value =
                serde_json::from_str(&r.json).map_err(|e| RoomserverError::internal(e))?;
            because["event_id"] = redaction_id.clone().into();
            redacted_because = Some(because);
        }
    }
    Ok(StoredEvent {
        json,
        event_id: row.event_id,
        room_id: room_id.to_owned(),
        rejected: row.rejected,
        redacted_because,
    })
}

/// Reads one event, redacted if a redaction applies to it.
pub async fn event(db: &Db, event_id: &str) -> Result<Option<StoredEvent>, RoomserverError> {
    let Some(row) = events::select_by_id(db, event_id).await? else {
        return Ok(None);
    };
    let (room_id, version) = rooms::select_by_nid(db, row.room_nid)
        .await?
        .ok_or_else(|| RoomserverError::internal(format!("event {event_id} without a room")))?;
    stored(db, &room_id, &version, row).await.map(Some)
}

/// Records a report of a room or of one of its events.
pub async fn report(
    db: &Db,
    room_id: &str,
    event_id: Option<&str>,
    reporter: &str,
    reason: Option<&str>,
) -> Result<(), RoomserverError> {
    let room = rooms::select(db, room_id)
        .await?
        .ok_or(RoomserverError::NoRoom)?;
    if let Some(event_id) = event_id {
        let in_room = memberships::select(db, room_id, reporter)
            .await?
            .is_some_and(|(m, _)| m == "join");
        let found = events::select_by_id(db, event_id)
            .await?
            .is_some_and(|e| e.room_nid == room.room_nid && !e.rejected);
        if !(in_room && found) {
            return Err(RoomserverError::NoEvent(event_id.to_owned()));
        }
    }
    super::storage::reports::insert(db, room_id, event_id, reporter, reason).await?;
    tracing::info!(room_id, event_id, reporter, "report received");
    Ok(())
}

/// The room's state after its last event output at or before a stream position, for a
/// `viewer` who may see that event (`NotAllowed` otherwise).
pub async fn state_at_position(
    db: &Db,
    room_id: &str,
    position: i64,
    viewer: &str,
) -> Result<Option<Vec<StoredEvent>>, RoomserverError> {
    let Some(room) = rooms::select(db, room_id).await? else {
        return Ok(None);
    };
    let Some(event_id) = events::select_at_position(db, room.room_nid, position).await? else {
        return Ok(Some(Vec::new()));
    };
    let row = events::select_by_id(db, &event_id)
        .await?
        .ok_or_else(|| RoomserverError::internal(format!("output event {event_id} not stored")))?;
    let mut v = super::visibility::Viewer::load(db, room.room_nid, room_id, viewer).await?;
    if !v.may_see(db, &row).await? {
        return Err(RoomserverError::NotAllowed(format!(
            "{viewer} may not see room {room_id} at that point"
        )));
    }
    state_after_row(db, room_id, &room.room_version, &event_id, row)
        .await
        .map(Some)
}

/// The room's state right after one of its events; `None` when the room or the event (in
/// that room) is unknown.
pub async fn state_after_event(
    db: &Db,
    room_id: &str,
    event_id: &str,
) -> Result<Option<Vec<StoredEvent>>, RoomserverError> {
    let Some(room) = rooms::select(db, room_id).await? else {
        return Ok(None);
    };
    match events::select_by_id(db, event_id).await? {
        Some(row) if row.room_nid == room.room_nid => {
            state_after_row(db, room_id, &room.room_version, event_id, row)
                .await
                .map(Some)
        }
        _ => Ok(None),
    }
}

async fn state_after_row(
    db: &Db,
    room_id: &str,
    room_version: &str,
    event_id: &str,
    row: events::EventRow,
) -> Result<Vec<StoredEvent>, RoomserverError> {
    let entries = match events::select_state_after(db, event_id).await? {
        Some(after) => state::load(db, after).await?,
        // Events stored before the state after each event was recorded.
        None => {
            let mut entries = match row.state_snapshot_nid {
                Some(s) => state::load(db, s).await?,
                None => state::StateEntries::new(),
            };
            if let (Some(key), false) = (row.state_key_nid, row.rejected) {
                entries.insert((row.type_nid, key), row.event_nid);
            }
            entries
        }
    };
    let nids: Vec<i64> = entries.values().copied().collect();
    let mut out = Vec::with_capacity(nids.len());
    for r in events::select_by_nids(db, &nids).await? {
        out.push(stored(db, room_id, room_version, r).await?);
    }
    Ok(out)
}
