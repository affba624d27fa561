//! Creating a room: its `m.room.create` event and the initial events after it, all built,
//! signed and authorized in memory, one after another against the state the ones before
//! them make, and stored in ONE transaction (with their outputs). Either the whole room
//! exists or nothing does: an initial event the auth rules refuse (a bad power levels
//! override, an `initial_state` event the creator may not send) leaves no half-built room.
//!
//! A new room has no actor yet and nobody else can send into it before it is committed, so
//! this runs outside the room actors (as Synapse builds a new room's events with a state map
//! of its own before persisting them as a batch).

use super::error::RoomserverError;
use super::input::{bad, local_sender, now, store, Deps, Stored};
use super::messages::{InitialEvent, SentEvent};
use super::storage::rooms;
use crate::pdu::{self, Pdu, PduBuilder, PduEvent};
use ruma::events::{StateEventType, TimelineEventType};
use ruma::state_res;
use ruma::{EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, UInt};
use std::collections::HashMap;

/// How many timestamps a v12 create event tries before giving up on a free room ID.
const ID_ATTEMPTS: u64 = 16;

/// Creates a room: the create event (`creation_content` with `room_version`, and `creator`
/// where the version wants it, set here), then `initial`, in order, all sent by `sender`.
/// Returns the create event.
pub async fn create(
    deps: &Deps,
    room_version: Option<String>,
    sender: &str,
    creation_content: serde_json::Value,
    initial: Vec<InitialEvent>,
) -> Result<SentEvent, RoomserverError> {
    let sender = local_sender(deps, sender)?;
    let version = room_version.unwrap_or_else(|| deps.default_room_version.clone());
    let (version_id, rules) = pdu::rules(&version)?;
    let serde_json::Value::Object(mut content) = creation_content else {
        return Err(bad("content must be a JSON object"));
    };
    content.insert("room_version".into(), version.clone().into());
    if !rules.authorization.use_room_create_sender {
        content.insert("creator".into(), sender.as_str().into());
    }
    let content: serde_json::Value = content.into();
    // A v12 room ID is the hash of its create event, which has no random part: two rooms
    // created by one user with the same content in the same millisecond would collide, so
    // a taken ID moves the timestamp on (bounded).
    let first = u64::from(now().0);
    for attempt in 0..ID_ATTEMPTS {
        let room_id = if rules.authorization.room_create_event_id_as_room_id {
            None
        } else {
            Some(
                OwnedRoomId::try_from(format!("!{}:{}", random_localpart(), deps.server_name))
                    .map_err(bad)?,
            )
        };
        let ts = MilliSecondsSinceUnixEpoch(UInt::try_from(first + attempt).map_err(bad)?);
        let mut room = NewRoom {
            key: &deps.key,
            server_name: &deps.server_name,
            version: version_id.clone(),
            rules: &rules,
            sender: &sender,
            state: HashMap::new(),
            events: HashMap::new(),
            built: Vec::new(),
        };
        room.build(
            room_id,
            TimelineEventType::RoomCreate,
            Some(String::new()),
            content.clone(),
            ts,
        )?;
        let room_id = room.built[0].0.room_id.clone();
        for e in &initial {
            room.build(
                Some(room_id.clone()),
                TimelineEventType::from(e.event_type.as_str()),
                e.state_key.clone(),
                e.content.clone(),
                ts,
            )?;
        }
        let txn = deps.db.begin().await?;
        if rooms::select(&txn, room_id.as_str()).await?.is_some() {
            continue;
        }
        let room_nid = rooms::insert(&txn, room_id.as_str(), &version).await?;
        let mut snapshot = None;
        let mut appended = Vec::with_capacity(room.built.len());
        let mut created = None;
        let mut twin = false;
        for (depth, (pdu, event_type, state_key)) in (1i64..).zip(&room.built) {
            let Some(Stored {
                sent,
                appended: a,
                state_after,
                ..
            }) = store(
                &txn,
                room_nid,
                snapshot,
                pdu,
                event_type,
                state_key.as_deref(),
                depth,
                None,
                None,
            )
            .await?
            else {
                // A concurrent twin won the race for this ID: take the next millisecond.
                twin = true;
                break;
            };
            snapshot = Some(state_after);
            appended.push(a);
            created.get_or_insert(sent);
        }
        if twin {
            continue;
        }
        deps.bus.commit(txn, &appended).await?;
        return created.ok_or_else(|| RoomserverError::internal("no create event"));
    }
    Err(RoomserverError::internal(format!(
        "no free room ID after {ID_ATTEMPTS} tries"
    )))
}

