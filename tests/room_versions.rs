//! Room versions 1 and 2 end to end over HTTP (their events carry their own `$<random>:<server>`
//! IDs and hashed references): capabilities, createRoom, invite, join, send, state, redaction by
//! the v1 algorithm, `/messages` and `/sync` with the right event IDs, and upgrades to newer
//! versions; on both databases, with the components in-process and behind the HTTP bridge.

mod common;

use common::{assert_error, create, enc, Backend, TestServer, Topology};
use serde_json::{json, Value};

const C: &str = "/_matrix/client/v3";

/// An event ID of room versions 1 and 2: `$<opaque>:test.local`, not a reference hash.
fn is_v1_event_id(id: &Value) -> bool {
    id.as_str()
        .and_then(|id| id.strip_prefix('$'))
        .and_then(|id| id.split_once(':'))
        .is_some_and(|(opaque, server)| !opaque.is_empty() && server == "test.local")
}

fn find<'a>(events: &'a Value, event_id: &str) -> Option<&'a Value> {
    events
        .as_array()?
        .iter()
        .find(|e| e["event_id"] == event_id)
}

async fn capabilities_list_versions_1_to_12(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &[]).await;
    let (_, tok, _) = s.register("alice", "pw").await;
    let (st, caps) = s.get(&format!("{C}/capabilities"), Some(&tok)).await;
    assert_eq!(st, 200, "{caps}");
    let versions = &caps["capabilities"]["m.room_versions"];
    assert_eq!(versions["default"], "12");
    let available = versions["available"].as_object().unwrap();
    let mut listed: Vec<u32> = available.keys().map(|k| k.parse().unwrap()).collect();
    listed.sort();
    assert_eq!(listed, (1..=12).collect::<Vec<_>>());
    assert!(available.values().all(|v| v == "stable"), "{available:?}");
    // Versions outside the list are still refused.
    for version in ["0", "13"] {
        assert_error(
            &s.post(
                &format!("{C}/createRoom"),
                Some(&tok),
                json!({ "room_version": version }),
            )
            .await,
            400,
            "M_UNSUPPORTED_ROOM_VERSION",
        );
    }
    s.stop().await;
}

