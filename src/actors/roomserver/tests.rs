//! The roomserver through its messages, on both databases and every supported room version.

use super::input::{Deps, STREAM};
use super::messages::*;
use super::RoomserverError;
use crate::actors::bridge::Handle;
use crate::bus::{run_consumer, Bus, Consumer, ConsumerError};
use crate::signing_key::SigningKey;
use crate::storage::testing::*;
use crate::storage::{Conn, Txn};
use serde_json::{json, Value};
use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

struct Fixture {
    rs: super::RoomserverHandle,
    key: Arc<SigningKey>,
    db: crate::storage::Db,
    bus: Bus,
    _db: TestDb,
    _dir: tempfile::TempDir,
}

async fn fixture(backend: crate::storage::Backend) -> Fixture {
    let t = test_db(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let key = Arc::new(SigningKey::load_or_generate(dir.path()).unwrap());
    let bus = Bus::new();
    let deps = Deps {
        db: t.db.clone(),
        bus: bus.clone(),
        key: key.clone(),
        server_name: "test.local".try_into().unwrap(),
        default_room_version: "12".into(),
        keyring: Default::default(),
    };
    Fixture {
        rs: Handle::Local(super::start(
            deps,
            &crate::actors::executors::Executors::start(2),
        )),
        key,
        db: t.db.clone(),
        bus,
        _db: t,
        _dir: dir,
    }
}

pub(crate) fn ev(
    room: &str,
    sender: &str,
    kind: &str,
    state_key: Option<&str>,
    content: Value,
) -> PerformRoomEvent {
    PerformRoomEvent {
        room_id: Some(room.into()),
        room_version: None,
        sender: format!("@{sender}:test.local"),
        event_type: kind.into(),
        state_key: state_key.map(str::to_owned),
        content,
        txn: None,
        redacts: None,
    }
}

fn member(room: &str, user: &str, membership: &str) -> PerformRoomEvent {
    let id = format!("@{user}:test.local");
    ev(
        room,
        user,
        "m.room.member",
        Some(&id),
        json!({ "membership": membership }),
    )
}

async fn create(f: &Fixture, version: &str) -> String {
    let sent =
        f.rs.send(PerformRoomEvent {
            room_id: None,
            room_version: Some(version.into()),
            sender: "@alice:test.local".into(),
            event_type: "m.room.create".into(),
            state_key: Some(String::new()),
            content: json!({}),
            txn: None,
            redacts: None,
        })
        .await
        .unwrap();
    sent.room_id
}

/// Creates a public room of `version` with alice as its creator and admin.
async fn public_room(f: &Fixture, version: &str) -> String {
    let room = create(f, version).await;
    f.rs.send(member(&room, "alice", "join")).await.unwrap();
    // From v12 creators are privileged by the create event and may not be listed.
    let users = if version == "12" {
        json!({})
    } else {
        json!({ "@alice:test.local": 100 })
    };
    f.rs.send(ev(
        &room,
        "alice",
        "m.room.power_levels",
        Some(""),
        json!({ "users": users }),
    ))
    .await
    .unwrap();
    f.rs.send(ev(
        &room,
        "alice",
        "m.room.join_rules",
        Some(""),
        json!({ "join_rule": "public" }),
    ))
    .await
    .unwrap();
    room
}

#[actix_web::test]
async fn rooms_of_every_version_follow_the_auth_rules() {
    for backend in BACKENDS {
        let f = fixture(backend).await;
        for version in crate::room_versions::STABLE {
            let room = public_room(&f, version).await;
            if *version == "12" {
                assert!(
                    !room.contains(':'),
                    "v12 room IDs have no server part: {room}"
                );
            }
            // Bob may join a public room and talk; carol, not joined, may not talk.
            f.rs.send(member(&room, "bob", "join")).await.unwrap();
            let msg =
                f.rs.send(ev(
                    &room,
                    "bob",
                    "m.room.message",
                    None,
                    json!({"msgtype": "m.text", "body": "hi"}),
                ))
                .await
                .unwrap();
            let refused =
                f.rs.send(ev(
                    &room,
                    "carol",
                    "m.room.message",
                    None,
                    json!({"body": "x"}),
                ))
                .await
                .unwrap_err();
            assert!(
                matches!(refused, RoomserverError::NotAllowed(_)),
                "{backend} v{version}: {refused:?}"
            );
            // Bob has no power to change power levels; a second create is refused.
            let refused =
                f.rs.send(ev(
                    &room,
                    "bob",
                    "m.room.power_levels",
                    Some(""),
                    json!({"users": {"@bob:test.local": 100}}),
                ))
                .await
                .unwrap_err();
            assert!(
                matches!(refused, RoomserverError::NotAllowed(_)),
                "{refused:?}"
            );
            let refused =
                f.rs.send(ev(&room, "alice", "m.room.create", Some(""), json!({})))
                    .await
                    .unwrap_err();
            assert!(
                matches!(refused, RoomserverError::NotAllowed(_)),
                "{refused:?}"
            );

            // The current state: create, two members, power levels, join rules.
            let state =
                f.rs.send(QueryCurrentState {
                    room_id: room.clone(),
                    types: vec![],
                })
                .await
                .unwrap()
                .unwrap();
            let mut kinds: Vec<String> = state
                .iter()
                .map(|e| {
                    format!(
                        "{}|{}",
                        e.json["type"].as_str().unwrap(),
                        e.json["state_key"].as_str().unwrap()
                    )
                })
                .collect();
            kinds.sort();
            assert_eq!(
                kinds,
                vec![
                    "m.room.create|".to_string(),
                    "m.room.join_rules|".into(),
                    "m.room.member|@alice:test.local".into(),
                    "m.room.member|@bob:test.local".into(),
                    "m.room.power_levels|".into(),
                ],
                "{backend} v{version}"
            );
            let only =
                f.rs.send(QueryCurrentState {
                    room_id: room.clone(),
                    types: vec![("m.room.member".into(), "@bob:test.local".into())],
                })
                .await
                .unwrap()
                .unwrap();
            assert_eq!(only.len(), 1);
            assert_eq!(only[0].json["content"]["membership"], "join");

            // Every stored event is valid for its version: signed by us, ID = reference hash.
            let stored =
                f.rs.send(QueryEvent {
                    event_id: msg.event_id.clone(),
                })
                .await
                .unwrap()
                .unwrap();
            assert_eq!(stored.room_id, room);
            let obj: ruma::CanonicalJsonObject =
                serde_json::from_value(stored.json.clone()).unwrap();
            let keys = f.key.public_key_map("test.local".try_into().unwrap());
            assert!(matches!(
                crate::pdu::verify(&obj, version, &keys),
                Ok(crate::pdu::Verified::All)
            ));
            assert_eq!(
                crate::pdu::event_id_of(&obj, version).unwrap().as_str(),
                msg.event_id
            );
            assert_eq!(stored.json["prev_events"].as_array().unwrap().len(), 1);
        }
        // Errors: unknown room, unsupported version, content that is not an object.
        let no_room =
            f.rs.send(ev(
                "!nope:test.local",
                "alice",
                "m.room.message",
                None,
                json!({}),
            ))
            .await;
        assert!(matches!(no_room, Err(RoomserverError::NoRoom)));
        let unsupported =
            f.rs.send(PerformRoomEvent {
                room_id: None,
                room_version: Some("13".into()),
                sender: "@alice:test.local".into(),
                event_type: "m.room.create".into(),
                state_key: Some(String::new()),
                content: json!({}),
                txn: None,
                redacts: None,
            })
            .await;
        assert!(matches!(
            unsupported,
            Err(RoomserverError::UnsupportedRoomVersion(_))
        ));
        let room = public_room(&f, "12").await;
        let not_object =
            f.rs.send(ev(&room, "alice", "m.room.message", None, json!([1])))
                .await;
        assert!(
            matches!(not_object, Err(RoomserverError::BadRequest(_))),
            "{not_object:?}"
        );
        assert!(f
            .rs
            .send(QueryEvent {
                event_id: "$nope".into()
            })
            .await
            .unwrap()
            .is_none());
        assert!(f
            .rs
            .send(QueryCurrentState {
                room_id: "!nope:x".into(),
                types: vec![]
            })
            .await
            .unwrap()
            .is_none());
    }
}

/// Collects the roomserver's outputs in order.
struct Collector(Rc<RefCell<Vec<(i64, String)>>>);

impl Consumer for Collector {
    type Output = RoomserverOutput;
    const STREAM: &'static str = STREAM;
    const NAME: &'static str = "test.collector";

    async fn apply(
        &mut self,
        _: &Txn,
        position: i64,
        output: RoomserverOutput,
    ) -> Result<(), ConsumerError> {
        let RoomserverOutput::NewRoomEvent { event_id, .. } = output else {
            return Ok(());
        };
        self.0.borrow_mut().push((position, event_id));
        Ok(())
    }
}

#[actix_web::test]
async fn concurrent_senders_make_a_linear_dag_and_every_event_is_output_in_order() {
    for backend in BACKENDS {
        let f = fixture(backend).await;
        let room = public_room(&f, "12").await;
        let senders: Vec<String> = (0..10).map(|i| format!("user{i}")).collect();
        for s in &senders {
            f.rs.send(member(&room, s, "join")).await.unwrap();
        }
        // 50 messages from 10 users at once.
        let sends = (0..50).map(|i| {
            let rs = f.rs.clone();
            let m = ev(
                &room,
                &senders[i % 10],
                "m.room.message",
                None,
                json!({"body": format!("m{i}")}),
            );
            async move { rs.send(m).await }
        });
        let results = futures_util::future::join_all(sends).await;
        assert!(results.iter().all(|r| r.is_ok()), "{backend}: {results:?}");
        // Walk the DAG back from the newest event: one parent each, depth falling by one.
        let rows =
            f.db.query(
                "SELECT event_id, depth, json FROM roomserver_events ORDER BY depth",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), 4 + 10 + 50);
        for (i, row) in rows.iter().enumerate() {
            assert_eq!(
                row.i64(1).unwrap(),
                i as i64 + 1,
                "{backend}: depths are 1..n"
            );
            let json: Value = serde_json::from_str(&row.string(2).unwrap()).unwrap();
            let prev: Vec<&str> = json["prev_events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            if i == 0 {
                assert!(prev.is_empty());
            } else {
                assert_eq!(
                    prev,
                    vec![rows[i - 1].string(0).unwrap().as_str()],
                    "{backend}: linear DAG"
                );
            }
        }
        // The state after every event is recorded, and the newest one's is the room's state.
        let missing =
            f.db.query(
                "SELECT COUNT(*) FROM roomserver_events WHERE state_after_snapshot_nid IS NULL",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(missing[0].i64(0).unwrap(), 0, "{backend}");
        let heads =
            f.db.query(
                "SELECT r.state_snapshot_nid, e.state_after_snapshot_nid FROM roomserver_rooms r
                 JOIN roomserver_events e ON e.room_nid = r.room_nid ORDER BY e.depth DESC LIMIT 1",
                &[],
            )
            .await
            .unwrap();
        assert_eq!(heads[0].i64(0).unwrap(), heads[0].i64(1).unwrap());
        // The output stream carries every event once, in the order they were stored.
        let seen = Rc::new(RefCell::new(Vec::new()));
        let handle = run_consumer(f.db.clone(), f.bus.clone(), Collector(seen.clone()));
        for _ in 0..3000 {
            if seen.borrow().len() == rows.len() {
                break;
            }
            actix_web::rt::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        handle.stop();
        let ids: Vec<String> = seen.borrow().iter().map(|(_, id)| id.clone()).collect();
        let stored: Vec<String> = rows.iter().map(|r| r.string(0).unwrap()).collect();
        assert_eq!(ids, stored, "{backend}");
    }
}

/// Builds and signs an event as if another server had (it is ours, so it verifies). In room
/// versions 1 and 2 the references carry the reference hashes of the stored events.
#[allow(clippy::too_many_arguments)]
async fn foreign(
    f: &Fixture,
    room: &str,
    version: &str,
    sender: &str,
    kind: &str,
    state_key: Option<&str>,
    content: Value,
    prev: &[&str],
    auth: &[String],
    depth: u32,
) -> Value {
    foreign_pdu(
        f, room, version, sender, kind, state_key, content, prev, auth, depth, None,
    )
    .await
}

/// `foreign` with a `redacts` (placed where the room version wants it).
#[allow(clippy::too_many_arguments)]
async fn foreign_pdu(
    f: &Fixture,
    room: &str,
    version: &str,
    sender: &str,
    kind: &str,
    state_key: Option<&str>,
    content: Value,
    prev: &[&str],
    auth: &[String],
    depth: u32,
    redacts: Option<&str>,
) -> Value {
    let (version_id, _) = crate::pdu::rules(version).unwrap();
    let mut reference_hashes = std::collections::HashMap::new();
    for id in prev.iter().copied().chain(auth.iter().map(String::as_str)) {
        let stored =
            f.rs.send(QueryEvent {
                event_id: id.to_owned(),
            })
            .await
            .unwrap();
        if let Some(stored) = stored {
            let json: ruma::CanonicalJsonObject = serde_json::from_value(stored.json).unwrap();
            let hash = crate::pdu::reference_hash_of(&json, version).unwrap();
            reference_hashes.insert(id.try_into().unwrap(), hash);
        } else {
            // An unknown event: any well-formed hash.
            reference_hashes.insert(id.try_into().unwrap(), "A".repeat(43));
        }
    }
    let pdu = crate::pdu::PduBuilder {
        room_version: version_id,
        room_id: Some(room.try_into().unwrap()),
        sender: format!("@{sender}:test.local").try_into().unwrap(),
        event_type: kind.into(),
        state_key: state_key.map(str::to_owned),
        content,
        redacts: redacts.map(|r| r.try_into().unwrap()),
        prev_events: prev.iter().map(|p| (*p).try_into().unwrap()).collect(),
        auth_events: auth
            .iter()
            .map(|p| p.as_str().try_into().unwrap())
            .collect(),
        reference_hashes,
        depth: depth.into(),
        origin_server_ts: ruma::MilliSecondsSinceUnixEpoch::now(),
    }
    .build(&f.key, "test.local".try_into().unwrap())
    .unwrap();
    serde_json::to_value(&pdu.json).unwrap()
}

async fn state_ids(f: &Fixture, room: &str) -> std::collections::HashMap<String, String> {
    f.rs.send(QueryCurrentState {
        room_id: room.into(),
        types: vec![],
    })
    .await
    .unwrap()
    .unwrap()
    .into_iter()
    .map(|e| {
        let key = format!(
            "{}|{}",
            e.json["type"].as_str().unwrap(),
            e.json["state_key"].as_str().unwrap()
        );
        (key, e.event_id)
    })
    .collect()
}

#[actix_web::test]
async fn forks_are_resolved_with_state_resolution_v2() {
    for backend in BACKENDS {
        let f = fixture(backend).await;
        // Room version 1 resolves this fork by state resolution v1, which keeps bob.
        for version in ["1", "2", "10", "12"] {
            let room = public_room(&f, version).await;
            let s = state_ids(&f, &room).await;
            let (create, pl, jr) = (
                &s["m.room.create|"],
                &s["m.room.power_levels|"],
                &s["m.room.join_rules|"],
            );
            let alice = &s["m.room.member|@alice:test.local"];
            let create_id = create.clone();
            let with_create = |ids: Vec<&str>| -> Vec<String> {
                let mut v: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
                if version != "12" {
                    v.push(create_id.clone());
                }
                v
            };
            // Two children of the join rules: bob joins (public) / alice closes the room.
            let join = foreign(
                &f,
                &room,
                version,
                "bob",
                "m.room.member",
                Some("@bob:test.local"),
                json!({"membership": "join"}),
                &[jr],
                &with_create(vec![pl, jr]),
                5,
            )
            .await;
            let close = foreign(
                &f,
                &room,
                version,
                "alice",
                "m.room.join_rules",
                Some(""),
                json!({"join_rule": "invite"}),
                &[jr],
                &with_create(vec![pl, alice]),
                5,
            )
            .await;
            let input = |event: &Value| InputRoomEvent {
                room_id: room.clone(),
                event: event.clone(),
                send_on_behalf_of: None,
            };
            let a = f.rs.send(input(&join)).await.unwrap();
            assert!(
                matches!(a, InputOutcome::Accepted { .. }),
                "{backend} v{version}: {a:?}"
            );
            assert!(state_ids(&f, &room)
                .await
                .contains_key("m.room.member|@bob:test.local"));
            let b = f.rs.send(input(&close)).await.unwrap();
            assert!(matches!(b, InputOutcome::Accepted { .. }), "{b:?}");
            // Resolution: the join rules change is a power event and goes first; bob's join
            // then fails against `invite` and drops out of the state.
            let s = state_ids(&f, &room).await;
            let rules =
                f.rs.send(QueryCurrentState {
                    room_id: room.clone(),
                    types: vec![("m.room.join_rules".into(), String::new())],
                })
                .await
                .unwrap()
                .unwrap();
            assert_eq!(
                rules[0].json["content"]["join_rule"], "invite",
                "{backend} v{version}"
            );
            // Version 1 resolves the join rules the same way, but bob's join, present in
            // one state only, is no conflict there: he stays (v1's known state resets).
            assert_eq!(
                s.contains_key("m.room.member|@bob:test.local"),
                version == "1",
                "{backend} v{version}: {s:?}"
            );
            // A local event merges the fork.
            let merged =
                f.rs.send(ev(
                    &room,
                    "alice",
                    "m.room.message",
                    None,
                    json!({"body": "merge"}),
                ))
                .await
                .unwrap();
            let stored =
                f.rs.send(QueryEvent {
                    event_id: merged.event_id.clone(),
                })
                .await
                .unwrap()
                .unwrap();
            assert_eq!(stored.json["prev_events"].as_array().unwrap().len(), 2);
            if ["1", "2"].contains(&version) {
                // `[id, {"sha256": reference hash}]` pairs, and the event carries its ID.
                assert_eq!(stored.json["event_id"], merged.event_id.as_str());
                let ids: Vec<&str> = [&join, &close]
                    .iter()
                    .map(|e| e["event_id"].as_str().unwrap())
                    .collect();
                for pair in stored.json["prev_events"].as_array().unwrap() {
                    let id = pair[0].as_str().unwrap();
                    assert!(ids.contains(&id), "{pair}");
                    let event = if id == ids[0] { &join } else { &close };
                    let json: ruma::CanonicalJsonObject =
                        serde_json::from_value(event.clone()).unwrap();
                    let hash = crate::pdu::reference_hash_of(&json, version).unwrap();
                    assert_eq!(pair[1], json!({ "sha256": hash }), "{backend} v{version}");
                }
            }

            // Input is idempotent; refused events are stored rejected and stay out of state.
            assert!(matches!(
                f.rs.send(input(&join)).await.unwrap(),
                InputOutcome::Accepted { .. }
            ));
            let intruder = foreign(
                &f,
                &room,
                version,
                "carol",
                "m.room.member",
                Some("@carol:test.local"),
                json!({"membership": "join"}),
                &[&merged.event_id],
                &with_create(vec![pl, &s["m.room.join_rules|"]]),
                7,
            )
            .await;
            let outcome = f.rs.send(input(&intruder)).await.unwrap();
            assert!(
                matches!(outcome, InputOutcome::Rejected { .. }),
                "{outcome:?}"
            );
            assert!(!state_ids(&f, &room)
                .await
                .contains_key("m.room.member|@carol:test.local"));
            // A rejected event is no extremity: the next local event builds on the merge.
            let next =
                f.rs.send(ev(
                    &room,
                    "alice",
                    "m.room.message",
                    None,
                    json!({"body": "next"}),
                ))
                .await
                .unwrap();
            let stored =
                f.rs.send(QueryEvent {
                    event_id: next.event_id,
                })
                .await
                .unwrap()
                .unwrap();
            let prev: Vec<&str> = stored.json["prev_events"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().or_else(|| p[0].as_str()).unwrap())
                .collect();
            assert_eq!(prev, vec![merged.event_id.as_str()]);

            // Events that cannot be placed: unknown prev events, bad signatures.
            let orphan = foreign(
                &f,
                &room,
                version,
                "alice",
                "m.room.message",
                None,
                json!({"body": "?"}),
                &["$unknownunknownunknownunknownunknownunknown00"],
                &with_create(vec![pl, alice]),
                9,
            )
            .await;
            assert!(matches!(
                f.rs.send(input(&orphan)).await,
                Err(RoomserverError::BadRequest(_))
            ));
            let mut forged = foreign(
                &f,
                &room,
                version,
                "alice",
                "m.room.message",
                None,
                json!({"body": "x"}),
                &[jr],
                &with_create(vec![pl, alice]),
                9,
            )
            .await;
            forged["depth"] = json!(99);
            assert!(matches!(
                f.rs.send(input(&forged)).await,
                Err(RoomserverError::BadRequest(_))
            ));
        }
    }
}

#[actix_web::test]
async fn room_version_1_forks_are_resolved_with_state_resolution_v1() {
    for backend in BACKENDS {
        let f = fixture(backend).await;
        let room = public_room(&f, "1").await;
        let carol = f.rs.send(member(&room, "carol", "join")).await.unwrap();
        let s = state_ids(&f, &room).await;
        let (create, pl, jr) = (
            s["m.room.create|"].clone(),
            s["m.room.power_levels|"].clone(),
            s["m.room.join_rules|"].clone(),
        );
        let alice = s["m.room.member|@alice:test.local"].clone();
        let input = |event: &Value| InputRoomEvent {
            room_id: room.clone(),
            event: event.clone(),
            send_on_behalf_of: None,
        };
        let id = |e: &Value| e["event_id"].as_str().unwrap().to_owned();
        // Fork A: alice gives bob 50, then bans carol. Fork B: alice gives carol 50, then
        // carol renames herself. Both branches grow from carol's join (depth 5).
        let pl_a = foreign(
            &f,
            &room,
            "1",
            "alice",
            "m.room.power_levels",
            Some(""),
            json!({"users": {"@alice:test.local": 100, "@bob:test.local": 50}}),
            &[&carol.event_id],
            &[create.clone(), pl.clone(), alice.clone()],
            6,
        )
        .await;
        let pl_b = foreign(
            &f,
            &room,
            "1",
            "alice",
            "m.room.power_levels",
            Some(""),
            json!({"users": {"@alice:test.local": 100, "@carol:test.local": 50}}),
            &[&carol.event_id],
            &[create.clone(), pl.clone(), alice.clone()],
            6,
        )
        .await;
        let ban = foreign(
            &f,
            &room,
            "1",
            "alice",
            "m.room.member",
            Some("@carol:test.local"),
            json!({"membership": "ban"}),
            &[&id(&pl_a)],
            &[
                create.clone(),
                id(&pl_a),
                alice.clone(),
                carol.event_id.clone(),
            ],
            7,
        )
        .await;
        let rename = foreign(
            &f,
            &room,
            "1",
            "carol",
            "m.room.member",
            Some("@carol:test.local"),
            json!({"membership": "join", "displayname": "Carol"}),
            &[&id(&pl_b)],
            &[
                create.clone(),
                id(&pl_b),
                jr.clone(),
                carol.event_id.clone(),
            ],
            7,
        )
        .await;
        for event in [&pl_a, &ban, &pl_b] {
            let outcome = f.rs.send(input(event)).await.unwrap();
            assert!(
                matches!(&outcome, InputOutcome::Accepted { event_id } if *event_id == id(event)),
                "{backend}: {outcome:?}"
            );
        }
        // Carol's rename passes against its own branch but not against the room's current
        // state, where the ban is: soft-failed, so it is no tip and changes no state.
        let outcome = f.rs.send(input(&rename)).await.unwrap();
        assert!(
            matches!(&outcome, InputOutcome::SoftFailed { event_id, .. } if *event_id == id(&rename)),
            "{backend}: {outcome:?}"
        );
        let s = state_ids(&f, &room).await;
        // Power levels of one depth: both are allowed, so the last of the order (ascending
        // depth, then descending SHA-1 of the ID) wins: the lower SHA-1.
        let sha1 = |e: &Value| -> Vec<u8> {
            use sha1::Digest;
            sha1::Sha1::digest(id(e).as_bytes()).to_vec()
        };
        let expected = if sha1(&pl_a) < sha1(&pl_b) {
            &pl_a
        } else {
            &pl_b
        };
        assert_eq!(s["m.room.power_levels|"], id(expected), "{backend}");
        // Carol's membership: the ban.
        assert_eq!(s["m.room.member|@carol:test.local"], id(&ban), "{backend}");
        assert_eq!(s["m.room.join_rules|"], jr);

        // A local event merges the fork, referring to both tips with their hashes.
        let merged =
            f.rs.send(ev(
                &room,
                "alice",
                "m.room.message",
                None,
                json!({"body": "merge"}),
            ))
            .await
            .unwrap();
        assert!(merged.event_id.ends_with(":test.local"), "{merged:?}");
        let stored =
            f.rs.send(QueryEvent {
                event_id: merged.event_id.clone(),
            })
            .await
            .unwrap()
            .unwrap();
        let prev: Vec<&str> = stored.json["prev_events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p[0].as_str().unwrap())
            .collect();
        let mut tips = vec![id(&ban), id(&pl_b)];
        tips.sort();
        let mut prev: Vec<String> = prev.into_iter().map(str::to_owned).collect();
        prev.sort();
        assert_eq!(prev, tips, "{backend}");
    }
}

#[actix_web::test]
async fn identical_rooms_created_at_once_get_distinct_ids() {
    for backend in BACKENDS {
        let f = fixture(backend).await;
        // v12 room IDs hash the create event: same sender, content and millisecond collide
        // unless the server moves the timestamp on.
        let creates = (0..8).map(|_| {
            let rs = f.rs.clone();
            async move {
                rs.send(PerformRoomEvent {
                    room_id: None,
                    room_version: Some("12".into()),
                    sender: "@alice:test.local".into(),
                    event_type: "m.room.create".into(),
                    state_key: Some(String::new()),
                    content: json!({}),
                    txn: None,
                    redacts: None,
                })
                .await
            }
        });
        let rooms: Vec<String> = futures_util::future::join_all(creates)
            .await
            .into_iter()
            .map(|r| r.unwrap().room_id)
            .collect();
        let distinct: std::collections::HashSet<&String> = rooms.iter().collect();
        assert_eq!(distinct.len(), 8, "{backend}: {rooms:?}");
    }
}

/// One step of an auth-rule table: who sends what, and whether each room version allows it.
struct Case {
    sender: &'static str,
    kind: &'static str,
    state_key: Option<&'static str>,
    content: Value,
    allowed: fn(u32) -> bool,
}

fn yes(_: u32) -> bool {
    true
}
fn no(_: u32) -> bool {
    false
}

fn case(
    sender: &'static str,
    kind: &'static str,
    state_key: Option<&'static str>,
    content: Value,
    allowed: fn(u32) -> bool,
) -> Case {
    Case {
        sender,
        kind,
        state_key,
        content,
        allowed,
    }
}

#[actix_web::test]
async fn auth_rules_per_room_version() {
    let m = |m: &str| json!({ "membership": m });
    let table = vec![
        case(
            "carol",
            "m.room.message",
            None,
            json!({"body": "not joined"}),
            no,
        ),
        case(
            "bob",
            "m.room.member",
            Some("@bob:test.local"),
            m("join"),
            yes,
        ),
        case("bob", "m.room.message", None, json!({"body": "hello"}), yes),
        case("bob", "m.room.name", Some(""), json!({"name": "mine"}), no),
        case(
            "bob",
            "m.room.power_levels",
            Some(""),
            json!({"users": {"@bob:test.local": 100}}),
            no,
        ),
        case(
            "alice",
            "m.room.name",
            Some(""),
            json!({"name": "Hall"}),
            yes,
        ),
        case(
            "bob",
            "m.room.member",
            Some("@alice:test.local"),
            m("leave"),
            no,
        ),
        case(
            "bob",
            "m.room.member",
            Some("@dave:test.local"),
            m("invite"),
            no,
        ),
        case(
            "alice",
            "m.room.member",
            Some("@carol:test.local"),
            m("invite"),
            yes,
        ),
        case(
            "carol",
            "m.room.member",
            Some("@carol:test.local"),
            m("join"),
            yes,
        ),
        case(
            "alice",
            "m.room.member",
            Some("@carol:test.local"),
            m("ban"),
            yes,
        ),
        case(
            "carol",
            "m.room.message",
            None,
            json!({"body": "banned"}),
            no,
        ),
        case(
            "carol",
            "m.room.member",
            Some("@carol:test.local"),
            m("join"),
            no,
        ),
        case(
            "alice",
            "m.room.join_rules",
            Some(""),
            json!({"join_rule": "invite"}),
            yes,
        ),
        case(
            "dave",
            "m.room.member",
            Some("@dave:test.local"),
            m("join"),
            no,
        ),
        case(
            "alice",
            "m.room.join_rules",
            Some(""),
            json!({"join_rule": "knock"}),
            yes,
        ),
        // Knocking exists from room version 7.
        case(
            "dave",
            "m.room.member",
            Some("@dave:test.local"),
            m("knock"),
            |v| v >= 7,
        ),
        case(
            "erin",
            "m.room.member",
            Some("@erin:test.local"),
            m("join"),
            no,
        ),
        case("alice", "m.room.create", Some(""), json!({}), no),
        case(
            "bob",
            "m.room.member",
            Some("@bob:test.local"),
            m("leave"),
            yes,
        ),
        case("bob", "m.room.message", None, json!({"body": "gone"}), no),
        // From v12 creators have unlimited power and may not be listed in power levels.
        case(
            "alice",
            "m.room.power_levels",
            Some(""),
            json!({"users": {"@alice:test.local": 100}, "invite": 50}),
            |v| v < 12,
        ),
    ];
    for backend in BACKENDS {
        let f = fixture(backend).await;
        for version in crate::room_versions::STABLE {
            let v: u32 = version.parse().unwrap();
            let room = create(&f, version).await;
            f.rs.send(member(&room, "alice", "join")).await.unwrap();
            let users = if v >= 12 {
                json!({})
            } else {
                json!({ "@alice:test.local": 100 })
            };
            f.rs.send(ev(&room, "alice", "m.room.power_levels", Some(""), json!({
                "users": users, "state_default": 50, "invite": 50, "kick": 50, "ban": 50, "events_default": 0,
            })))
            .await
            .unwrap();
            f.rs.send(ev(
                &room,
                "alice",
                "m.room.join_rules",
                Some(""),
                json!({"join_rule": "public"}),
            ))
            .await
            .unwrap();
            for (i, c) in table.iter().enumerate() {
                let got =
                    f.rs.send(ev(&room, c.sender, c.kind, c.state_key, c.content.clone()))
                        .await;
                let want = (c.allowed)(v);
                match &got {
                    Ok(_) => assert!(
                        want,
                        "{backend} v{version} case {i} ({} {}) was allowed",
                        c.sender, c.kind
                    ),
                    Err(RoomserverError::NotAllowed(_)) => {
                        assert!(
                            !want,
                            "{backend} v{version} case {i} ({} {}) was refused: {got:?}",
                            c.sender, c.kind
                        )
                    }
                    Err(e) => panic!("{backend} v{version} case {i}: {e:?}"),
                }
            }
        }
    }
}

#[actix_web::test]
async fn fifty_rooms_progress_in_parallel() {
    for backend in BACKENDS {
        let f = fixture(backend).await;
        let mut rooms = Vec::new();
        for _ in 0..50 {
            rooms.push(public_room(&f, "12").await);
        }
        // Five messages into each of 50 rooms, all at once.
        let sends = rooms.iter().flat_map(|room| {
            (0..5).map(move |i| ev(room, "alice", "m.room.message", None, json!({ "body": i })))
        });
        let results = futures_util::future::join_all(sends.map(|m| {
            let rs = f.rs.clone();
            async move { rs.send(m).await }
        }))
        .await;
        assert!(results.iter().all(Result::is_ok), "{backend}");
        // Each room's DAG is linear: depth 4 (setup) + 5.
        for room in &rooms {
            let rows = f
                .db
                .query(
                    "SELECT COUNT(*), MAX(e.depth) FROM roomserver_events e JOIN roomserver_rooms r ON r.room_nid = e.room_nid WHERE r.room_id = $1",
                    &[&room.as_str()],
                )
                .await
                .unwrap();
            assert_eq!(
                (rows[0].i64(0).unwrap(), rows[0].i64(1).unwrap()),
                (9, 9),
                "{backend} {room}"
            );
        }
    }
}

/// (event ID, adds_state, removes_state) of one output.
type Change = (String, Vec<String>, Vec<String>);

/// Collects the state changes the stream reports, by event ID.
struct StateChanges(Rc<RefCell<Vec<Change>>>);

impl Consumer for StateChanges {
    type Output = RoomserverOutput;
    const STREAM: &'static str = STREAM;
    const NAME: &'static str = "test.state_changes";

    async fn apply(
        &mut self,
        _: &Txn,
        _: i64,
        output: RoomserverOutput,
    ) -> Result<(), ConsumerError> {
        let RoomserverOutput::NewRoomEvent {
            event_id,
            adds_state,
            removes_state,
            ..
        } = output
        else {
            return Ok(());
        };
        self.0
            .borrow_mut()
            .push((event_id, adds_state, removes_state));
        Ok(())
    }
}

#[actix_web::test]
async fn the_stream_reports_state_changes() {
    for backend in BACKENDS {
        let f = fixture(backend).await;
        let room = public_room(&f, "12").await;
        let first =
            f.rs.send(ev(
                &room,
                "alice",
                "m.room.name",
                Some(""),
                json!({"name": "a"}),
            ))
            .await
            .unwrap();
        let second =
            f.rs.send(ev(
                &room,
                "alice",
                "m.room.name",
                Some(""),
                json!({"name": "b"}),
            ))
            .await
            .unwrap();
        let msg =
            f.rs.send(ev(
                &room,
                "alice",
                "m.room.message",
                None,
                json!({"body": "x"}),
            ))
            .await
            .unwrap();
        let seen = Rc::new(RefCell::new(Vec::new()));
        let handle = run_consumer(f.db.clone(), f.bus.clone(), StateChanges(seen.clone()));
        for _ in 0..3000 {
            if seen.borrow().len() >= 7 {
                break;
            }
            actix_web::rt::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        handle.stop();
        let seen = seen.borrow();
        let of = |id: &str| seen.iter().find(|(e, _, _)| e == id).cloned().unwrap();
        assert_eq!(
            of(&first.event_id),
            (first.event_id.clone(), vec![first.event_id.clone()], vec![]),
            "{backend}"
        );
        assert_eq!(
            of(&second.event_id),
            (
                second.event_id.clone(),
                vec![second.event_id.clone()],
                vec![first.event_id.clone()]
            )
        );
        assert_eq!(of(&msg.event_id), (msg.event_id.clone(), vec![], vec![]));
    }
}

#[actix_web::test]
async fn unknown_rooms_leave_no_room_actor_behind() {
    for backend in crate::storage::testing::BACKENDS {
        let f = fixture(backend).await;
        let super::RoomserverHandle::Local(addr) = &f.rs else {
            panic!("a local roomserver");
        };
        let room = public_room(&f, "12").await;
        f.rs.send(ev(
            &room,
            "alice",
            "m.room.message",
            None,
            json!({"body": "hi"}),
        ))
        .await
        .expect("a message in a real room");
        for i in 0..20 {
            let made_up = format!("!nowhere{i}:test.local");
            let sent =
                f.rs.send(ev(
                    &made_up,
                    "alice",
                    "m.room.message",
                    None,
                    json!({"body": "x"}),
                ))
                .await;
            assert!(matches!(sent, Err(RoomserverError::NoRoom)), "{sent:?}");
        }
        // The real room's actor stays; none for the rooms that do not exist.
        let running = addr.send(super::actor::CountRoomActors).await.unwrap();
        assert_eq!(running, 1, "{backend:?}");
    }
}

/// The auth events of a foreign event: `ids`, plus the create event before room version 12.
fn auth_ids(version: &str, create: &str, ids: &[&String]) -> Vec<String> {
    let mut v: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    if version != "12" {
        v.push(create.to_owned());
    }
    v
}

async fn joined_rooms(f: &Fixture, user: &str) -> Vec<String> {
    f.rs.send(QueryJoinedRooms {
        user_id: format!("@{user}:test.local"),
    })
    .await
    .unwrap()
}

#[actix_web::test]
async fn memberships_follow_the_resolved_state() {
    for backend in BACKENDS {
        let f = fixture(backend).await;
        for version in ["10", "12"] {
            let room = public_room(&f, version).await;
            let s = state_ids(&f, &room).await;
            let (create, pl, jr) = (
                &s["m.room.create|"],
                &s["m.room.power_levels|"],
                &s["m.room.join_rules|"],
            );
            let alice = &s["m.room.member|@alice:test.local"];
            let input = |event: Value| InputRoomEvent {
                room_id: room.clone(),
                event,
                send_on_behalf_of: None,
            };
            // Bob joins on one branch...
            let join = foreign(
                &f,
                &room,
                version,
                "bob",
                "m.room.member",
                Some("@bob:test.local"),
                json!({"membership": "join"}),
                &[jr],
                &auth_ids(version, create, &[pl, jr]),
                5,
            )
            .await;
            let a = f.rs.send(input(join)).await.unwrap();
            assert!(matches!(a, InputOutcome::Accepted { .. }), "{a:?}");
            assert_eq!(joined_rooms(&f, "bob").await, vec![room.clone()]);
            // ...and alice closes the room on another: the resolution drops bob's join, and
            // with it his membership.
            let close = foreign(
                &f,
                &room,
                version,
                "alice",
                "m.room.join_rules",
                Some(""),
                json!({"join_rule": "invite"}),
                &[jr],
                &auth_ids(version, create, &[pl, alice]),
                5,
            )
            .await;
            let b = f.rs.send(input(close)).await.unwrap();
            assert!(matches!(b, InputOutcome::Accepted { .. }), "{b:?}");
            assert!(!state_ids(&f, &room)
                .await
                .contains_key("m.room.member|@bob:test.local"));
            assert!(
                joined_rooms(&f, "bob").await.is_empty(),
                "{backend} v{version}: the index still lists the room"
            );
            assert_eq!(
                f.rs.send(QueryRoomsWithMembership {
                    user_id: "@bob:test.local".into(),
                    membership: "join".into(),
                })
                .await
                .unwrap(),
                Vec::<String>::new()
            );
            assert!(joined_rooms(&f, "alice").await.contains(&room));
        }
    }
}

/// Runs the syncapi's real consumer of the roomserver stream until it has stored `last`.
async fn syncapi_catches_up(f: &Fixture, last: &str) {
    use crate::actors::syncapi::consumers::roomserver::RoomserverConsumer;
    use crate::actors::syncapi::storage::room_events;
    let handle = run_consumer(f.db.clone(), f.bus.clone(), RoomserverConsumer::new(None));
    for _ in 0..3000 {
        if room_events::select_by_id(&f.db, last)
            .await
            .unwrap()
            .is_some()
        {
            break;
        }
        actix_web::rt::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    handle.stop();
    assert!(
        room_events::select_by_id(&f.db, last)
            .await
            .unwrap()
            .is_some(),
        "the syncapi never stored {last}"
    );
}

#[actix_web::test]
async fn events_the_current_state_refuses_are_soft_failed() {
    use crate::actors::syncapi::storage::{current_state, room_events};
    for backend in BACKENDS {
        let f = fixture(backend).await;
        for version in ["10", "12"] {
            let room = public_room(&f, version).await;
            let bob_join = f.rs.send(member(&room, "bob", "join")).await.unwrap();
            let s = state_ids(&f, &room).await;
            let (create, pl, jr) = (
                &s["m.room.create|"],
                &s["m.room.power_levels|"],
                &s["m.room.join_rules|"],
            );
            let ban =
                f.rs.send(ev(
                    &room,
                    "alice",
                    "m.room.member",
                    Some("@bob:test.local"),
                    json!({"membership": "ban"}),
                ))
                .await
                .unwrap();
            // Bob, banned here, changes his display name on a branch from before the ban:
            // allowed by its own state, refused by the current one.
            let rename = foreign(
                &f,
                &room,
                version,
                "bob",
                "m.room.member",
                Some("@bob:test.local"),
                json!({"membership": "join", "displayname": "Bobby"}),
                &[&bob_join.event_id],
                &auth_ids(version, create, &[pl, jr, &bob_join.event_id]),
                6,
            )
            .await;
            let message = foreign(
                &f,
                &room,
                version,
                "bob",
                "m.room.message",
                None,
                json!({"body": "still here"}),
                &[&bob_join.event_id],
                &auth_ids(version, create, &[pl, &bob_join.event_id]),
                6,
            )
            .await;
            let mut soft_failed = Vec::new();
            for event in [rename, message] {
                let outcome =
                    f.rs.send(InputRoomEvent {
                        room_id: room.clone(),
                        event: event.clone(),
                        send_on_behalf_of: None,
                    })
                    .await
                    .unwrap();
                let InputOutcome::SoftFailed { event_id, .. } = &outcome else {
                    panic!("{backend} v{version}: {outcome:?}");
                };
                // Again: the same answer.
                let again =
                    f.rs.send(InputRoomEvent {
                        room_id: room.clone(),
                        event,
                        send_on_behalf_of: None,
                    })
                    .await
                    .unwrap();
                assert_eq!(
                    again,
                    InputOutcome::SoftFailed {
                        event_id: event_id.clone(),
                        reason: "soft-failed when it first arrived".into(),
                    }
                );
                soft_failed.push(event_id.clone());
            }
            // Stored (in the DAG), but not in the current state...
            for id in &soft_failed {
                let stored =
                    f.rs.send(QueryEvent {
                        event_id: id.clone(),
                    })
                    .await
                    .unwrap();
                assert!(stored.is_some_and(|e| !e.rejected), "{backend} v{version}");
            }
            assert_eq!(
                state_ids(&f, &room).await["m.room.member|@bob:test.local"],
                ban.event_id,
                "{backend} v{version}"
            );
            assert!(f
                .rs
                .send(QueryRoomsWithMembership {
                    user_id: "@bob:test.local".into(),
                    membership: "ban".into(),
                })
                .await
                .unwrap()
                .contains(&room));
            // ...nor an extremity: the next local event builds on the ban alone.
            let next =
                f.rs.send(ev(
                    &room,
                    "alice",
                    "m.room.message",
                    None,
                    json!({"body": "next"}),
                ))
                .await
                .unwrap();
            let stored =
                f.rs.send(QueryEvent {
                    event_id: next.event_id.clone(),
                })
                .await
                .unwrap()
                .unwrap();
            assert_eq!(stored.json["prev_events"], json!([ban.event_id]));
            // ...nor output: the syncapi, caught up past them, never saw them.
            syncapi_catches_up(&f, &next.event_id).await;
            for id in &soft_failed {
                assert_eq!(
                    room_events::select_by_id(&f.db, id).await.unwrap(),
                    None,
                    "{backend} v{version}: the syncapi has the soft-failed {id}"
                );
            }
            assert_eq!(
                current_state::select_holder(&f.db, &room, "m.room.member", "@bob:test.local")
                    .await
                    .unwrap(),
                Some(ban.event_id.clone())
            );
        }
    }
}

#[actix_web::test]
async fn a_soft_failed_event_a_resolution_brings_into_the_state_is_output_then() {
    use crate::actors::syncapi::storage::{current_state, room_events};
    for backend in BACKENDS {
        let f = fixture(backend).await;
        for version in ["10", "12"] {
            let room = public_room(&f, version).await;
            let bob_join = f.rs.send(member(&room, "bob", "join")).await.unwrap();
            let carol_join = f.rs.send(member(&room, "carol", "join")).await.unwrap();
            // Alice makes carol a moderator (v12 creators may not be listed).
            let users = |carol: i64| {
                if version == "12" {
                    json!({ "@carol:test.local": carol })
                } else {
                    json!({ "@alice:test.local": 100, "@carol:test.local": carol })
                }
            };
            let p1 =
                f.rs.send(ev(
                    &room,
                    "alice",
                    "m.room.power_levels",
                    Some(""),
                    json!({ "users": users(50) }),
                ))
                .await
                .unwrap()
                .event_id;
            let s = state_ids(&f, &room).await;
            let (create, jr) = (&s["m.room.create|"], &s["m.room.join_rules|"]);
            let alice = &s["m.room.member|@alice:test.local"];
            let input = |event: &Value| InputRoomEvent {
                room_id: room.clone(),
                event: event.clone(),
                send_on_behalf_of: None,
            };
            // Three branches from the moderator's promotion: carol bans bob; bob renames
            // himself; alice demotes carol.
            let ban = foreign(
                &f,
                &room,
                version,
                "carol",
                "m.room.member",
                Some("@bob:test.local"),
                json!({"membership": "ban"}),
                &[&p1],
                &auth_ids(
                    version,
                    create,
                    &[&p1, &carol_join.event_id, &bob_join.event_id],
                ),
                20,
            )
            .await;
            let rename = foreign(
                &f,
                &room,
                version,
                "bob",
                "m.room.member",
                Some("@bob:test.local"),
                json!({"membership": "join", "displayname": "Bobby"}),
                &[&p1],
                &auth_ids(version, create, &[&p1, jr, &bob_join.event_id]),
                20,
            )
            .await;
            let demote = foreign(
                &f,
                &room,
                version,
                "alice",
                "m.room.power_levels",
                Some(""),
                json!({ "users": users(0) }),
                &[&p1],
                &auth_ids(version, create, &[&p1, alice]),
                20,
            )
            .await;
            let rename_id = id_of(&rename, version);
            let a = f.rs.send(input(&ban)).await.unwrap();
            assert!(
                matches!(a, InputOutcome::Accepted { .. }),
                "{backend} v{version}: {a:?}"
            );
            // The rename is allowed by its own state, not by the current one (the ban).
            let b = f.rs.send(input(&rename)).await.unwrap();
            assert!(
                matches!(b, InputOutcome::SoftFailed { .. }),
                "{backend} v{version}: {b:?}"
            );
            // The demotion goes first in the resolution, and carol's ban fails after it: bob
            // is back to his join (the rename, soft-failed, is in no branch's state yet).
            let c = f.rs.send(input(&demote)).await.unwrap();
            assert!(
                matches!(c, InputOutcome::Accepted { .. }),
                "{backend} v{version}: {c:?}"
            );
            assert_eq!(
                state_ids(&f, &room).await["m.room.member|@bob:test.local"],
                bob_join.event_id,
                "{backend} v{version}"
            );
            // Bob speaks on top of his rename: its state (the rename) is resolved with the
            // others, and the rename, later than his join, is now the current state.
            let said = foreign(
                &f,
                &room,
                version,
                "bob",
                "m.room.message",
                None,
                json!({"body": "hello"}),
                &[&rename_id],
                &auth_ids(version, create, &[&p1, &rename_id]),
                21,
            )
            .await;
            let d = f.rs.send(input(&said)).await.unwrap();
            let InputOutcome::Accepted { event_id: said_id } = d else {
                panic!("{backend} v{version}: {d:?}");
            };
            assert_eq!(
                state_ids(&f, &room).await["m.room.member|@bob:test.local"],
                rename_id,
                "{backend} v{version}"
            );
            let row = super::storage::events::select_by_id(&f.db, &rename_id)
                .await
                .unwrap()
                .unwrap();
            assert!(!row.soft_failed, "{backend} v{version}");
            // The rename is output now (before the message), so the syncapi has it and
            // follows it into the current state, as the spec asks ("the client should be told
            // about the soft failed event in the usual way").
            syncapi_catches_up(&f, &said_id).await;
            let copy = room_events::select_by_id(&f.db, &rename_id)
                .await
                .unwrap()
                .expect("the rename was output");
            let message = room_events::select_by_id(&f.db, &said_id)
                .await
                .unwrap()
                .unwrap();
            assert!(copy.position < message.position, "{backend} v{version}");
            assert_eq!(
                current_state::select_holder(&f.db, &room, "m.room.member", "@bob:test.local")
                    .await
                    .unwrap(),
                Some(rename_id.clone()),
                "{backend} v{version}"
            );
        }
    }
}

#[actix_web::test]
async fn redactions_from_elsewhere_apply() {
    use crate::actors::syncapi::storage::room_events;
    for backend in BACKENDS {
        let f = fixture(backend).await;
        for version in ["10", "12"] {
            let room = public_room(&f, version).await;
            let bob_join = f.rs.send(member(&room, "bob", "join")).await.unwrap();
            let said =
                f.rs.send(ev(
                    &room,
                    "bob",
                    "m.room.message",
                    None,
                    json!({"body": "oops"}),
                ))
                .await
                .unwrap();
            let s = state_ids(&f, &room).await;
            let (create, pl) = (&s["m.room.create|"], &s["m.room.power_levels|"]);
            let redaction = foreign_pdu(
                &f,
                &room,
                version,
                "bob",
                "m.room.redaction",
                None,
                json!({}),
                &[&said.event_id],
                &auth_ids(version, create, &[pl, &bob_join.event_id]),
                7,
                Some(&said.event_id),
            )
            .await;
            let outcome =
                f.rs.send(InputRoomEvent {
                    room_id: room.clone(),
                    event: redaction,
                    send_on_behalf_of: None,
                })
                .await
                .unwrap();
            let InputOutcome::Accepted { event_id } = outcome else {
                panic!("{backend} v{version}: {outcome:?}");
            };
            // The roomserver serves the target redacted...
            let target =
                f.rs.send(QueryEvent {
                    event_id: said.event_id.clone(),
                })
                .await
                .unwrap()
                .unwrap();
            assert_eq!(target.json["content"], json!({}), "{backend} v{version}");
            assert_eq!(
                target.redacted_because.as_ref().unwrap()["event_id"],
                json!(event_id)
            );
            // ...and so does the syncapi, as for a local redaction.
            syncapi_catches_up(&f, &event_id).await;
            let copy = room_events::select_by_id(&f.db, &said.event_id)
                .await
                .unwrap()
                .unwrap();
            assert!(copy.redacted_because.is_some(), "{backend} v{version}");
            let json: Value = serde_json::from_str(&copy.json).unwrap();
            assert_eq!(json["content"], json!({}));
        }
    }
}

/// The event ID of a PDU built by `foreign`.
fn id_of(pdu: &Value, version: &str) -> String {
    let json: ruma::CanonicalJsonObject = serde_json::from_value(pdu.clone()).unwrap();
    crate::pdu::event_id_of(&json, version).unwrap().to_string()
}

#[actix_web::test]
async fn redactions_from_elsewhere_wait_for_their_target() {
    use crate::actors::syncapi::storage::room_events;
    for backend in BACKENDS {
        let f = fixture(backend).await;
        for version in ["10", "12"] {
            let room = public_room(&f, version).await;
            let other = public_room(&f, version).await;
            let bob_join = f.rs.send(member(&room, "bob", "join")).await.unwrap();
            let s = state_ids(&f, &room).await;
            let (create, pl) = (&s["m.room.create|"], &s["m.room.power_levels|"]);
            let auth = auth_ids(version, create, &[pl, &bob_join.event_id]);
            let input = |room: &str, event: &Value| InputRoomEvent {
                room_id: room.to_owned(),
                event: event.clone(),
                send_on_behalf_of: None,
            };
            // Bob's message, and his redaction of it, which arrives first (both on his join).
            let said = foreign(
                &f,
                &room,
                version,
                "bob",
                "m.room.message",
                None,
                json!({"body": "oops"}),
                &[&bob_join.event_id],
                &auth,
                7,
            )
            .await;
            let said_id = id_of(&said, version);
            let redaction = foreign_pdu(
                &f,
                &room,
                version,
                "bob",
                "m.room.redaction",
                None,
                json!({}),
                &[&bob_join.event_id],
                &auth,
                7,
                Some(&said_id),
            )
            .await;
            let outcome = f.rs.send(input(&room, &redaction)).await.unwrap();
            let InputOutcome::Accepted {
                event_id: redaction_id,
            } = outcome
            else {
                panic!("{backend} v{version}: {outcome:?}");
            };
            // A redaction in another room naming the same ID must not touch it there.
            let s2 = state_ids(&f, &other).await;
            let alice2 = &s2["m.room.member|@alice:test.local"];
            let stray = foreign_pdu(
                &f,
                &other,
                version,
                "alice",
                "m.room.redaction",
                None,
                json!({}),
                &[alice2],
                &auth_ids(
                    version,
                    &s2["m.room.create|"],
                    &[&s2["m.room.power_levels|"], alice2],
                ),
                9,
                Some(&said_id),
            )
            .await;
            assert!(matches!(
                f.rs.send(input(&other, &stray)).await.unwrap(),
                InputOutcome::Accepted { .. }
            ));
            // The target arrives: stored and served redacted, by the redaction of its room.
            let outcome = f.rs.send(input(&room, &said)).await.unwrap();
            assert_eq!(
                outcome,
                InputOutcome::Accepted {
                    event_id: said_id.clone()
                },
                "{backend} v{version}"
            );
            let target =
                f.rs.send(QueryEvent {
                    event_id: said_id.clone(),
                })
                .await
                .unwrap()
                .unwrap();
            assert_eq!(target.json["content"], json!({}), "{backend} v{version}");
            assert_eq!(
                target.redacted_because.as_ref().unwrap()["event_id"],
                json!(redaction_id),
                "{backend} v{version}"
            );
            // Its original content is kept for the retention, like any redacted event's.
            assert_eq!(stored_json(&f, &said_id).await["content"]["body"], "oops");
            // Only the stray redaction still waits, in its own room.
            let waiting =
                f.db.query(
                    "SELECT redaction_nid FROM roomserver_pending_redactions
                    WHERE target_event_id = $1",
                    &[&said_id],
                )
                .await
                .unwrap();
            assert_eq!(waiting.len(), 1, "{backend} v{version}");
            // Input again: the same answer, still redacted.
            assert!(matches!(
                f.rs.send(input(&room, &said)).await.unwrap(),
                InputOutcome::Accepted { .. }
            ));
            // The syncapi's copy is redacted too, with the redaction that came first.
            syncapi_catches_up(&f, &said_id).await;
            let copy = room_events::select_by_id(&f.db, &said_id)
                .await
                .unwrap()
                .unwrap();
            let json: Value = serde_json::from_str(&copy.json).unwrap();
            assert_eq!(json["content"], json!({}), "{backend} v{version}");
            let because: Value =
                serde_json::from_str(copy.redacted_because.as_deref().unwrap()).unwrap();
            assert_eq!(because["event_id"], json!(redaction_id));
        }
    }
}

#[actix_web::test]
async fn who_may_redact_without_the_power() {
    use super::input::{redaction_target, Redactor};
    for backend in BACKENDS {
        let f = fixture(backend).await;
        let room = public_room(&f, "12").await;
        let said =
            f.rs.send(ev(
                &room,
                "alice",
                "m.room.message",
                None,
                json!({"body": "hi"}),
            ))
            .await
            .unwrap();
        let room_nid = super::storage::rooms::select(&f.db, &room)
            .await
            .unwrap()
            .unwrap()
            .room_nid;
        let (_, rules) = crate::pdu::rules("12").unwrap();
        let may = |user: &'static str, who: Redactor| {
            let (db, target, rules) = (f.db.clone(), said.event_id.clone(), rules.clone());
            async move {
                let user = ruma::UserId::parse(user).unwrap();
                redaction_target(&db, room_nid, &target, &user, None, None, &rules, who).await
            }
        };
        // Without power levels nobody but the sender (locally) or their server (from
        // elsewhere) may.
        assert!(may("@alice:test.local", Redactor::Sender).await.is_ok());
        assert!(matches!(
            may("@carol:test.local", Redactor::Sender).await,
            Err(RoomserverError::NotAllowed(_))
        ));
        assert!(may("@carol:test.local", Redactor::Server).await.is_ok());
        assert!(matches!(
            may("@eve:elsewhere.example", Redactor::Server).await,
            Err(RoomserverError::NotAllowed(_))
        ));
    }
}

/// The stored JSON of an event, as the roomserver keeps it (not as it serves it).
async fn stored_json(f: &Fixture, event_id: &str) -> Value {
    let row = super::storage::events::select_by_id(&f.db, event_id)
        .await
        .unwrap()
        .unwrap();
    serde_json::from_str(&row.json).unwrap()
}

/// The event carried by an output still in the outbox, if it is.
async fn outbox_event(f: &Fixture, event_id: &str) -> Option<Value> {
    let rows =
        f.db.query(
            "SELECT payload FROM bus_outbox WHERE stream = $1",
            &[&STREAM],
        )
        .await
        .unwrap();
    rows.iter().find_map(
        |r| match serde_json::from_str(&r.string(0).unwrap()).unwrap() {
            RoomserverOutput::NewRoomEvent {
                event_id: id,
                event,
                ..
            } => (id == event_id).then_some(event),
            _ => None,
        },
    )
}

#[actix_web::test]
async fn redacted_content_is_pruned_after_the_retention_and_the_outbox_behind_its_consumers() {
    use super::retention::prune_redacted;
    for backend in BACKENDS {
        let f = fixture(backend).await;
        let room = public_room(&f, "12").await;
        let said =
            f.rs.send(ev(
                &room,
                "alice",
                "m.room.message",
                None,
                json!({"body": "secret"}),
            ))
            .await
            .unwrap();
        let mut redaction = ev(&room, "alice", "m.room.redaction", None, json!({}));
        redaction.redacts = Some(said.event_id.clone());
        f.rs.send(redaction).await.unwrap();
        // Within the retention: the original content stays, for moderators.
        let before_redaction = crate::storage::now_ms() - 60_000;
        assert_eq!(prune_redacted(&f.db, before_redaction).await.unwrap(), 0);
        assert_eq!(
            stored_json(&f, &said.event_id).await["content"]["body"],
            "secret",
            "{backend}"
        );
        // Past it: the stored event and its copy in the outbox are the redacted form.
        let later = crate::storage::now_ms() + 1;
        assert_eq!(prune_redacted(&f.db, later).await.unwrap(), 1, "{backend}");
        let pruned = stored_json(&f, &said.event_id).await;
        assert_eq!(pruned["content"], json!({}), "{backend}");
        assert!(pruned["hashes"].is_object(), "{backend}: still verifiable");
        assert_eq!(
            outbox_event(&f, &said.event_id).await.unwrap()["content"],
            json!({}),
            "{backend}"
        );
        assert_eq!(
            prune_redacted(&f.db, later).await.unwrap(),
            0,
            "{backend}: once"
        );
        // Still served redacted, with the redaction.
        let served =
            f.rs.send(QueryEvent {
                event_id: said.event_id.clone(),
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(served.json["content"], json!({}));
        assert!(served.redacted_because.is_some());

        // The state as of a stream position comes from the roomserver's own tables, so it
        // survives the outbox being pruned. Nothing consumes this test's stream: everything
        // older than the retention goes.
        let head = *f.bus.watch(STREAM).borrow();
        let before =
            f.rs.send(QueryStateAtPosition {
                room_id: room.clone(),
                position: head,
                user_id: "@alice:test.local".into(),
            })
            .await
            .unwrap()
            .unwrap();
        assert!(!before.is_empty());
        let ids = |v: &[StoredEvent]| {
            let mut ids: Vec<String> = v.iter().map(|e| e.event_id.clone()).collect();
            ids.sort();
            ids
        };
        // Events stored before positions were recorded get theirs from the outbox, once.
        f.db.execute("UPDATE roomserver_events SET stream_position = NULL", &[])
            .await
            .unwrap();
        let lost =
            f.rs.send(QueryStateAtPosition {
                room_id: room.clone(),
                position: head,
                user_id: "@alice:test.local".into(),
            })
            .await
            .unwrap()
            .unwrap();
        assert!(lost.is_empty(), "{backend}: positions are what it reads");
        super::retention::backfill_stream_positions(&f.db)
            .await
            .unwrap();
        let backfilled =
            f.rs.send(QueryStateAtPosition {
                room_id: room.clone(),
                position: head,
                user_id: "@alice:test.local".into(),
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ids(&before), ids(&backfilled), "{backend}");
        assert!(
            crate::bus::prune(&f.db, std::time::Duration::ZERO)
                .await
                .unwrap()
                > 0
        );
        assert!(
            outbox_event(&f, &said.event_id).await.is_none(),
            "{backend}"
        );
        let after =
            f.rs.send(QueryStateAtPosition {
                room_id: room.clone(),
                position: head,
                user_id: "@alice:test.local".into(),
            })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(ids(&before), ids(&after), "{backend}");
    }
}

/// A join of `user` (on another server) signed with `key` as `server`, on top of the room's
/// current state.
async fn remote_join(
    f: &Fixture,
    room: &str,
    version: &str,
    user: &str,
    server: &str,
    key: &SigningKey,
    sent_at: u64,
) -> Value {
    let s = state_ids(f, room).await;
    let mut auth = vec![
        s["m.room.power_levels|"].clone(),
        s["m.room.join_rules|"].clone(),
    ];
    if version != "12" {
        auth.push(s["m.room.create|"].clone());
    }
    // `public_room` sends the join rules last.
    let prev = s["m.room.join_rules|"].clone();
    let (version_id, _) = crate::pdu::rules(version).unwrap();
    let user = format!("@{user}:{server}");
    let pdu = crate::pdu::PduBuilder {
        room_version: version_id,
        room_id: Some(room.try_into().unwrap()),
        sender: user.as_str().try_into().unwrap(),
        event_type: "m.room.member".into(),
        state_key: Some(user.clone()),
        content: json!({"membership": "join"}),
        redacts: None,
        prev_events: vec![prev.as_str().try_into().unwrap()],
        auth_events: auth
            .iter()
            .map(|a| a.as_str().try_into().unwrap())
            .collect(),
        reference_hashes: Default::default(),
        depth: 10u32.into(),
        origin_server_ts: ruma::MilliSecondsSinceUnixEpoch(sent_at.try_into().unwrap()),
    }
    .build(key, server.try_into().unwrap())
    .unwrap();
    serde_json::to_value(&pdu.json).unwrap()
}

#[actix_web::test]
async fn events_of_other_servers_verify_with_keys_from_the_federationapi() {
    use crate::actors::federationapi::{self, storage::server_keys};
    for backend in BACKENDS {
        let t = test_db(backend).await;
        let dir = tempfile::tempdir().unwrap();
        let key = Arc::new(SigningKey::load_or_generate(dir.path()).unwrap());
        let other_dir = tempfile::tempdir().unwrap();
        let other = SigningKey::load_or_generate(other_dir.path()).unwrap();
        let stranger_dir = tempfile::tempdir().unwrap();
        let stranger = SigningKey::load_or_generate(stranger_dir.path()).unwrap();
        let exec = crate::actors::executors::Executors::start(2);
        let keyring = super::keyring::Keyring::default();
        let rs = Handle::Local(super::start(
            Deps {
                db: t.db.clone(),
                bus: Bus::new(),
                key: key.clone(),
                server_name: "test.local".try_into().unwrap(),
                default_room_version: "12".into(),
                keyring: keyring.clone(),
            },
            &exec,
        ));
        let f = Fixture {
            rs,
            key: key.clone(),
            db: t.db.clone(),
            bus: Bus::new(),
            _db: t,
            _dir: dir,
        };
        let room = public_room(&f, "10").await;
        let now = crate::storage::now_ms();
        let sent_at = u64::try_from(now).unwrap();
        let join = remote_join(&f, &room, "10", "carol", "other.test", &other, sent_at).await;
        let input = |event: &Value| InputRoomEvent {
            room_id: room.clone(),
            event: event.clone(),
            send_on_behalf_of: None,
        };

        // Without a federationapi, another server's keys cannot be had.
        let e = f.rs.send(input(&join)).await.unwrap_err();
        assert!(
            matches!(&e, RoomserverError::BadRequest(m) if m.contains("other.test")),
            "{e:?}"
        );

        // other.test's key is in the federationapi's cache, valid for an hour; nothing else
        // is reachable (connections to the test destination are refused).
        server_keys::upsert(
            &f.db,
            &server_keys::NewKey {
                server_name: "other.test",
                key_id: other.key_id().as_str(),
                public_key: &other.public_key_base64(),
                valid_until_ts: now + 3_600_000,
                expired_ts: None,
                fetched_at: now,
                fetched_from: "other.test",
                key_json: "{}",
            },
        )
        .await
        .unwrap();
        let client = crate::federation::client::FederationClient::new(
            crate::federation::client::ClientSettings {
                server_name: "test.local".try_into().unwrap(),
                key: key.clone(),
                denylist: Arc::new(crate::net::IpDenylist::parse::<&str>(&[]).unwrap()),
                verify_tls: false,
                ca_file: String::new(),
                connect_timeout: std::time::Duration::from_secs(2),
                request_timeout: std::time::Duration::from_secs(2),
                max_response_bytes: 1 << 20,
                test_destinations: [
                    ("other.test".to_owned(), "http://127.0.0.1:1".to_owned()),
                    ("stranger.test".to_owned(), "http://127.0.0.1:1".to_owned()),
                ]
                .into(),
            },
        )
        .unwrap();
        // No syncapi or userapi here: the federationapi's EDU input is not used.
        fn nowhere<A: actix::Actor>() -> Handle<A> {
            Handle::Remote(actix::Actor::start(crate::actors::bridge::HttpBridge::new(
                "http://127.0.0.1:1",
                "unused",
            )))
        }
        let fed = federationapi::start(
            f.db.clone(),
            f.bus.clone(),
            f.rs.clone(),
            nowhere(),
            nowhere(),
            federationapi::FederationApiConfig {
                server_name: "test.local".try_into().unwrap(),
                key: key.clone(),
                client,
                key_validity: std::time::Duration::from_secs(3600),
                old_keys: Default::default(),
                notaries: vec![],
                retry: federationapi::sender::RetryPolicy {
                    min: std::time::Duration::from_secs(600),
                    multiplier: 2,
                    max: std::time::Duration::from_secs(3600),
                    catch_up_after: std::time::Duration::from_secs(3600),
                },
                default_room_version: "11".into(),
            },
            &exec,
        )
        .await
        .unwrap();
        keyring.attach(Handle::Local(fed));

        // Signed by a key other.test does not have: refused, nothing stored.
        let forged = remote_join(&f, &room, "10", "carol", "other.test", &stranger, sent_at).await;
        let e = f.rs.send(input(&forged)).await.unwrap_err();
        assert!(
            matches!(&e, RoomserverError::BadRequest(m) if m.contains("does not verify") && m.contains("other.test")),
            "{e:?}"
        );
        // A server whose keys cannot be fetched at all.
        let unknown =
            remote_join(&f, &room, "10", "dave", "stranger.test", &stranger, sent_at).await;
        let e = f.rs.send(input(&unknown)).await.unwrap_err();
        assert!(
            matches!(&e, RoomserverError::BadRequest(m) if m.contains("does not verify") && m.contains("stranger.test")),
            "{e:?}"
        );
        // Sent after the key's validity ended: room versions 5+ refuse it.
        let late = remote_join(
            &f,
            &room,
            "10",
            "carol",
            "other.test",
            &other,
            sent_at + 7_200_000,
        )
        .await;
        let e = f.rs.send(input(&late)).await.unwrap_err();
        assert!(
            matches!(&e, RoomserverError::BadRequest(m) if m.contains("does not verify") && m.contains("other.test")),
            "{e:?}"
        );
        assert!(!state_ids(&f, &room)
            .await
            .contains_key("m.room.member|@carol:other.test"));

        // Signed by other.test's key, sent while it was valid: accepted.
        let a = f.rs.send(input(&join)).await.unwrap();
        assert!(
            matches!(a, InputOutcome::Accepted { .. }),
            "{backend}: {a:?}"
        );
        assert!(state_ids(&f, &room)
            .await
            .contains_key("m.room.member|@carol:other.test"));
    }
}