/// A room being built in memory: its state so far and its events in order.
struct NewRoom<'a> {
    key: &'a crate::signing_key::SigningKey,
    server_name: &'a ruma::ServerName,
    version: ruma::RoomVersionId,
    rules: &'a ruma::room_version_rules::RoomVersionRules,
    sender: &'a ruma::UserId,
    state: HashMap<(StateEventType, String), OwnedEventId>,
    events: HashMap<OwnedEventId, PduEvent>,
    /// (event, type, state key), in order.
    built: Vec<(Pdu, String, Option<String>)>,
}

impl NewRoom<'_> {
    /// Builds, signs and authorizes the next event against the state so far.
    fn build(
        &mut self,
        room_id: Option<OwnedRoomId>,
        event_type: TimelineEventType,
        state_key: Option<String>,
        content: serde_json::Value,
        ts: MilliSecondsSinceUnixEpoch,
    ) -> Result<(), RoomserverError> {
        let auth = &self.rules.authorization;
        let auth_events: Vec<OwnedEventId> = if self.built.is_empty() {
            Vec::new()
        } else {
            let raw = serde_json::value::to_raw_value(&content).map_err(bad)?;
            state_res::auth_types_for_event(
                &event_type,
                self.sender,
                state_key.as_deref(),
                &raw,
                auth,
            )
            .map_err(bad)?
            .iter()
            .filter_map(|k| self.state.get(k).cloned())
            .collect()
        };
        let prev_events: Vec<OwnedEventId> = self
            .built
            .last()
            .map(|(p, _, _)| p.event_id.clone())
            .into_iter()
            .collect();
        let depth = UInt::try_from(self.built.len() + 1).map_err(bad)?;
        // Room versions 1 and 2 refer to events by ID and reference hash.
        let mut reference_hashes = HashMap::new();
        if self.rules.events_reference_format
            == ruma::room_version_rules::EventsReferenceFormatVersion::V1
        {
            for id in prev_events.iter().chain(&auth_events) {
                if let Some((p, _, _)) = self.built.iter().find(|(p, _, _)| &p.event_id == id) {
                    let hash = pdu::reference_hash_of(&p.json, self.version.as_str())?;
                    reference_hashes.insert(id.clone(), hash);
                }
            }
        }
        let pdu = PduBuilder {
            room_version: self.version.clone(),
            room_id,
            sender: self.sender.to_owned(),
            event_type: event_type.clone(),
            state_key: state_key.clone(),
            content,
            redacts: None,
            prev_events,
            auth_events,
            reference_hashes,
            depth,
            origin_server_ts: ts,
        }
        .build(self.key, self.server_name)?;
        let event = PduEvent::from_json(pdu.event_id.clone(), &pdu.json, false)?;
        let events = &self.events;
        state_res::check_state_independent_auth_rules(auth, &event, |id: &EventId| events.get(id))
            .map_err(RoomserverError::NotAllowed)?;
        if !self.built.is_empty() {
            let state = &self.state;
            let fetch_state = |t: &StateEventType, k: &str| {
                state
                    .get(&(t.clone(), k.to_owned()))
                    .and_then(|id| events.get(id))
            };
            state_res::check_state_dependent_auth_rules(auth, &event, fetch_state)
                .map_err(RoomserverError::NotAllowed)?;
        }
        if let Some(k) = &state_key {
            self.state.insert(
                (StateEventType::from(event_type.to_string()), k.clone()),
                pdu.event_id.clone(),
            );
        }
        self.events.insert(pdu.event_id.clone(), event);
        self.built.push((pdu, event_type.to_string(), state_key));
        Ok(())
    }
}

fn random_localpart() -> String {
    rand::distributions::DistString::sample_string(
        &rand::distributions::Alphanumeric,
        &mut rand::thread_rng(),
        18,
    )
}
