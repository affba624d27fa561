//! The legacy endpoints end to end over HTTP: `/initialSync`, `/rooms/{roomId}/initialSync`,
//! `/events` (long polling, peeking) and `/events/{eventId}`, with their error paths, on both
//! databases, with the components in-process and behind the HTTP bridge.

mod common;

use common::{assert_error, create, enc, Backend, TestServer, Topology};
use serde_json::{json, Value};
use std::rc::Rc;
use std::time::{Duration, Instant};

const C: &str = "/_matrix/client/v3";
const R0: &str = "/_matrix/client/r0";

/// A public room whose history anyone may read (peeking).
async fn world_readable(s: &TestServer, token: &str) -> String {
    let hv = json!({"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "world_readable"}});
    create(
        s,
        token,
        json!({"preset": "public_chat", "initial_state": [hv]}),
    )
    .await
}

static TXN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

async fn send(s: &TestServer, token: &str, room: &str, body: &str) -> String {
    let txn = TXN.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let (st, v) = s
        .put(
            &format!("{C}/rooms/{room}/send/m.room.message/l{txn}"),
            Some(token),
            json!({"msgtype": "m.text", "body": body}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    v["event_id"].as_str().unwrap().to_owned()
}

async fn join(s: &TestServer, token: &str, room: &str) {
    let (st, v) = s
        .post(&format!("{C}/join/{room}"), Some(token), json!({}))
        .await;
    assert_eq!(st, 200, "{v}");
}

async fn leave(s: &TestServer, token: &str, room: &str) {
    let (st, v) = s
        .post(&format!("{C}/rooms/{room}/leave"), Some(token), json!({}))
        .await;
    assert_eq!(st, 200, "{v}");
}

async fn guest(s: &TestServer) -> String {
    let (st, v) = s
        .post(&format!("{C}/register?kind=guest"), None, json!({}))
        .await;
    assert_eq!(st, 200, "{v}");
    v["access_token"].as_str().unwrap().to_owned()
}

async fn get_ok(s: &TestServer, path: &str, token: &str) -> Value {
    let (st, v) = s.get(path, Some(token)).await;
    assert_eq!(st, 200, "GET {path}: {v}");
    v
}

fn bodies(events: &Value) -> Vec<&str> {
    events
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {events}"))
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .map(|e| e["content"]["body"].as_str().unwrap())
        .collect()
}

fn room_of<'a>(v: &'a Value, room: &str) -> Option<&'a Value> {
    v["rooms"]
        .as_array()
        .unwrap_or_else(|| panic!("no rooms in {v}"))
        .iter()
        .find(|r| r["room_id"] == room)
}

/// The chunk of a `/events` call, with its `end`.
async fn events(s: &TestServer, token: &str, query: &str) -> (Value, String) {
    let v = get_ok(s, &format!("{C}/events?{query}"), token).await;
    assert!(v["start"].is_string(), "{v}");
    (v["chunk"].clone(), v["end"].as_str().unwrap().to_owned())
}

async fn initial_sync_snapshots_every_room(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &["registration.guests=true"]).await;
    let (alice, tok, _) = s.register("alice", "pw").await;
    let (_bob, bob_tok, _) = s.register("bob", "pw").await;
    let hall = create(
        &s,
        &tok,
        json!({"preset": "public_chat", "name": "Hall", "visibility": "public"}),
    )
    .await;
    for body in ["one", "two", "three"] {
        send(&s, &tok, &hall, body).await;
    }
    let last = send(&s, &tok, &hall, "four").await;
    // Room and global account data, a tag, a receipt and presence.
    let user_path = format!("{C}/user/{}", enc(&alice));
    let (st, _) = s
        .put(
            &format!("{user_path}/rooms/{hall}/tags/u.work"),
            Some(&tok),
            json!({"order": 0.5}),
        )
        .await;
    assert_eq!(st, 200);
    let (st, _) = s
        .put(
            &format!("{user_path}/rooms/{hall}/account_data/org.example.room"),
            Some(&tok),
            json!({"r": 1}),
        )
        .await;
    assert_eq!(st, 200);
    let (st, _) = s
        .put(
            &format!("{user_path}/account_data/org.example.global"),
            Some(&tok),
            json!({"g": 2}),
        )
        .await;
    assert_eq!(st, 200);
    let (st, _) = s
        .post(
            &format!("{C}/rooms/{hall}/receipt/m.read/{}", enc(&last)),
            Some(&tok),
            json!({}),
        )
        .await;
    assert_eq!(st, 200);
    let (st, _) = s
        .put(
            &format!("{C}/presence/{}/status", enc(&alice)),
            Some(&tok),
            json!({"presence": "online", "status_msg": "here"}),
        )
        .await;
    assert_eq!(st, 200);
    // An invite from bob, and a room alice left.
    let invited = create(&s, &bob_tok, json!({"preset": "private_chat"})).await;
    let (st, _) = s
        .post(
            &format!("{C}/rooms/{invited}/invite"),
            Some(&bob_tok),
            json!({"user_id": alice}),
        )
        .await;
    assert_eq!(st, 200);
    let gone = create(&s, &tok, json!({"preset": "private_chat"})).await;
    send(&s, &tok, &gone, "before leaving").await;
    leave(&s, &tok, &gone).await;

    let v = get_ok(&s, &format!("{C}/initialSync?limit=2"), &tok).await;
    let end = v["end"].as_str().expect("end").to_owned();
    assert!(end.starts_with('s'), "{end}");
    let room = room_of(&v, &hall).expect("the joined room");
    assert_eq!(room["membership"], "join");
    assert_eq!(room["visibility"], "public");
    let chunk = &room["messages"]["chunk"];
    assert_eq!(bodies(chunk), ["three", "four"], "{room}");
    assert_eq!(
        chunk[1]["room_id"],
        hall.as_str(),
        "client format with room_id"
    );
    assert!(chunk[1].get("signatures").is_none() && chunk[1]["unsigned"]["age"].is_u64());
    assert_eq!(room["messages"]["end"], end.as_str());
    let state = room["state"].as_array().unwrap();
    for ty in [
        "m.room.create",
        "m.room.name",
        "m.room.member",
        "m.room.power_levels",
    ] {
        assert!(state.iter().any(|e| e["type"] == ty), "{ty} in {state:?}");
    }
    let acct = room["account_data"].as_array().unwrap();
    assert!(acct
        .iter()
        .any(|e| e["type"] == "m.tag" && e["content"]["tags"]["u.work"]["order"] == 0.5));
    assert!(acct
        .iter()
        .any(|e| e["type"] == "org.example.room" && e["content"]["r"] == 1));
    // The invite, with its inviter; the room left only with `archived`.
    let inv = room_of(&v, &invited).expect("the invite");
    assert_eq!(inv["membership"], "invite");
    assert_eq!(inv["visibility"], "private");
    assert!(inv["inviter"].as_str().unwrap().starts_with("@bob"));
    assert_eq!(inv["invite"]["content"]["membership"], "invite");
    assert!(inv.get("messages").is_none());
    assert!(
        room_of(&v, &gone).is_none(),
        "left rooms need archived=true"
    );
    // Global account data, presence and receipts at the top level (as Synapse).
    let global = v["account_data"].as_array().unwrap();
    assert!(global
        .iter()
        .any(|e| e["type"] == "org.example.global" && e["content"]["g"] == 2));
    let me = v["presence"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["content"]["user_id"] == alice.as_str())
        .unwrap_or_else(|| panic!("own presence in {v}"));
    assert_eq!(me["type"], "m.presence");
    assert_eq!(me["content"]["presence"], "online");
    assert_eq!(me["content"]["status_msg"], "here");
    let receipt = v["receipts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["room_id"] == hall.as_str())
        .unwrap_or_else(|| panic!("receipt in {v}"));
    assert!(receipt["content"][&last]["m.read"][&alice]["ts"].is_u64());

    // `start` pages back with /messages; `end` is a /sync token with nothing after it.
    let start = room["messages"]["start"].as_str().unwrap();
    let older = get_ok(
        &s,
        &format!("{C}/rooms/{hall}/messages?dir=b&limit=1&from={start}"),
        &tok,
    )
    .await;
    assert_eq!(bodies(&older["chunk"]), ["two"], "{older}");
    let after = get_ok(&s, &format!("{C}/sync?since={end}&timeout=0"), &tok).await;
    assert!(
        after["rooms"]["join"].as_object().unwrap().is_empty(),
        "{after}"
    );

    // With archived=true (and on r0) the room left is there, as of the leave.
    let v = get_ok(&s, &format!("{R0}/initialSync?archived=true"), &tok).await;
    let left = room_of(&v, &gone).expect("the room left");
    assert_eq!(left["membership"], "leave");
    let chunk = left["messages"]["chunk"].as_array().unwrap();
    assert_eq!(chunk.last().unwrap()["content"]["membership"], "leave");
    assert!(bodies(&left["messages"]["chunk"]).contains(&"before leaving"));
    assert!(left["state"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["type"] == "m.room.member" && e["content"]["membership"] == "leave"));
    assert_eq!(
        bodies(&room_of(&v, &hall).unwrap()["messages"]["chunk"]).len(),
        4,
        "the default limit is 10"
    );

    // Errors: no token, a bad token, bad parameters, guests.
    assert_error(
        &s.get(&format!("{C}/initialSync"), None).await,
        401,
        "M_MISSING_TOKEN",
    );
    assert_error(
        &s.get(&format!("{C}/initialSync"), Some("nope")).await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    assert_error(
        &s.get(&format!("{C}/initialSync?limit=-1"), Some(&tok))
            .await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &s.get(&format!("{C}/initialSync?archived=maybe"), Some(&tok))
            .await,
        400,
        "M_INVALID_PARAM",
    );
    let g = guest(&s).await;
    assert_error(
        &s.get(&format!("{C}/initialSync"), Some(&g)).await,
        403,
        "M_GUEST_ACCESS_FORBIDDEN",
    );
    s.stop().await;
}

async fn room_initial_sync_for_members_leavers_and_peekers(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &["registration.guests=true"]).await;
    let (alice, tok, _) = s.register("alice", "pw").await;
    let (bob, bob_tok, _) = s.register("bob", "pw").await;
    let (_carol, carol_tok, _) = s.register("carol", "pw").await;
    let room = create(&s, &tok, json!({"preset": "public_chat", "name": "Hall"})).await;
    join(&s, &bob_tok, &room).await;
    let hello = send(&s, &tok, &room, "hello").await;
    let (st, _) = s
        .post(
            &format!("{C}/rooms/{room}/receipt/m.read/{}", enc(&hello)),
            Some(&bob_tok),
            json!({}),
        )
        .await;
    assert_eq!(st, 200);
    // Alice's private receipt is hers alone.
    let (st, _) = s
        .post(
            &format!("{C}/rooms/{room}/receipt/m.read.private/{}", enc(&hello)),
            Some(&tok),
            json!({}),
        )
        .await;
    assert_eq!(st, 200);
    let (st, _) = s
        .put(
            &format!("{C}/presence/{}/status", enc(&alice)),
            Some(&tok),
            json!({"presence": "unavailable"}),
        )
        .await;
    assert_eq!(st, 200);

    let path = format!("{C}/rooms/{room}/initialSync");
    let v = get_ok(&s, &path, &bob_tok).await;
    assert_eq!(v["room_id"], room.as_str());
    assert_eq!(v["membership"], "join");
    assert_eq!(v["visibility"], "private");
    assert_eq!(bodies(&v["messages"]["chunk"]), ["hello"]);
    assert!(v["messages"]["start"].is_string() && v["messages"]["end"].is_string());
    assert!(v["state"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Hall"));
    let presence = v["presence"].as_array().unwrap();
    assert_eq!(presence.len(), 2, "both members: {presence:?}");
    let alice_p = presence
        .iter()
        .find(|p| p["content"]["user_id"] == alice.as_str())
        .unwrap();
    assert_eq!(alice_p["content"]["presence"], "unavailable");
    let receipts = v["receipts"].as_array().unwrap();
    assert_eq!(receipts.len(), 1, "{receipts:?}");
    assert!(receipts[0]["content"][&hello]["m.read"][&bob].is_object());
    assert!(
        receipts[0]["content"][&hello]
            .get("m.read.private")
            .is_none(),
        "alice's private receipt is hidden from bob"
    );
    let mine = get_ok(&s, &path, &tok).await;
    assert!(mine["receipts"][0]["content"][&hello]["m.read.private"][&alice].is_object());
    // limit, and the r0 path.
    send(&s, &tok, &room, "again").await;
    let v = get_ok(
        &s,
        &format!("{R0}/rooms/{room}/initialSync?limit=1"),
        &bob_tok,
    )
    .await;
    assert_eq!(bodies(&v["messages"]["chunk"]), ["again"]);

    // Bob leaves: he sees the room as of his leave, not what came after.
    leave(&s, &bob_tok, &room).await;
    send(&s, &tok, &room, "after bob").await;
    let v = get_ok(&s, &path, &bob_tok).await;
    assert_eq!(v["membership"], "leave");
    let chunk = v["messages"]["chunk"].as_array().unwrap();
    assert_eq!(chunk.last().unwrap()["state_key"], bob.as_str());
    assert!(!bodies(&v["messages"]["chunk"]).contains(&"after bob"));
    assert_eq!(v["presence"], json!([]));
    assert_eq!(v["receipts"], json!([]));

    // Carol was never in this (shared-history) room: 403.
    assert_error(&s.get(&path, Some(&carol_tok)).await, 403, "M_FORBIDDEN");
    // A world-readable room she may peek at: no membership in the answer.
    let open = world_readable(&s, &tok).await;
    send(&s, &tok, &open, "for all").await;
    let open_path = format!("{C}/rooms/{open}/initialSync");
    let v = get_ok(&s, &open_path, &carol_tok).await;
    assert!(v.get("membership").is_none(), "{v}");
    assert_eq!(bodies(&v["messages"]["chunk"]), ["for all"]);
    // Guests may call it too.
    let g = guest(&s).await;
    let v = get_ok(&s, &open_path, &g).await;
    assert_eq!(bodies(&v["messages"]["chunk"]), ["for all"]);
    assert_error(&s.get(&path, Some(&g)).await, 403, "M_FORBIDDEN");
    // Errors.
    assert_error(&s.get(&path, None).await, 401, "M_MISSING_TOKEN");
    assert_error(
        &s.get(&format!("{path}?limit=x"), Some(&tok)).await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &s.get(
            &format!("{C}/rooms/!nowhere:test.local/initialSync"),
            Some(&tok),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );
    s.stop().await;
}

async fn events_stream_long_polls_and_peeks(b: Backend, t: Topology) {
    let s = Rc::new(TestServer::start(b, t, &["registration.guests=true"]).await);
    let (alice, tok, _) = s.register("alice", "pw").await;
    let (bob, bob_tok, _) = s.register("bob", "pw").await;
    let (_carol, carol_tok, _) = s.register("carol", "pw").await;
    let room = create(&s, &tok, json!({"preset": "public_chat"})).await;
    join(&s, &bob_tok, &room).await;
    let end = get_ok(&s, &format!("{C}/initialSync"), &tok).await["end"]
        .as_str()
        .unwrap()
        .to_owned();

    // Nothing new: an empty chunk at once with timeout=0.
    let (chunk, same) = events(&s, &tok, &format!("from={end}&timeout=0")).await;
    assert!(
        chunk
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["type"] == "m.presence"),
        "only alice's own presence may be new: {chunk}"
    );
    let from = same;

    // A long poll that bob's message ends.
    let waiting = {
        let s = s.clone();
        let (tok, from) = (tok.clone(), from.clone());
        actix_web::rt::spawn(async move {
            let started = Instant::now();
            let got = events(&s, &tok, &format!("from={from}&timeout=20000")).await;
            (got, started.elapsed())
        })
    };
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    let sent = send(&s, &bob_tok, &room, "wake up").await;
    let ((chunk, next), waited) = waiting.await.unwrap();
    assert!(waited < Duration::from_secs(15), "woken, not timed out");
    let msg = chunk
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event_id"] == sent.as_str())
        .unwrap_or_else(|| panic!("the message in {chunk}"));
    assert_eq!(msg["room_id"], room.as_str());
    assert_eq!(msg["content"]["body"], "wake up");
    // `end` is a /sync token: the message is not given again.
    let v = get_ok(&s, &format!("{C}/sync?since={next}&timeout=0"), &tok).await;
    assert!(v["rooms"]["join"].get(&room).is_none(), "{v}");

    // Typing and receipts arrive as Synapse's stream gives them, with room_id.
    let (st, _) = s
        .put(
            &format!("{C}/rooms/{room}/typing/{}", enc(&bob)),
            Some(&bob_tok),
            json!({"typing": true, "timeout": 120000}),
        )
        .await;
    assert_eq!(st, 200);
    let (st, _) = s
        .post(
            &format!("{C}/rooms/{room}/receipt/m.read/{}", enc(&sent)),
            Some(&bob_tok),
            json!({}),
        )
        .await;
    assert_eq!(st, 200);
    let (chunk, next) = events(&s, &tok, &format!("from={next}&timeout=0")).await;
    let chunk = chunk.as_array().unwrap();
    let typing = chunk.iter().find(|e| e["type"] == "m.typing").unwrap();
    assert_eq!(typing["room_id"], room.as_str());
    assert_eq!(typing["content"]["user_ids"], json!([bob]));
    let receipt = chunk.iter().find(|e| e["type"] == "m.receipt").unwrap();
    assert!(receipt["content"][&sent]["m.read"][&bob]["ts"].is_u64());

    // `limit` bounds room events; the rest follow from `end`.
    for body in ["a", "b", "c"] {
        send(&s, &bob_tok, &room, body).await;
    }
    let (chunk, next) = events(&s, &tok, &format!("from={next}&timeout=0&limit=2")).await;
    assert_eq!(bodies(&chunk), ["a", "b"]);
    let (chunk, next) = events(&s, &tok, &format!("from={next}&timeout=0&limit=2")).await;
    assert_eq!(bodies(&chunk), ["c"]);

    // Nothing happens: the wait runs to its timeout, with an empty chunk.
    let started = Instant::now();
    let (chunk, _) = events(&s, &tok, &format!("from={next}&timeout=600")).await;
    assert!(started.elapsed() >= Duration::from_millis(550));
    assert_eq!(chunk, json!([]));

    // A join brings the joiner's presence (as Synapse), and the user's own invite arrives
    // although they are not in that room.
    let other = create(&s, &bob_tok, json!({"preset": "private_chat"})).await;
    let (st, _) = s
        .post(
            &format!("{C}/rooms/{other}/invite"),
            Some(&bob_tok),
            json!({"user_id": alice}),
        )
        .await;
    assert_eq!(st, 200);
    let (chunk, _) = events(&s, &tok, &format!("from={next}&timeout=0")).await;
    assert!(
        chunk
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["room_id"] == other.as_str()
                && e["type"] == "m.room.member"
                && e["content"]["membership"] == "invite"),
        "{chunk}"
    );

    // Peeking: carol reads a world-readable room she is not in, woken by its events.
    let open = world_readable(&s, &tok).await;
    let (_, peek_from) = events(&s, &carol_tok, &format!("room_id={open}&timeout=0")).await;
    let waiting = {
        let s = s.clone();
        let (carol_tok, open, peek_from) = (carol_tok.clone(), open.clone(), peek_from.clone());
        actix_web::rt::spawn(async move {
            let started = Instant::now();
            let got = events(
                &s,
                &carol_tok,
                &format!("room_id={open}&from={peek_from}&timeout=20000"),
            )
            .await;
            (got, started.elapsed())
        })
    };
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    send(&s, &tok, &open, "for peekers").await;
    let ((chunk, _), waited) = waiting.await.unwrap();
    assert!(waited < Duration::from_secs(15), "the peeker is woken");
    assert_eq!(bodies(&chunk), ["for peekers"]);
    // Not in a room that is not world-readable.
    assert_error(
        &s.get(
            &format!("{C}/events?room_id={room}&timeout=0"),
            Some(&carol_tok),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );
    // Guests: only with room_id (as Synapse), and then they may peek.
    let g = guest(&s).await;
    assert_error(
        &s.get(&format!("{C}/events?timeout=0"), Some(&g)).await,
        400,
        "M_UNKNOWN",
    );
    let v = get_ok(&s, &format!("{R0}/events?room_id={open}&timeout=0"), &g).await;
    assert!(v["end"].is_string(), "{v}");
    // Errors: tokens and parameters.
    assert_error(
        &s.get(&format!("{C}/events"), None).await,
        401,
        "M_MISSING_TOKEN",
    );
    assert_error(
        &s.get(&format!("{C}/events?from=bogus&timeout=0"), Some(&tok))
            .await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &s.get(&format!("{C}/events?timeout=soon"), Some(&tok)).await,
        400,
        "M_UNKNOWN",
    );
    Rc::try_unwrap(s).ok().unwrap().stop().await;
}

async fn single_events_by_id(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &["registration.guests=true"]).await;
    let (_alice, tok, _) = s.register("alice", "pw").await;
    let (_bob, bob_tok, _) = s.register("bob", "pw").await;
    let (_carol, carol_tok, _) = s.register("carol", "pw").await;
    let room = create(&s, &tok, json!({"preset": "public_chat"})).await;
    join(&s, &bob_tok, &room).await;
    let seen = send(&s, &tok, &room, "while bob was here").await;
    leave(&s, &bob_tok, &room).await;
    let unseen = send(&s, &tok, &room, "after bob left").await;
    let path = |id: &str| format!("{C}/events/{}", enc(id));

    let v = get_ok(&s, &path(&seen), &tok).await;
    assert_eq!(v["event_id"], seen.as_str());
    assert_eq!(v["room_id"], room.as_str());
    assert_eq!(v["content"]["body"], "while bob was here");
    assert!(
        v["unsigned"]["transaction_id"].is_string(),
        "the sender's own: {v}"
    );
    assert!(v.get("signatures").is_none() && v.get("hashes").is_none());
    // Bob sees what was sent while he was in the room, not after.
    assert_eq!(
        get_ok(&s, &path(&seen), &bob_tok).await["event_id"],
        seen.as_str()
    );
    assert!(get_ok(&s, &path(&seen), &bob_tok).await["unsigned"]
        .get("transaction_id")
        .is_none());
    assert_error(
        &s.get(&path(&unseen), Some(&bob_tok)).await,
        404,
        "M_NOT_FOUND",
    );
    // Carol never was in it.
    assert_error(
        &s.get(&path(&seen), Some(&carol_tok)).await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &s.get(&path("$unknown"), Some(&tok)).await,
        404,
        "M_NOT_FOUND",
    );
    // A world-readable room's events are anyone's to read; on r0 too.
    let open = world_readable(&s, &tok).await;
    let public = send(&s, &tok, &open, "open").await;
    let v = get_ok(&s, &format!("{R0}/events/{}", enc(&public)), &carol_tok).await;
    assert_eq!(v["content"]["body"], "open");
    // Not for guests (as Synapse), nor without a token.
    let g = guest(&s).await;
    assert_error(
        &s.get(&path(&public), Some(&g)).await,
        403,
        "M_GUEST_ACCESS_FORBIDDEN",
    );
    assert_error(&s.get(&path(&public), None).await, 401, "M_MISSING_TOKEN");
    s.stop().await;
}

scenarios!(
    initial_sync_snapshots_every_room,
    room_initial_sync_for_members_leavers_and_peekers,
    events_stream_long_polls_and_peeks,
    single_events_by_id,
);
