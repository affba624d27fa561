//! State resolution v1, the algorithm of room version 1 (spec: rooms/v1 "State resolution"),
//! which ruma's state-res does not implement. Later versions use v2 (`ruma::state_res::resolve`).
//!
//! The resolved state R starts as the unconflicted state: every (type, state key) on which the
//! state sets that have it agree. A key that only some sets have is not a conflict (as Synapse
//! reads the spec: "different event IDs for the same key"). The conflicts are then resolved in
//! passes, each against R as the passes before it left it:
//! 1. `m.room.power_levels`, then 2. `m.room.join_rules`, then 3. each `m.room.member` key:
//!    the conflicting events sorted by ascending depth then descending SHA-1 of the event ID;
//!    the first is taken as it is, and each next one replaces it while it is allowed by the
//!    authorization rules in R with the one before it; the first that is not allowed ends the
//!    pass for that key.
//! 4. Every other key: the first event, by descending depth then ascending SHA-1 of the event
//!    ID, that is allowed in R (the last one if none is; the spec leaves that case open and
//!    Synapse takes the last).
//!
//! Member keys are resolved independently of each other (each against R after the join rules),
//! and so are the other keys, which makes the result independent of any key order. Events the
//! caller cannot fetch drop out of their conflict. The algorithm is known to reset state (the
//! spec's warning); room version 2 replaced it.
//!
//! Pure: the caller (`input_events.rs`) loads the events; storage is not touched here.

use crate::pdu::PduEvent;
use ruma::events::StateEventType;
use ruma::room_version_rules::AuthorizationRules;
use ruma::state_res::{self, StateMap};
use ruma::{EventId, OwnedEventId};
use sha1::{Digest, Sha1};
use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

type Key = (StateEventType, String);

/// Resolves several state sets (each a map of (type, state key) to event ID) into one, by
/// state resolution v1. `fetch` gives the events of the sets' conflicting entries.
pub fn resolve<'a>(
    rules: &AuthorizationRules,
    state_sets: &[StateMap<OwnedEventId>],
    fetch: impl Fn(&EventId) -> Option<&'a PduEvent>,
) -> StateMap<OwnedEventId> {
    let (mut resolved, conflicts) = separate(state_sets);
    let mut conflicted: BTreeMap<Key, Vec<&PduEvent>> = BTreeMap::new();
    for (key, ids) in conflicts {
        let events: Vec<&PduEvent> = ids.iter().filter_map(|id| fetch(id)).collect();
        match events.as_slice() {
            [] => {}
            [only] => {
                resolved.insert(key, only.event_id.clone());
            }
            _ => {
                conflicted.insert(key, events);
            }
        }
    }

    let power_levels = (StateEventType::RoomPowerLevels, String::new());
    if let Some(events) = conflicted.remove(&power_levels) {
        let winner = resolve_auth_events(rules, events, &resolved, &fetch);
        resolved.insert(power_levels, winner);
    }
    for kind in [StateEventType::RoomJoinRules, StateEventType::RoomMember] {
        let keys: Vec<Key> = conflicted
            .keys()
            .filter(|(t, _)| *t == kind)
            .cloned()
            .collect();
        let mut winners = Vec::with_capacity(keys.len());
        for key in keys {
            let events = conflicted.remove(&key).unwrap_or_default();
            winners.push((key, resolve_auth_events(rules, events, &resolved, &fetch)));
        }
        resolved.extend(winners);
    }
    let winners: Vec<(Key, OwnedEventId)> = conflicted
        .into_iter()
        .map(|(key, events)| {
            let winner = resolve_normal_events(rules, events, &resolved, &fetch);
            (key, winner)
        })
        .collect();
    resolved.extend(winners);
    resolved
}

/// The unconflicted state (keys on which every set that has them agrees) and the conflicts.
fn separate(
    state_sets: &[StateMap<OwnedEventId>],
) -> (
    StateMap<OwnedEventId>,
    BTreeMap<Key, BTreeSet<OwnedEventId>>,
) {
    let mut values: BTreeMap<Key, BTreeSet<OwnedEventId>> = BTreeMap::new();
    for set in state_sets {
        for (key, id) in set {
            values.entry(key.clone()).or_default().insert(id.clone());
        }
    }
    let mut unconflicted = StateMap::new();
    let mut conflicted = BTreeMap::new();
    for (key, ids) in values {
        if ids.len() == 1 {
            unconflicted.insert(key, ids.into_iter().next().expect("one ID"));
        } else {
            conflicted.insert(key, ids);
        }
    }
    (unconflicted, conflicted)
}

