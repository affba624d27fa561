//! History this server did not see happen, on both databases and topologies: a PDU whose
//! prev events `/get_missing_events` cannot give is placed on the state the origin tells
//! with `/state_ids` (a fake remote `b.test`, `common::remote::Fake`), and a room joined over
//! federation is backfilled from the other server when a client pages back past the join
//! (two myelin servers).

mod common;

use common::remote::{auth_of, put_txn, remote_event, room_tip, Fake};
use common::{enc, reserve_port, Backend, TestServer, Topology};
use myelin::federation::client::FederationClient;
use serde_json::{json, Value};
use std::time::Duration;

fn url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// Starts server `name` on `port` (with an internal listener), reaching the others at
/// `destinations`.
async fn start(
    backend: Backend,
    topology: Topology,
    name: &str,
    port: u16,
    destinations: &[(&str, String)],
) -> TestServer {
    let table: Vec<String> = destinations
        .iter()
        .map(|(n, u)| format!("\"{n}\" = \"{u}\""))
        .collect();
    let mut sets = vec![
        format!("server.name={name}"),
        format!("server.listen=127.0.0.1:{port}"),
        "server.ip_range_denylist=[]".to_owned(),
        format!("federation.test_destinations={{{}}}", table.join(", ")),
    ];
    if matches!(topology, Topology::Local) {
        sets.push("components.internal_listen=127.0.0.1:0".to_owned());
        sets.push(common::INTERNAL_SECRET.to_owned());
    }
    let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
    TestServer::start(backend, topology, &sets).await
}

/// Sends a roomserver message on the server's internal listener; its `Ok` answer.
async fn roomserver(s: &TestServer, message: &str, body: Value) -> Value {
    let internal = [&s.userapi_node, &s.node]
        .into_iter()
        .find_map(|n| n.as_ref().and_then(|n| n.internal_addr))
        .expect("an internal listener");
    let secret = common::INTERNAL_SECRET.split_once('=').unwrap().1;
    let mut res = s
        .client
        .post(format!(
            "http://{internal}/_myelin/internal/roomserver/{message}"
        ))
        .insert_header(("Authorization", format!("Bearer {secret}")))
        .send_json(&body)
        .await
        .unwrap();
    let v: Value = res.json().limit(16 << 20).await.unwrap();
    assert!(v.get("Ok").is_some(), "{message}: {v}");
    v["Ok"].clone()
}