async fn rooms_of_versions_1_and_2(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &[]).await;
    let (alice, tok, _) = s.register("alice", "pw").await;
    let (bob, bob_tok, _) = s.register("bob", "pw").await;
    let (carol, carol_tok, _) = s.register("carol", "pw").await;
    for version in ["1", "2"] {
        // createRoom: private, bob invited at creation.
        let room = create(
            &s,
            &tok,
            json!({"room_version": version, "preset": "private_chat", "name": "Old",
                   "topic": "v1 events", "invite": [bob]}),
        )
        .await;
        assert!(room.ends_with(":test.local"), "{room}");
        let r = format!("{C}/rooms/{room}");
        let (st, state) = s.get(&format!("{r}/state"), Some(&tok)).await;
        assert_eq!(st, 200, "{state}");
        for e in state.as_array().unwrap() {
            assert!(is_v1_event_id(&e["event_id"]), "v{version}: {e}");
            for field in [
                "prev_events",
                "auth_events",
                "hashes",
                "signatures",
                "depth",
            ] {
                assert!(e.get(field).is_none(), "v{version}: client format: {e}");
            }
        }
        let (_, c) = s
            .get(&format!("{r}/state/m.room.create/"), Some(&tok))
            .await;
        assert_eq!(
            (c["room_version"].as_str(), c["creator"].as_str()),
            (Some(version), Some(alice.as_str())),
            "{c}"
        );

        // Bob joins by the invite; carol is invited afterwards and joins too.
        let (st, v) = s
            .post(&format!("{r}/join"), Some(&bob_tok), json!({}))
            .await;
        assert_eq!(st, 200, "v{version}: {v}");
        let (st, v) = s
            .post(
                &format!("{r}/invite"),
                Some(&tok),
                json!({ "user_id": carol }),
            )
            .await;
        assert_eq!(st, 200, "v{version}: {v}");
        let (st, v) = s
            .post(&format!("{r}/join"), Some(&carol_tok), json!({}))
            .await;
        assert_eq!(st, 200, "v{version}: {v}");

        // Send and state: the answers' IDs are the events' own.
        let (st, sent) = s
            .put(
                &format!("{r}/send/m.room.message/m{version}"),
                Some(&bob_tok),
                json!({"msgtype": "m.text", "body": "hello"}),
            )
            .await;
        assert_eq!(st, 200, "{sent}");
        let msg = sent["event_id"].as_str().unwrap().to_owned();
        assert!(is_v1_event_id(&sent["event_id"]), "{sent}");
        let (st, topic) = s
            .put(
                &format!("{r}/state/m.room.topic/"),
                Some(&tok),
                json!({"topic": "changed"}),
            )
            .await;
        assert_eq!(st, 200, "{topic}");
        let topic_id = topic["event_id"].as_str().unwrap().to_owned();
        let (_, t) = s
            .get(&format!("{r}/state/m.room.topic/"), Some(&bob_tok))
            .await;
        assert_eq!(t["topic"], "changed");
        let (st, e) = s
            .get(&format!("{r}/event/{}", enc(&msg)), Some(&carol_tok))
            .await;
        assert_eq!(st, 200, "{e}");
        assert_eq!(
            (e["event_id"].as_str(), e["content"]["body"].as_str()),
            (Some(msg.as_str()), Some("hello"))
        );
        assert!(e.get("prev_events").is_none(), "{e}");

        // The power levels before the redaction, with `invite` (which v1 redaction drops).
        let (_, pl_state) = s.get(&format!("{r}/state"), Some(&tok)).await;
        let pl = pl_state
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["type"] == "m.room.power_levels")
            .unwrap()
            .clone();
        let pl_id = pl["event_id"].as_str().unwrap().to_owned();
        assert!(pl["content"].get("invite").is_some(), "{pl}");

        // /messages and /sync see the events under the IDs their senders were given.
        let (st, page) = s
            .get(&format!("{r}/messages?dir=b&limit=50"), Some(&carol_tok))
            .await;
        assert_eq!(st, 200, "{page}");
        for id in [&msg, &topic_id] {
            assert!(
                find(&page["chunk"], id).is_some(),
                "v{version}: {id} in {page}"
            );
        }
        assert!(page["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| is_v1_event_id(&e["event_id"])));
        let (st, sync) = s
            .get(
                &format!(
                    "{C}/sync?filter={}",
                    enc(r#"{"room":{"timeline":{"limit":50}}}"#)
                ),
                Some(&bob_tok),
            )
            .await;
        assert_eq!(st, 200, "{sync}");
        let joined = &sync["rooms"]["join"][&room];
        let timeline = &joined["timeline"]["events"];
        let seen = find(timeline, &msg).unwrap_or_else(|| panic!("v{version}: {msg} in {joined}"));
        assert_eq!(seen["content"]["body"], "hello");
        assert!(find(timeline, &topic_id).is_some(), "{timeline}");
        // The federation format shows the events as stored: their own event_id field and
        // `[id, {"sha256": hash}]` references.
        let (_, fed) = s
            .get(
                &format!(
                    "{C}/sync?filter={}",
                    enc(r#"{"event_format":"federation","room":{"timeline":{"limit":50}}}"#)
                ),
                Some(&bob_tok),
            )
            .await;
        let stored = find(&fed["rooms"]["join"][&room]["timeline"]["events"], &msg)
            .unwrap_or_else(|| panic!("{fed}"));
        let prev = &stored["prev_events"][0];
        assert!(is_v1_event_id(&prev[0]), "{stored}");
        assert_eq!(
            prev[1]["sha256"].as_str().map(str::len),
            Some(43),
            "{stored}"
        );
        assert!(stored["auth_events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| is_v1_event_id(&a[0])));

        // Redaction by the v1 algorithm: a message loses its content, the power levels keep
        // the keys v1 lists (`users`, `ban`, ...), not `invite`; the IDs stay.
        let (st, red) = s
            .put(
                &format!("{r}/redact/{}/r{version}", enc(&msg)),
                Some(&bob_tok),
                json!({"reason": "oops"}),
            )
            .await;
        assert_eq!(st, 200, "{red}");
        assert!(is_v1_event_id(&red["event_id"]), "{red}");
        let (_, e) = s.get(&format!("{r}/event/{}", enc(&msg)), Some(&tok)).await;
        assert_eq!(e["content"], json!({}), "v{version}: {e}");
        assert_eq!(e["event_id"], msg.as_str());
        assert_eq!(
            e["unsigned"]["redacted_because"]["event_id"],
            red["event_id"]
        );
        let (st, red_pl) = s
            .put(
                &format!("{r}/redact/{}/p{version}", enc(&pl_id)),
                Some(&tok),
                json!({}),
            )
            .await;
        assert_eq!(st, 200, "{red_pl}");
        let (_, e) = s
            .get(&format!("{r}/event/{}", enc(&pl_id)), Some(&tok))
            .await;
        assert_eq!(e["event_id"], pl_id.as_str());
        assert_eq!(e["content"]["users"][&alice], 100, "v{version}: {e}");
        assert!(e["content"].get("invite").is_none(), "v{version}: {e}");
        assert!(e["content"].get("ban").is_some(), "v{version}: {e}");

        // Members and their moves keep working after the redactions.
        let (st, v) = s
            .post(
                &format!("{r}/kick"),
                Some(&tok),
                json!({"user_id": carol, "reason": "bye"}),
            )
            .await;
        assert_eq!(st, 200, "v{version}: {v}");
        assert_error(
            &s.put(
                &format!("{r}/send/m.room.message/c{version}"),
                Some(&carol_tok),
                json!({"body": "still here?"}),
            )
            .await,
            403,
            "M_FORBIDDEN",
        );
        let (st, members) = s.get(&format!("{r}/joined_members"), Some(&bob_tok)).await;
        assert_eq!(st, 200, "{members}");
        let mut joined: Vec<&String> = members["joined"].as_object().unwrap().keys().collect();
        joined.sort();
        assert_eq!(joined, vec![&alice, &bob]);
    }
    s.stop().await;
}

async fn upgrades_from_versions_1_and_2(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &[]).await;
    let (_, tok, _) = s.register("alice", "pw").await;
    let (_, bob_tok, _) = s.register("bob", "pw").await;
    for (from, to) in [("1", "12"), ("2", "11"), ("1", "2")] {
        let old = create(
            &s,
            &tok,
            json!({"preset": "public_chat", "room_version": from, "name": format!("v{from}")}),
        )
        .await;
        assert_eq!(
            s.post(&format!("{C}/rooms/{old}/join"), Some(&bob_tok), json!({}))
                .await
                .0,
            200
        );
        let (st, v) = s
            .post(
                &format!("{C}/rooms/{old}/upgrade"),
                Some(&tok),
                json!({ "new_version": to }),
            )
            .await;
        assert_eq!(st, 200, "{from}->{to}: {v}");
        let new = v["replacement_room"].as_str().unwrap().to_owned();
        let (_, tomb) = s
            .get(
                &format!("{C}/rooms/{old}/state/m.room.tombstone/"),
                Some(&tok),
            )
            .await;
        assert_eq!(tomb["replacement_room"], new.as_str(), "{tomb}");
        let (_, c) = s
            .get(&format!("{C}/rooms/{new}/state/m.room.create/"), Some(&tok))
            .await;
        assert_eq!(
            (
                c["room_version"].as_str(),
                c["predecessor"]["room_id"].as_str()
            ),
            (Some(to), Some(old.as_str())),
            "{c}"
        );
        // The predecessor names the tombstone by its own (v1-format) ID.
        let (_, old_state) = s.get(&format!("{C}/rooms/{old}/state"), Some(&tok)).await;
        let tomb_id = old_state
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["type"] == "m.room.tombstone")
            .map(|e| e["event_id"].clone())
            .unwrap();
        assert!(is_v1_event_id(&tomb_id), "{tomb_id}");
        if let Some(id) = c["predecessor"].get("event_id") {
            assert_eq!(id, &tomb_id);
        }
        assert_eq!(
            s.get(&format!("{C}/rooms/{new}/state/m.room.name/"), Some(&tok))
                .await
                .1["name"],
            format!("v{from}")
        );
        // Bob follows to the new room and talks there.
        let (st, v) = s
            .post(&format!("{C}/rooms/{new}/join"), Some(&bob_tok), json!({}))
            .await;
        assert_eq!(st, 200, "{from}->{to}: {v}");
        let (st, v) = s
            .put(
                &format!("{C}/rooms/{new}/send/m.room.message/u{from}{to}"),
                Some(&bob_tok),
                json!({"msgtype": "m.text", "body": "moved"}),
            )
            .await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(is_v1_event_id(&v["event_id"]), to == "2", "{v}");
    }
    s.stop().await;
}

scenarios!(
    capabilities_list_versions_1_to_12,
    rooms_of_versions_1_and_2,
    upgrades_from_versions_1_and_2,
);
