//! CPU hot paths, without a database:
//!
//! - `event_build_hash_sign`: one message event built into canonical JSON, content-hashed,
//!   ed25519-signed and given its reference-hash ID (what every send does).
//! - `auth_check_message_1000_members`: the auth rules (state-independent and state-dependent)
//!   of a message in a room of 1,000 joined members.
//! - `state_res_two_forks_200_members`: state resolution v2 of two forks of a 200-member room
//!   (one fork changes power levels and the name, the other the join rule, the topic and a
//!   membership).
//! - `sync_response_100_rooms`: writing a /sync response for 100 rooms of 20 events each in the
//!   client format (with `unsigned`) and serializing it.
//!
//! Room version 11 (the state-resolution fixture needs no conflicted subgraph). Run:
//! `cargo bench --bench hotpaths`.

use criterion::{criterion_group, criterion_main, Criterion};
use myelin::actors::syncapi::format::{self, Format};
use myelin::actors::syncapi::storage::room_events::RoomEvent;
use myelin::pdu::{Pdu, PduBuilder, PduEvent};
use myelin::signing_key::SigningKey;
use ruma::events::{StateEventType, TimelineEventType};
use ruma::room_version_rules::RoomVersionRules;
use ruma::state_res::{self, utils::event_id_set::EventIdSet, StateMap};
use ruma::{
    MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, OwnedServerName, RoomVersionId, UInt,
};
use serde_json::{json, Value};
use std::collections::HashMap;

const SERVER: &str = "bench.local";

struct Room {
    key: SigningKey,
    _dir: tempfile::TempDir,
    server: OwnedServerName,
    room_id: OwnedRoomId,
    rules: RoomVersionRules,
    events: HashMap<OwnedEventId, PduEvent>,
    json: HashMap<OwnedEventId, Pdu>,
    state: StateMap<OwnedEventId>,
    depth: u64,
    last: Option<OwnedEventId>,
}

impl Room {
    fn new() -> Room {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::load_or_generate(dir.path()).unwrap();
        let (_, rules) = myelin::pdu::rules("11").unwrap();
        let mut room = Room {
            key,
            _dir: dir,
            server: SERVER.try_into().unwrap(),
            room_id: format!("!bench:{SERVER}").try_into().unwrap(),
            rules,
            events: HashMap::new(),
            json: HashMap::new(),
            state: StateMap::new(),
            depth: 0,
            last: None,
        };
        room.add(
            "alice",
            "m.room.create",
            Some(""),
            json!({"room_version": "11"}),
        );
        let alice = format!("@alice:{SERVER}");
        room.add(
            "alice",
            "m.room.member",
            Some(&alice),
            json!({"membership": "join"}),
        );
        room.add(
            "alice",
            "m.room.power_levels",
            Some(""),
            json!({"users": {alice: 100}}),
        );
        room.add(
            "alice",
            "m.room.join_rules",
            Some(""),
            json!({"join_rule": "public"}),
        );
        room
    }

    fn builder(&self, sender: &str, ty: &str, key: Option<&str>, content: Value) -> PduBuilder {
        let mut auth = Vec::new();
        let sender_id = format!("@{sender}:{SERVER}");
        for k in [
            (StateEventType::RoomCreate, String::new()),
            (StateEventType::RoomPowerLevels, String::new()),
            (StateEventType::RoomMember, sender_id.clone()),
        ] {
            if let Some(id) = self.state.get(&k) {
                auth.push(id.clone());
            }
        }
        if ty == "m.room.member" {
            if let Some(id) = self
                .state
                .get(&(StateEventType::RoomJoinRules, String::new()))
            {
                auth.push(id.clone());
            }
        }
        PduBuilder {
            room_version: RoomVersionId::V11,
            room_id: Some(self.room_id.clone()),
            sender: sender_id.try_into().unwrap(),
            event_type: TimelineEventType::from(ty),
            state_key: key.map(str::to_owned),
            content,
            redacts: None,
            prev_events: self.last.iter().cloned().collect(),
            auth_events: auth,
            reference_hashes: Default::default(),
            depth: UInt::try_from(self.depth + 1).unwrap(),
            origin_server_ts: MilliSecondsSinceUnixEpoch::now(),
        }
    }

    fn add(&mut self, sender: &str, ty: &str, key: Option<&str>, content: Value) -> OwnedEventId {
        let pdu = self
            .builder(sender, ty, key, content)
            .build(&self.key, &self.server)
            .unwrap();
        let ev = PduEvent::from_json(pdu.event_id.clone(), &pdu.json, false).unwrap();
        let id = pdu.event_id.clone();
        if let Some(k) = key {
            self.state
                .insert((StateEventType::from(ty), k.to_owned()), id.clone());
        }
        self.events.insert(id.clone(), ev);
        self.json.insert(id.clone(), pdu);
        self.depth += 1;
        self.last = Some(id.clone());
        id
    }

    fn join(&mut self, n: usize) {
        for i in 0..n {
            let user = format!("@u{i}:{SERVER}");
            self.add(
                &format!("u{i}"),
                "m.room.member",
                Some(&user),
                json!({"membership": "join"}),
            );
        }
    }

    /// Every event reachable by auth edges from `ids`.
    fn auth_chain(&self, ids: impl Iterator<Item = OwnedEventId>) -> EventIdSet<OwnedEventId> {
        let mut seen = EventIdSet::new();
        let mut todo: Vec<OwnedEventId> = ids.collect();
        while let Some(id) = todo.pop() {
            for a in &self.events[&id].auth_events {
                if seen.insert(a.clone()) {
                    todo.push(a.clone());
                }
            }
        }
        seen
    }
}