/// Polls `check` (up to 30 s) until it holds.
async fn until<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    for _ in 0..300 {
        if check().await {
            return;
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting until {what}");
}

/// Sends a message as `token`; its event ID.
async fn say(s: &TestServer, token: &str, room: &str, body: &str) -> String {
    let (st, v) = s
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/{}",
                enc(room),
                enc(body)
            ),
            Some(token),
            json!({"msgtype": "m.text", "body": body}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    v["event_id"].as_str().unwrap().to_owned()
}

/// One `/messages` page backwards as `token`: (chunk, end).
async fn page(
    s: &TestServer,
    token: &str,
    room: &str,
    from: Option<&str>,
    limit: u32,
) -> (Vec<Value>, Option<String>) {
    let from = from
        .map(|f| format!("&from={}", enc(f)))
        .unwrap_or_default();
    let (st, v) = s
        .get(
            &format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=b&limit={limit}{from}",
                enc(room)
            ),
            Some(token),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    (
        v["chunk"].as_array().cloned().unwrap_or_default(),
        v["end"].as_str().map(str::to_owned),
    )
}

/// Every event `token` reads paging back through a room, `limit` at a time, newest first.
async fn history(s: &TestServer, token: &str, room: &str, limit: u32) -> Vec<Value> {
    let mut all = Vec::new();
    let mut from: Option<String> = None;
    for _ in 0..200 {
        let (chunk, end) = page(s, token, room, from.as_deref(), limit).await;
        if chunk.is_empty() {
            return all;
        }
        all.extend(chunk);
        match end {
            Some(end) => from = Some(end),
            None => return all,
        }
    }
    panic!("paging did not end: {} events", all.len());
}

fn ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn bodies(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .map(|e| e["content"]["body"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// A public room on `a.test` created by alice, which `@bob:b.test` (of the fake) joined
/// through `/send`: (alice's token, room ID).
async fn room_with_remote_member(
    a: &TestServer,
    fake: &Fake,
    client: &FederationClient,
) -> (String, String) {
    let (_, alice, _) = a.register("alice", "password").await;
    let room = common::create(a, &alice, json!({"preset": "public_chat"})).await;
    let (version, last, depth, state) = room_tip(&a.client, &a.base, &alice, &room).await;
    let bob = "@bob:b.test";
    let (join_id, join) = remote_event(
        fake,
        &version,
        &room,
        bob,
        "m.room.member",
        Some(bob),
        json!({"membership": "join"}),
        &last,
        depth + 1,
        auth_of(&version, &state, bob, true),
    );
    let answer = put_txn(client, "join-1", "b.test", vec![join])
        .await
        .unwrap_or_else(|e| panic!("join refused: {e}"));
    assert_eq!(answer["pdus"][&join_id], json!({}), "{answer}");
    (alice, room)
}

/// A PDU of bob's whose prev event `/get_missing_events` does not give is placed on the state
/// `/state_ids` tells (its events fetched with `/event`): accepted, and the room's state is
/// what the remote has. A `/state_ids` answer naming an event that does not verify, or one of
/// another room, gets the PDU refused, and nothing of it is stored; more than 5 missing prev
/// events are refused without asking.
async fn a_gap_is_filled_from_the_state_at_it(backend: Backend, topology: Topology) {
    let (pa, pb) = (reserve_port(), reserve_port());
    let fake = Fake::start("b.test", pb).await;
    let a = start(backend, topology, "a.test", pa, &[("b.test", url(pb))]).await;
    let client = fake.client(url(pa));
    let (alice, room) = room_with_remote_member(&a, &fake, &client).await;
    let bob = "@bob:b.test";

    // Paging back through a room made here asks no other server for history.
    let seen = history(&a, &alice, &room, 5).await;
    assert_eq!(seen.last().unwrap()["type"], "m.room.create");
    assert!(
        !fake
            .state
            .gets
            .lock()
            .unwrap()
            .iter()
            .any(|g| g.contains("/backfill/")),
        "{:?}",
        fake.state.gets.lock().unwrap()
    );

    let (version, last, depth, state) = room_tip(&a.client, &a.base, &alice, &room).await;
    let state_ids: Vec<String> = state.values().cloned().collect();
    // bob's new display name, which a.test never gets, then a message on top of it.
    let (lost_id, lost) = remote_event(
        &fake,
        &version,
        &room,
        bob,
        "m.room.member",
        Some(bob),
        json!({"membership": "join", "displayname": "Bobby"}),
        &last,
        depth + 1,
        auth_of(&version, &state, bob, true),
    );
    let mut after_lost = state.clone();
    after_lost.insert(("m.room.member".into(), bob.into()), lost_id.clone());
    let (orphan_id, orphan) = remote_event(
        &fake,
        &version,
        &room,
        bob,
        "m.room.message",
        None,
        json!({"msgtype": "m.text", "body": "after a gap"}),
        &lost_id,
        depth + 2,
        auth_of(&version, &after_lost, bob, false),
    );
    fake.state.missing.lock().unwrap().clear();
    fake.state.state_ids.lock().unwrap().insert(
        lost_id.clone(),
        json!({"pdu_ids": state_ids, "auth_chain_ids": auth_of(&version, &state, bob, true)}),
    );
    fake.state
        .events
        .lock()
        .unwrap()
        .insert(lost_id.clone(), lost);
    let answer = put_txn(&client, "gap-1", "b.test", vec![orphan])
        .await
        .unwrap();
    assert_eq!(answer, json!({"pdus": {&orphan_id: {}}}));
    {
        let gets = fake.state.gets.lock().unwrap();
        assert!(
            gets.iter()
                .any(|g| g.contains("/state_ids/")
                    && g.contains(&format!("event_id={}", enc(&lost_id)))),
            "{gets:?}"
        );
        assert!(
            gets.iter()
                .any(|g| g.contains(&format!("/event/{}", enc(&lost_id)))),
            "{gets:?}"
        );
    }
    // The message is in alice's timeline; bob's display name is the remote's.
    let (_, sync) = a.get("/_matrix/client/v3/sync", Some(&alice)).await;
    let timeline = sync["rooms"]["join"][&room]["timeline"].to_string();
    assert!(timeline.contains("after a gap"), "{timeline}");
    let (st, member) = a
        .get(
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.member/{}",
                enc(&room),
                enc(bob)
            ),
            Some(&alice),
        )
        .await;
    assert_eq!(st, 200, "{member}");
    assert_eq!(member["displayname"], "Bobby", "{member}");

    // Again, but the state names carol's join, which the fake serves altered after signing:
    // the PDU is refused and not stored.
    let (_, last2, depth2, state2) = room_tip(&a.client, &a.base, &alice, &room).await;
    let carol = "@carol:b.test";
    let (carol_id, mut carol_join) = remote_event(
        &fake,
        &version,
        &room,
        carol,
        "m.room.member",
        Some(carol),
        json!({"membership": "join"}),
        &last2,
        depth2 + 1,
        auth_of(&version, &state2, carol, true),
    );
    carol_join["content"]["displayname"] = json!("changed after signing");
    let (lost2_id, lost2) = remote_event(
        &fake,
        &version,
        &room,
        bob,
        "m.room.member",
        Some(bob),
        json!({"membership": "join", "displayname": "Bob Two"}),
        &carol_id,
        depth2 + 2,
        auth_of(&version, &state2, bob, true),
    );
    let (orphan2_id, orphan2) = remote_event(
        &fake,
        &version,
        &room,
        bob,
        "m.room.message",
        None,
        json!({"msgtype": "m.text", "body": "after a bad gap"}),
        &lost2_id,
        depth2 + 3,
        auth_of(&version, &state2, bob, false),
    );
    let mut named: Vec<String> = state2.values().cloned().collect();
    named.push(carol_id.clone());
    fake.state.state_ids.lock().unwrap().insert(
        lost2_id.clone(),
        json!({"pdu_ids": named, "auth_chain_ids": []}),
    );
    {
        let mut served = fake.state.events.lock().unwrap();
        served.insert(lost2_id.clone(), lost2);
        served.insert(carol_id.clone(), carol_join);
    }
    let answer = put_txn(&client, "gap-2", "b.test", vec![orphan2])
        .await
        .unwrap();
    let why = answer["pdus"][&orphan2_id]["error"]
        .as_str()
        .unwrap_or_else(|| panic!("accepted: {answer}"));
    assert!(why.contains(&carol_id), "{why}");
    for id in [&orphan2_id, &lost2_id, &carol_id] {
        let (st, v) = a
            .get(
                &format!("/_matrix/client/v3/rooms/{}/event/{}", enc(&room), enc(id)),
                Some(&alice),
            )
            .await;
        assert_eq!(st, 404, "{id}: {v}");
    }
    let (_, member) = a
        .get(
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.member/{}",
                enc(&room),
                enc(bob)
            ),
            Some(&alice),
        )
        .await;
    assert_eq!(member["displayname"], "Bobby", "{member}");

    // A state naming an event of another room (served as asked): dropped, the PDU refused.
    let (_, last3, depth3, state3) = room_tip(&a.client, &a.base, &alice, &room).await;
    let (elsewhere_id, elsewhere) = remote_event(
        &fake,
        &version,
        "!elsewhere:b.test",
        carol,
        "m.room.topic",
        Some(""),
        json!({"topic": "another room"}),
        &last3,
        depth3 + 1,
        Vec::new(),
    );
    let (lost3_id, lost3) = remote_event(
        &fake,
        &version,
        &room,
        bob,
        "m.room.member",
        Some(bob),
        json!({"membership": "join", "displayname": "Bob Three"}),
        &last3,
        depth3 + 1,
        auth_of(&version, &state3, bob, true),
    );
    let (orphan3_id, orphan3) = remote_event(
        &fake,
        &version,
        &room,
        bob,
        "m.room.message",
        None,
        json!({"msgtype": "m.text", "body": "after another room's event"}),
        &lost3_id,
        depth3 + 2,
        auth_of(&version, &state3, bob, false),
    );
    let mut named: Vec<String> = state3.values().cloned().collect();
    named.push(elsewhere_id.clone());
    fake.state.state_ids.lock().unwrap().insert(
        lost3_id.clone(),
        json!({"pdu_ids": named, "auth_chain_ids": []}),
    );
    {
        let mut served = fake.state.events.lock().unwrap();
        served.insert(lost3_id.clone(), lost3);
        served.insert(elsewhere_id.clone(), elsewhere);
    }
    let answer = put_txn(&client, "gap-3", "b.test", vec![orphan3])
        .await
        .unwrap();
    let why = answer["pdus"][&orphan3_id]["error"]
        .as_str()
        .unwrap_or_else(|| panic!("accepted: {answer}"));
    assert!(why.contains(&elsewhere_id), "{why}");

    // More missing prev events than the state is asked for: refused before any request.
    let unknown: Vec<String> = (0..6).map(|i| format!("$missing{i}")).collect();
    let (too_many_id, too_many) = {
        let pdu = myelin::pdu::PduBuilder {
            room_version: version.as_str().try_into().unwrap(),
            room_id: Some(room.as_str().try_into().unwrap()),
            sender: bob.try_into().unwrap(),
            event_type: "m.room.message".into(),
            state_key: None,
            content: json!({"msgtype": "m.text", "body": "six gaps"}),
            redacts: None,
            prev_events: unknown
                .iter()
                .map(|p| p.as_str().try_into().unwrap())
                .collect(),
            auth_events: auth_of(&version, &state3, bob, false)
                .iter()
                .map(|a| a.as_str().try_into().unwrap())
                .collect(),
            reference_hashes: Default::default(),
            depth: ruma::UInt::new(depth3 + 2).unwrap(),
            origin_server_ts: ruma::MilliSecondsSinceUnixEpoch::now(),
        }
        .build(&fake.key, common::remote::server("b.test"))
        .unwrap();
        (
            pdu.event_id.to_string(),
            serde_json::to_value(&pdu.json).unwrap(),
        )
    };
    let asked_before = fake.state.gets.lock().unwrap().len();
    let answer = put_txn(&client, "gap-4", "b.test", vec![too_many])
        .await
        .unwrap();
    let why = answer["pdus"][&too_many_id]["error"]
        .as_str()
        .unwrap_or_else(|| panic!("accepted: {answer}"));
    assert!(why.contains("6 prev events"), "{why}");
    assert_eq!(fake.state.gets.lock().unwrap().len(), asked_before);
    a.stop().await;
    fake.handle.stop(true).await;
}

/// bob of `b.test` joins a room of `a.test` with 30 messages: paging back on `b.test` fetches
/// them (and the room's creation) from `a.test` with `/backfill`, in the order `a.test`
/// has them, once; they never show in bob's `/sync` as new, nor change the room's state. A
/// room made on `b.test` is never backfilled; history bob may not see stays hidden; a server
/// that cannot be reached leaves the page as it is.
async fn joined_rooms_are_backfilled(backend: Backend, topology: Topology) {
    let (pa, pb) = (reserve_port(), reserve_port());
    let a = start(backend, topology, "a.test", pa, &[("b.test", url(pb))]).await;
    let b = start(backend, topology, "b.test", pb, &[("a.test", url(pa))]).await;
    let (_, alice, _) = a.register("alice", "password").await;
    let (_, bob, _) = b.register("bob", "password").await;
    let room = common::create(&a, &alice, json!({"preset": "public_chat"})).await;
    let said: Vec<String> = (0..30).map(|i| format!("message {i}")).collect();
    for body in &said {
        say(&a, &alice, &room, body).await;
    }
    let (st, _) = b.get("/_matrix/client/v3/sync?timeout=0", Some(&bob)).await;
    assert_eq!(st, 200);
    let (status, body) = b
        .post(
            &format!("/_matrix/client/v3/join/{}?via=a.test", enc(&room)),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, synced) = b.get("/_matrix/client/v3/sync?timeout=0", Some(&bob)).await;
    let since = synced["next_batch"].as_str().unwrap().to_owned();
    assert!(
        bodies(
            synced["rooms"]["join"][&room]["timeline"]["events"]
                .as_array()
                .unwrap()
        )
        .is_empty(),
        "{synced}"
    );
    // What a.test has, as alice pages back from bob's join.
    until("a.test has bob's join", || async {
        let (chunk, _) = page(&a, &alice, &room, None, 1).await;
        chunk.first().is_some_and(|e| {
            e["type"] == "m.room.member"
                && e["state_key"]
                    .as_str()
                    .is_some_and(|k| k.ends_with(":b.test"))
        })
    })
    .await;
    let on_a = history(&a, &alice, &room, 100).await;
    let state_of_b = || async {
        let (st, v) = b
            .get(
                &format!("/_matrix/client/v3/rooms/{}/state", enc(&room)),
                Some(&bob),
            )
            .await;
        assert_eq!(st, 200, "{v}");
        let mut list = ids(v.as_array().unwrap());
        list.sort();
        list
    };
    let state_before = state_of_b().await;

    let on_b = history(&b, &bob, &room, 100).await;
    let mut expected: Vec<String> = said.clone();
    expected.reverse();
    assert_eq!(bodies(&on_b), expected);
    assert_eq!(on_b.last().unwrap()["type"], "m.room.create", "{on_b:?}");
    assert_eq!(ids(&on_b), ids(&on_a));
    // Nothing more to fetch: paging again, a few at a time, reads the same from b.test.
    let backfill = json!({"room_id": room, "limit": 100});
    assert_eq!(
        roomserver(&b, "PerformBackfill", backfill.clone()).await,
        json!({"asked": false, "events": 0})
    );
    assert_eq!(ids(&history(&b, &bob, &room, 7).await), ids(&on_a));
    // Old history changes no state, and is not news; a new device's first sync still has
    // the whole state.
    assert_eq!(state_of_b().await, state_before);
    let (_, first) = b.get("/_matrix/client/v3/sync?timeout=0", Some(&bob)).await;
    let joined = &first["rooms"]["join"][&room];
    assert!(joined.to_string().contains("\"m.room.create\""), "{joined}");
    let (_, later) = b
        .get(
            &format!("/_matrix/client/v3/sync?timeout=0&since={since}"),
            Some(&bob),
        )
        .await;
    let timeline = later["rooms"]["join"][&room]["timeline"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(bodies(&timeline).is_empty(), "{later}");

    // A room made on b.test, which alice joins: nothing is missing, nothing is asked.
    let here = common::create(&b, &bob, json!({"preset": "public_chat"})).await;
    let (status, body) = a
        .post(
            &format!("/_matrix/client/v3/join/{}?via=b.test", enc(&here)),
            Some(&alice),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    say(&b, &bob, &here, "local history").await;
    let local = history(&b, &bob, &here, 3).await;
    assert_eq!(bodies(&local), ["local history"]);
    assert_eq!(local.last().unwrap()["type"], "m.room.create");
    assert_eq!(
        roomserver(
            &b,
            "PerformBackfill",
            json!({"room_id": here, "limit": 100})
        )
        .await,
        json!({"asked": false, "events": 0})
    );
    // alice's a.test joined it over federation: its history before her join is b.test's.
    let theirs = history(&a, &alice, &here, 100).await;
    assert_eq!(
        theirs.last().unwrap()["type"],
        "m.room.create",
        "{theirs:?}"
    );

    // History visibility applies to what came: in a room whose history only members see,
    // bob (who joins later) pages back past his join and reads none of it.
    let closed = common::create(
        &a,
        &alice,
        json!({"preset": "public_chat", "initial_state": [
            {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "joined"}}
        ]}),
    )
    .await;
    say(&a, &alice, &closed, "before bob").await;
    let (status, body) = b
        .post(
            &format!("/_matrix/client/v3/join/{}?via=a.test", enc(&closed)),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let read = history(&b, &bob, &closed, 100).await;
    assert!(bodies(&read).is_empty(), "{read:?}");
    assert_eq!(
        roomserver(
            &b,
            "PerformBackfill",
            json!({"room_id": closed, "limit": 100})
        )
        .await,
        json!({"asked": false, "events": 0}),
        "the history was fetched"
    );

    // A server that cannot be reached leaves the page as it is.
    let gone = common::create(&b, &bob, json!({"preset": "public_chat"})).await;
    say(&b, &bob, &gone, "unreachable history").await;
    let (status, body) = a
        .post(
            &format!("/_matrix/client/v3/join/{}?via=b.test", enc(&gone)),
            Some(&alice),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    b.stop().await;
    let (chunk, _) = page(&a, &alice, &gone, None, 50).await;
    assert_eq!(chunk[0]["sender"], "@alice:a.test", "{chunk:?}");
    assert!(bodies(&chunk).is_empty(), "{chunk:?}");
    // No server answered: the room is not asked for again at once (the next pages would
    // each wait for the same dead servers), though the history is still missing.
    assert_eq!(
        roomserver(&a, "PerformBackfill", json!({"room_id": gone, "limit": 50})).await,
        json!({"asked": false, "events": 0}),
        "asked again during the backoff"
    );
    a.stop().await;
}

scenarios!(
    a_gap_is_filled_from_the_state_at_it,
    joined_rooms_are_backfilled,
);