/// SHA-1 of the event ID, the spec's tie-break between events of the same depth.
fn sha1(id: &EventId) -> [u8; 20] {
    Sha1::digest(id.as_str().as_bytes()).into()
}

/// Ascending depth, then descending SHA-1 of the event ID.
fn ascending(a: &PduEvent, b: &PduEvent) -> Ordering {
    a.depth
        .cmp(&b.depth)
        .then_with(|| sha1(&b.event_id).cmp(&sha1(&a.event_id)))
}

/// Passes 1 to 3 for one key: walk the events in ascending order, each replacing the one
/// before while it is allowed in `state` with that one in it.
fn resolve_auth_events<'a>(
    rules: &AuthorizationRules,
    mut events: Vec<&PduEvent>,
    state: &StateMap<OwnedEventId>,
    fetch: &impl Fn(&EventId) -> Option<&'a PduEvent>,
) -> OwnedEventId {
    events.sort_by(|a, b| ascending(a, b));
    let mut winner = events[0];
    for event in &events[1..] {
        if !allowed(rules, event, state, Some(winner), fetch) {
            break;
        }
        winner = event;
    }
    winner.event_id.clone()
}

/// Pass 4 for one key: the first event allowed in `state`, by descending depth then
/// ascending SHA-1; the last one when none is.
fn resolve_normal_events<'a>(
    rules: &AuthorizationRules,
    mut events: Vec<&PduEvent>,
    state: &StateMap<OwnedEventId>,
    fetch: &impl Fn(&EventId) -> Option<&'a PduEvent>,
) -> OwnedEventId {
    events.sort_by(|a, b| ascending(b, a));
    events
        .iter()
        .find(|e| allowed(rules, e, state, None, fetch))
        .or(events.last())
        .map(|e| e.event_id.clone())
        .expect("a conflict has at least two events")
}