fn event_build_hash_sign(c: &mut Criterion) {
    let room = Room::new();
    let b = room.builder(
        "alice",
        "m.room.message",
        None,
        json!({"msgtype": "m.text", "body": "a message of a typical length, about sixty bytes"}),
    );
    c.bench_function("event_build_hash_sign", |bench| {
        bench.iter(|| b.clone().build(&room.key, &room.server).unwrap())
    });
}

fn auth_check_message_1000_members(c: &mut Criterion) {
    let mut room = Room::new();
    room.join(1000);
    let msg = room
        .builder(
            "u500",
            "m.room.message",
            None,
            json!({"msgtype": "m.text", "body": "hi"}),
        )
        .build(&room.key, &room.server)
        .unwrap();
    let event = PduEvent::from_json(msg.event_id.clone(), &msg.json, false).unwrap();
    let auth = &room.rules.authorization;
    c.bench_function("auth_check_message_1000_members", |bench| {
        bench.iter(|| {
            state_res::check_state_independent_auth_rules(auth, &event, |id| room.events.get(id))
                .unwrap();
            state_res::check_state_dependent_auth_rules(auth, &event, |t, k| {
                room.state
                    .get(&(t.clone(), k.to_owned()))
                    .and_then(|id| room.events.get(id))
            })
            .unwrap();
        })
    });
}

fn state_res_two_forks(c: &mut Criterion) {
    let mut room = Room::new();
    room.join(200);
    let base = room.state.clone();
    let fork_at = room.last.clone();
    let alice = format!("@alice:{SERVER}");
    room.add(
        "alice",
        "m.room.power_levels",
        Some(""),
        json!({"users": {alice.clone(): 100, format!("@u1:{SERVER}"): 50}, "ban": 60}),
    );
    room.add("alice", "m.room.name", Some(""), json!({"name": "fork A"}));
    let fork_a = room.state.clone();
    room.state = base;
    room.last = fork_at;
    room.add(
        "alice",
        "m.room.join_rules",
        Some(""),
        json!({"join_rule": "invite"}),
    );
    room.add(
        "alice",
        "m.room.topic",
        Some(""),
        json!({"topic": "fork B"}),
    );
    let u3 = format!("@u3:{SERVER}");
    room.add(
        "u3",
        "m.room.member",
        Some(&u3),
        json!({"membership": "leave"}),
    );
    let fork_b = room.state.clone();
    let sets = [fork_a, fork_b];
    let chains: Vec<EventIdSet<OwnedEventId>> = sets
        .iter()
        .map(|s| room.auth_chain(s.values().cloned()))
        .collect();
    let v2 = room.rules.state_res.v2_rules().unwrap();
    let resolve = || {
        state_res::resolve(
            &room.rules.authorization,
            v2,
            sets.iter(),
            chains.clone(),
            |id| room.events.get(id).cloned(),
            |_| None,
        )
        .unwrap()
    };
    let resolved = resolve();
    // 4 room events, 200 members, the name and the topic.
    assert_eq!(resolved.len(), 206, "every member and room state survives");
    c.bench_function("state_res_two_forks_200_members", |bench| {
        bench.iter(resolve)
    });
}

fn sync_response_100_rooms(c: &mut Criterion) {
    let mut room = Room::new();
    room.join(20);
    let template: Vec<Pdu> = (0..20)
        .map(|i| {
            let id = room.add(
                &format!("u{}", i % 20),
                "m.room.message",
                None,
                json!({"msgtype": "m.text", "body": format!("message number {i} with some text")}),
            );
            room.json[&id].clone()
        })
        .collect();
    let rooms: Vec<Vec<RoomEvent>> = (0..100)
        .map(|r| {
            template
                .iter()
                .enumerate()
                .map(|(i, pdu)| RoomEvent {
                    position: (r * 20 + i) as i64,
                    room_id: format!("!room{r}:{SERVER}"),
                    event_id: pdu.event_id.to_string(),
                    event_type: "m.room.message".into(),
                    sender: pdu.json["sender"].as_str().unwrap().to_owned(),
                    json: serde_json::to_string(&pdu.json).unwrap(),
                    ..Default::default()
                })
                .collect()
        })
        .collect();
    let user = format!("@u1:{SERVER}");
    let f = Format {
        with_room_id: false,
        ..Format::client(&user, Some("DEVICE"))
    };
    let mut bytes = 0;
    c.bench_function("sync_response_100_rooms", |bench| {
        bench.iter(|| {
            let mut join = serde_json::Map::new();
            for events in &rooms {
                let timeline: Vec<Value> =
                    events.iter().map(|e| format::event(e, &f, None)).collect();
                join.insert(
                    events[0].room_id.clone(),
                    json!({"timeline": {"events": timeline, "limited": true, "prev_batch": "s1"},
                           "state": {"events": []}, "ephemeral": {"events": []}}),
                );
            }
            let body =
                serde_json::to_vec(&json!({"next_batch": "s2", "rooms": {"join": join}})).unwrap();
            bytes = body.len();
            body
        })
    });
    println!("sync_response_100_rooms: {bytes} bytes per response");
}

criterion_group!(
    benches,
    event_build_hash_sign,
    auth_check_message_1000_members,
    state_res_two_forks,
    sync_response_100_rooms
);
criterion_main!(benches);