/// Whether the authorization rules allow `event` in `state`, with `overlay` (an event of
/// `event`'s own key) in place of the state's entry for that key.
fn allowed<'a>(
    rules: &AuthorizationRules,
    event: &PduEvent,
    state: &StateMap<OwnedEventId>,
    overlay: Option<&PduEvent>,
    fetch: &impl Fn(&EventId) -> Option<&'a PduEvent>,
) -> bool {
    let overlay = overlay.and_then(|o| {
        let key = (
            StateEventType::from(o.kind.to_string()),
            o.state_key.clone()?,
        );
        Some((key, o))
    });
    let lookup = |t: &StateEventType, k: &str| -> Option<&PduEvent> {
        if let Some(((ot, ok), o)) = &overlay {
            if ot == t && ok == k {
                return Some(*o);
            }
        }
        state
            .get(&(t.clone(), k.to_owned()))
            .and_then(|id| fetch(id))
    };
    state_res::check_state_dependent_auth_rules(rules, event, lookup).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdu::PduBuilder;
    use crate::signing_key::SigningKey;
    use ruma::{
        owned_room_id, server_name, MilliSecondsSinceUnixEpoch, OwnedUserId, RoomVersionId, UInt,
    };
    use serde_json::{json, Value};
    use std::collections::HashMap;

    /// A room version 1 DAG built in memory, every event by this test's key.
    struct Room {
        events: HashMap<OwnedEventId, PduEvent>,
        key: SigningKey,
    }

    impl Room {
        fn new() -> Room {
            Room {
                events: HashMap::new(),
                key: SigningKey::for_tests(),
            }
        }

        /// Builds an event; auth and prev references are not checked by the resolution.
        fn add(
            &mut self,
            sender: &str,
            kind: &str,
            state_key: Option<&str>,
            content: Value,
            depth: u32,
        ) -> OwnedEventId {
            let pdu = PduBuilder {
                room_version: RoomVersionId::V1,
                room_id: Some(owned_room_id!("!r:example.org")),
                sender: OwnedUserId::try_from(format!("@{sender}:example.org")).unwrap(),
                event_type: kind.into(),
                state_key: state_key.map(str::to_owned),
                content,
                redacts: None,
                prev_events: vec![],
                auth_events: vec![],
                reference_hashes: HashMap::new(),
                depth: UInt::from(depth),
                origin_server_ts: MilliSecondsSinceUnixEpoch::now(),
            }
            .build(&self.key, server_name!("example.org"))
            .unwrap();
            let ev = PduEvent::from_json(pdu.event_id.clone(), &pdu.json, false).unwrap();
            self.events.insert(pdu.event_id.clone(), ev);
            pdu.event_id
        }

        fn member(&mut self, sender: &str, target: &str, membership: &str, depth: u32) -> Id {
            let target = format!("@{target}:example.org");
            let content = json!({ "membership": membership });
            self.add(sender, "m.room.member", Some(&target), content, depth)
        }

        fn power_levels(&mut self, sender: &str, users: Value, depth: u32) -> Id {
            let content = json!({ "users": users });
            self.add(sender, "m.room.power_levels", Some(""), content, depth)
        }

        fn resolve(&self, sets: &[&StateMap<Id>]) -> StateMap<Id> {
            let sets: Vec<StateMap<Id>> = sets.iter().map(|s| (*s).clone()).collect();
            resolve(&AuthorizationRules::V1, &sets, |id| self.events.get(id))
        }

        /// `base` with the given events put in at their keys.
        fn with(&self, base: &StateMap<Id>, ids: &[&Id]) -> StateMap<Id> {
            let mut out = base.clone();
            for id in ids {
                let e = &self.events[*id];
                let key = (e.kind.to_string().into(), e.state_key.clone().unwrap());
                out.insert(key, (*id).clone());
            }
            out
        }
    }

    type Id = OwnedEventId;

    fn key(t: &str, k: &str) -> Key {
        (t.into(), k.to_owned())
    }

    /// Create, alice joined with power 100, public join rules, bob joined (depths 1 to 5).
    fn base(room: &mut Room) -> StateMap<Id> {
        let create = room.add(
            "alice",
            "m.room.create",
            Some(""),
            json!({"creator": "@alice:example.org"}),
            1,
        );
        let alice = room.member("alice", "alice", "join", 2);
        let pl = room.power_levels("alice", json!({"@alice:example.org": 100}), 3);
        let jr = room.add(
            "alice",
            "m.room.join_rules",
            Some(""),
            json!({"join_rule": "public"}),
            4,
        );
        let bob = room.member("bob", "bob", "join", 5);
        room.with(&StateMap::new(), &[&create, &alice, &pl, &jr, &bob])
    }

    #[test]
    fn a_later_power_levels_event_wins_only_when_the_earlier_one_allows_it() {
        let mut room = Room::new();
        let s0 = base(&mut room);
        let pl_key = key("m.room.power_levels", "");
        // Fork A: alice raises bob (depth 6). Fork B: bob gives carol power (depth 7).
        let raise = room.power_levels(
            "alice",
            json!({"@alice:example.org": 100, "@bob:example.org": 100}),
            6,
        );
        let by_bob = room.power_levels(
            "bob",
            json!({"@alice:example.org": 100, "@bob:example.org": 100, "@carol:example.org": 50}),
            7,
        );
        let a = room.with(&s0, &[&raise]);
        let b = room.with(&s0, &[&by_bob]);
        // Ascending depth: alice's first; with it in R bob has 100, so his change is allowed.
        assert_eq!(room.resolve(&[&a, &b])[&pl_key], by_bob);
        assert_eq!(room.resolve(&[&b, &a])[&pl_key], by_bob);

        // Fork A': alice demotes bob instead: bob's change then fails and alice's stays.
        let demote = room.power_levels(
            "alice",
            json!({"@alice:example.org": 100, "@bob:example.org": 0}),
            6,
        );
        let a = room.with(&s0, &[&demote]);
        let resolved = room.resolve(&[&a, &b]);
        assert_eq!(resolved[&pl_key], demote);
        // The unconflicted state is kept as it was.
        for k in ["m.room.create", "m.room.join_rules"] {
            assert_eq!(resolved[&key(k, "")], s0[&key(k, "")]);
        }

        // The first event of the order is taken without a check: a lower-depth change by
        // bob (never allowed on its own) wins when alice's later one is not allowed after it
        // (bob's sets alice to 0).
        let usurp = room.power_levels("bob", json!({"@bob:example.org": 100}), 6);
        let later = room.power_levels("alice", json!({"@alice:example.org": 100}), 7);
        let resolved = room.resolve(&[&room.with(&s0, &[&usurp]), &room.with(&s0, &[&later])]);
        assert_eq!(resolved[&pl_key], usurp);
    }

    #[test]
    fn a_ban_beats_a_join_whichever_comes_first() {
        for (join_depth, ban_depth) in [(6, 7), (7, 6)] {
            let mut room = Room::new();
            let s0 = base(&mut room);
            let join = room.member("carol", "carol", "join", join_depth);
            let ban = room.member("alice", "carol", "ban", ban_depth);
            let a = room.with(&s0, &[&join]);
            let b = room.with(&s0, &[&ban]);
            let resolved = room.resolve(&[&a, &b]);
            // Join first: the ban is allowed after it. Ban first: the join is refused.
            assert_eq!(
                resolved[&key("m.room.member", "@carol:example.org")],
                ban,
                "join at {join_depth}, ban at {ban_depth}"
            );
        }
    }

    #[test]
    fn power_levels_are_resolved_before_members() {
        let mut room = Room::new();
        let s0 = base(&mut room);
        // Fork A: alice gives bob the power to ban, then bob bans carol; fork B: carol joins.
        // The ban is allowed only with A's power levels.
        let raise = room.power_levels(
            "alice",
            json!({"@alice:example.org": 100, "@bob:example.org": 50}),
            6,
        );
        let ban = room.member("bob", "carol", "ban", 8);
        let join = room.member("carol", "carol", "join", 7);
        let a = room.with(&s0, &[&raise, &ban]);
        let b = room.with(&s0, &[&join]);
        let resolved = room.resolve(&[&a, &b]);
        // Only A has power levels other than the base's: a conflict, resolved to A's.
        assert_eq!(resolved[&key("m.room.power_levels", "")], raise);
        assert_eq!(resolved[&key("m.room.member", "@carol:example.org")], ban);

        // Without A's power levels (the base's in both sets), bob's ban is not allowed:
        // the join (first by ascending depth) stays.
        let a = room.with(&s0, &[&ban]);
        let resolved = room.resolve(&[&a, &b]);
        assert_eq!(resolved[&key("m.room.member", "@carol:example.org")], join);
    }

    #[test]
    fn other_conflicts_take_the_deepest_allowed_event() {
        let mut room = Room::new();
        let s0 = base(&mut room);
        let topic = |room: &mut Room, sender: &str, depth| {
            room.add(
                sender,
                "m.room.topic",
                Some(""),
                json!({"topic": sender}),
                depth,
            )
        };
        let by_alice = topic(&mut room, "alice", 6);
        let by_carol = topic(&mut room, "carol", 8); // not in the room
        let by_bob = topic(&mut room, "bob", 7);
        let sets = [
            room.with(&s0, &[&by_alice]),
            room.with(&s0, &[&by_carol]),
            room.with(&s0, &[&by_bob]),
        ];
        let resolved = room.resolve(&[&sets[0], &sets[1], &sets[2]]);
        // carol's is deepest but not in the room; bob's is next, but bob has 0 of the 50
        // that state needs by default.
        assert_eq!(resolved[&key("m.room.topic", "")], by_alice);

        // Equal depths: the lower SHA-1 of the event ID wins.
        let one = topic(&mut room, "alice", 9);
        let two = topic(&mut room, "alice", 9);
        let expected = if sha1(&one) < sha1(&two) { &one } else { &two };
        let resolved = room.resolve(&[&room.with(&s0, &[&one]), &room.with(&s0, &[&two])]);
        assert_eq!(&resolved[&key("m.room.topic", "")], expected);

        // None allowed: the last in the order (the shallowest).
        let carol_again = topic(&mut room, "carol", 10);
        let resolved = room.resolve(&[
            &room.with(&s0, &[&by_carol]),
            &room.with(&s0, &[&carol_again]),
        ]);
        assert_eq!(resolved[&key("m.room.topic", "")], by_carol);
    }

    #[test]
    fn keys_in_only_some_sets_are_not_conflicts() {
        let mut room = Room::new();
        let s0 = base(&mut room);
        // Bob's membership is missing from fork A and a name only in fork B: both kept as the
        // set that has them says. An unfetchable event drops out of its conflict.
        let name = room.add("alice", "m.room.name", Some(""), json!({"name": "n"}), 6);
        let mut without_bob = s0.clone();
        without_bob.remove(&key("m.room.member", "@bob:example.org"));
        let b = room.with(&s0, &[&name]);
        let resolved = room.resolve(&[&without_bob, &b]);
        assert_eq!(resolved[&key("m.room.name", "")], name);
        assert_eq!(
            resolved[&key("m.room.member", "@bob:example.org")],
            s0[&key("m.room.member", "@bob:example.org")]
        );
        let mut unknown = s0.clone();
        unknown.insert(
            key("m.room.topic", ""),
            OwnedEventId::try_from("$unknown:example.org").unwrap(),
        );
        let topic = room.add("alice", "m.room.topic", Some(""), json!({"topic": "t"}), 6);
        let resolved = room.resolve(&[&unknown, &room.with(&s0, &[&topic])]);
        assert_eq!(resolved[&key("m.room.topic", "")], topic);
        // One set: itself.
        assert_eq!(room.resolve(&[&s0]), s0);
    }
}
