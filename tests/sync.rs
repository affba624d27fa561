//! The sync API end to end over HTTP: `/sync` (initial, incremental, long polling, filters,
//! invites, leaves), typing, receipts, read markers, presence, to-device messages, tags,
//! account data and the history endpoints, on both databases, with the components in-process
//! and behind the HTTP bridge.

mod common;

use common::{assert_error, create, enc, Backend, TestServer, Topology};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const C: &str = "/_matrix/client/v3";
const V1: &str = "/_matrix/client/v1";

static TXN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

async fn send(s: &TestServer, token: &str, room: &str, content: Value) -> String {
    send_type(s, token, room, "m.room.message", content).await
}

async fn send_type(s: &TestServer, token: &str, room: &str, ty: &str, content: Value) -> String {
    let txn = TXN.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let (st, v) = s
        .put(
            &format!("{C}/rooms/{room}/send/{ty}/t{txn}"),
            Some(token),
            content,
        )
        .await;
    assert_eq!(st, 200, "{v}");
    v["event_id"].as_str().unwrap().to_owned()
}

fn text(body: &str) -> Value {
    json!({"msgtype": "m.text", "body": body})
}

async fn sync(s: &TestServer, token: &str, query: &str) -> Value {
    let (st, v) = s.get(&format!("{C}/sync?{query}"), Some(token)).await;
    assert_eq!(st, 200, "sync?{query}: {v}");
    assert!(v["next_batch"].is_string(), "{v}");
    v
}

fn timeline<'a>(v: &'a Value, room: &str) -> &'a Vec<Value> {
    v["rooms"]["join"][room]["timeline"]["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no timeline for {room} in {v}"))
}

fn bodies(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .map(|e| e["content"]["body"].as_str().unwrap())
        .collect()
}

async fn initial_and_incremental_sync(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &[]).await;
    let (alice, tok, _) = s.register("alice", "pw").await;
    let (bob, bob_tok, _) = s.register("bob", "pw").await;
    let encryption = json!({"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}});
    let room = create(
        &s,
        &tok,
        json!({"preset": "public_chat", "name": "Hall", "initial_state": [encryption]}),
    )
    .await;
    let first = send(&s, &tok, &room, text("one")).await;
    send(&s, &tok, &room, text("two")).await;

    let v = sync(&s, &tok, "").await;
    let joined = &v["rooms"]["join"][&room];
    let events = timeline(&v, &room);
    assert_eq!(bodies(events), ["one", "two"]);
    assert_eq!(joined["timeline"]["limited"], false, "{joined}");
    // Client format, without room_id, with the sender's own transaction.
    let one = events
        .iter()
        .find(|e| e["event_id"] == first.as_str())
        .unwrap();
    assert!(one.get("room_id").is_none());
    assert!(one["unsigned"]["transaction_id"].is_string(), "{one}");
    assert!(one["unsigned"]["age"].is_u64());
    assert!(one.get("hashes").is_none() && one.get("signatures").is_none());
    // The whole room fits the default timeline: the creation events are in it.
    assert!(
        events.iter().any(|e| e["type"] == "m.room.create"),
        "{events:?}"
    );
    assert!(joined["state"]["events"].as_array().unwrap().is_empty());
    // With a smaller timeline, what precedes it is state.
    let small = enc(r#"{"room":{"timeline":{"limit":2}}}"#);
    let v2 = sync(&s, &tok, &format!("filter={small}")).await;
    let state = v2["rooms"]["join"][&room]["state"]["events"]
        .as_array()
        .unwrap();
    assert!(
        state.iter().any(|e| e["type"] == "m.room.create"),
        "{state:?}"
    );
    assert!(state.iter().any(|e| e["type"] == "m.room.name"));
    assert_eq!(joined["summary"]["m.joined_member_count"], 1);
    assert_eq!(joined["unread_notifications"]["notification_count"], 0);
    // No keyserver yet: no made-up one-time key counts.
    assert!(v.get("device_one_time_keys_count").is_none(), "{v}");
    let since = v["next_batch"].as_str().unwrap().to_owned();

    // Nothing new: an empty incremental sync with the same kind of token.
    let v = sync(&s, &tok, &format!("since={since}&timeout=0")).await;
    assert!(v["rooms"]["join"].as_object().unwrap().is_empty(), "{v}");

    // Bob joins and talks: alice sees it, without bob's transaction ID.
    let (st, _) = s
        .post(&format!("{C}/join/{room}"), Some(&bob_tok), json!({}))
        .await;
    assert_eq!(st, 200);
    send(&s, &bob_tok, &room, text("hi from bob")).await;
    let v = sync(&s, &tok, &format!("since={since}&timeout=0")).await;
    let events = timeline(&v, &room);
    assert!(events
        .iter()
        .any(|e| e["type"] == "m.room.member" && e["state_key"] == bob.as_str()));
    let hi = events
        .iter()
        .find(|e| e["type"] == "m.room.message")
        .unwrap();
    assert_eq!(hi["content"]["body"], "hi from bob");
    assert!(hi["unsigned"].get("transaction_id").is_none());
    assert_eq!(
        v["rooms"]["join"][&room]["summary"]["m.joined_member_count"],
        2
    );
    assert_eq!(
        v["rooms"]["join"][&room]["unread_notifications"]["notification_count"],
        1
    );
    assert!(v["device_lists"]["changed"]
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u == bob.as_str()));
    // Bob's first sync: the room with full state, including alice's membership.
    let bv = sync(&s, &bob_tok, "").await;
    let bstate = bv["rooms"]["join"][&room]["state"]["events"]
        .as_array()
        .unwrap();
    let btl = timeline(&bv, &room);
    assert!(
        bstate
            .iter()
            .chain(btl)
            .any(|e| e["type"] == "m.room.member" && e["state_key"] == alice.as_str()),
        "{bv}"
    );

    // A limited timeline: prev_batch continues with /messages.
    for i in 0..5 {
        send(&s, &tok, &room, text(&format!("m{i}"))).await;
    }
    let filter = enc(r#"{"room":{"timeline":{"limit":2}}}"#);
    let v = sync(&s, &tok, &format!("filter={filter}")).await;
    let j = &v["rooms"]["join"][&room];
    assert_eq!(bodies(timeline(&v, &room)), ["m3", "m4"]);
    assert_eq!(j["timeline"]["limited"], true);
    let prev = j["timeline"]["prev_batch"].as_str().unwrap();
    let (st, page) = s
        .get(
            &format!("{C}/rooms/{room}/messages?dir=b&limit=3&from={prev}"),
            Some(&tok),
        )
        .await;
    assert_eq!(st, 200, "{page}");
    assert_eq!(
        bodies(page["chunk"].as_array().unwrap()),
        ["m2", "m1", "m0"]
    );

    // Filters: stored by ID, types, event_fields, federation format.
    let (st, f) = s
        .post(
            &format!("{C}/user/{}/filter", enc(&alice)),
            Some(&tok),
            json!({"room": {"timeline": {"types": ["m.room.member"]}}, "event_fields": ["type", "content.membership"]}),
        )
        .await;
    assert_eq!(st, 200);
    let v = sync(
        &s,
        &tok,
        &format!("filter={}", f["filter_id"].as_str().unwrap()),
    )
    .await;
    let events = timeline(&v, &room);
    assert!(!events.is_empty());
    for e in events {
        assert_eq!(e["type"], "m.room.member");
        assert!(
            e.get("sender").is_none() && e["content"].get("displayname").is_none(),
            "{e}"
        );
    }
    let fed = enc(r#"{"event_format":"federation","room":{"timeline":{"limit":1}}}"#);
    let v = sync(&s, &tok, &format!("filter={fed}")).await;
    assert!(timeline(&v, &room)[0]["auth_events"].is_array());
    let not_rooms = enc(&format!(r#"{{"room":{{"not_rooms":["{room}"]}}}}"#));
    let v = sync(&s, &tok, &format!("filter={not_rooms}")).await;
    assert!(v["rooms"]["join"].get(&room).is_none());

    // Errors.
    assert_error(
        &s.get(&format!("{C}/sync?since=garbage"), Some(&tok)).await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &s.get(&format!("{C}/sync?filter=12345"), Some(&tok)).await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &s.get(&format!("{C}/sync"), None).await,
        401,
        "M_MISSING_TOKEN",
    );
    assert_error(
        &s.get(&format!("{C}/sync?set_presence=dancing"), Some(&tok))
            .await,
        400,
        "M_INVALID_PARAM",
    );
    s.stop().await;
}

async fn long_polls_wake_only_for_their_users(b: Backend, t: Topology) {
    let s = std::rc::Rc::new(TestServer::start(b, t, &[]).await);
    let (_, tok, _) = s.register("alice", "pw").await;
    let (_, bob_tok, _) = s.register("bob", "pw").await;
    let (_, carol_tok, _) = s.register("carol", "pw").await;
    let room = create(&s, &tok, json!({"preset": "public_chat"})).await;
    // No body at all, as matrix-nio sends it: read as `{}`.
    let (st, v) = s
        .call_raw(
            "POST",
            &format!("{C}/join/{room}"),
            Some(&bob_tok),
            Vec::new(),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let since = sync(&s, &tok, "").await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    let carol_since = sync(&s, &carol_tok, "").await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();

    // Alice waits up to 20 s; bob's message ends the wait.
    let waiting = {
        let s = s.clone();
        let (tok, since) = (tok.clone(), since.clone());
        actix_web::rt::spawn(async move {
            let started = Instant::now();
            let v = sync(&s, &tok, &format!("since={since}&timeout=20000")).await;
            (v, started.elapsed())
        })
    };
    actix_web::rt::time::sleep(Duration::from_millis(200)).await;
    let sent = send(&s, &bob_tok, &room, text("wake up")).await;
    let (v, waited) = waiting.await.unwrap();
    assert!(
        waited < Duration::from_secs(15),
        "woken by the message, not the timeout"
    );
    assert!(
        timeline(&v, &room)
            .iter()
            .any(|e| e["event_id"] == sent.as_str()),
        "{v}"
    );

    // Carol is in no room with them: her long poll runs to its timeout, empty.
    let started = Instant::now();
    let v = sync(&s, &carol_tok, &format!("since={carol_since}&timeout=600")).await;
    assert!(started.elapsed() >= Duration::from_millis(550));
    assert!(v["rooms"]["join"].as_object().unwrap().is_empty(), "{v}");
    std::rc::Rc::try_unwrap(s).ok().unwrap().stop().await;
}

async fn invites_leaves_and_ignored_users(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &[]).await;
    let (alice, tok, _) = s.register("alice", "pw").await;
    let (bob, bob_tok, _) = s.register("bob", "pw").await;
    let (carol, carol_tok, _) = s.register("carol", "pw").await;
    let room = create(
        &s,
        &tok,
        json!({"preset": "private_chat", "name": "Secret"}),
    )
    .await;
    let bob_since = sync(&s, &bob_tok, "").await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();

    // An invite: stripped state with the room's name and bob's member event.
    let (st, _) = s
        .post(
            &format!("{C}/rooms/{room}/invite"),
            Some(&tok),
            json!({"user_id": bob}),
        )
        .await;
    assert_eq!(st, 200);
    let v = sync(&s, &bob_tok, &format!("since={bob_since}&timeout=5000")).await;
    let invite = &v["rooms"]["invite"][&room]["invite_state"]["events"];
    let events = invite.as_array().unwrap_or_else(|| panic!("{v}"));
    assert!(events
        .iter()
        .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Secret"));
    assert!(events.iter().any(|e| e["type"] == "m.room.member"
        && e["state_key"] == bob.as_str()
        && e["content"]["membership"] == "invite"));
    assert!(
        events.iter().all(|e| e.get("event_id").is_none()),
        "stripped"
    );
    let bob_since = v["next_batch"].as_str().unwrap().to_owned();

    // Joining moves it to join, with full state. As Synapse, a newly joined room's timeline
    // holds its latest events, history before the token included: this small room fits in
    // it whole, so its creation is in the timeline and `state` holds what precedes it.
    s.post(&format!("{C}/join/{room}"), Some(&bob_tok), json!({}))
        .await;
    let v = sync(&s, &bob_tok, &format!("since={bob_since}&timeout=5000")).await;
    let state = v["rooms"]["join"][&room]["state"]["events"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"));
    assert!(state
        .iter()
        .chain(timeline(&v, &room))
        .any(|e| e["type"] == "m.room.create"));
    let bob_since = v["next_batch"].as_str().unwrap().to_owned();

    // Leaving: the room is in leave, its timeline ends with the leave.
    send(&s, &tok, &room, text("before you go")).await;
    s.post(
        &format!("{C}/rooms/{room}/leave"),
        Some(&bob_tok),
        json!({}),
    )
    .await;
    send(&s, &tok, &room, text("after bob left")).await;
    let v = sync(&s, &bob_tok, &format!("since={bob_since}&timeout=5000")).await;
    let left = &v["rooms"]["leave"][&room]["timeline"]["events"];
    let left = left.as_array().unwrap_or_else(|| panic!("{v}"));
    assert_eq!(left.last().unwrap()["content"]["membership"], "leave");
    assert!(!bodies(left).contains(&"after bob left"));
    assert!(v["rooms"]["join"].get(&room).is_none());
    // An initial sync shows left rooms only with include_leave.
    let v = sync(&s, &bob_tok, "").await;
    assert!(v["rooms"]["leave"].get(&room).is_none());
    let inc = enc(r#"{"room":{"include_leave":true}}"#);
    let v = sync(&s, &bob_tok, &format!("filter={inc}")).await;
    assert!(v["rooms"]["leave"].get(&room).is_some(), "{v}");

    // Carol ignores alice: alice's invite and messages stay hidden from her.
    let (st, _) = s
        .put(
            &format!("{C}/user/{}/account_data/m.ignored_user_list", enc(&carol)),
            Some(&carol_tok),
            json!({"ignored_users": {alice.clone(): {}}}),
        )
        .await;
    assert_eq!(st, 200);
    let v = sync(&s, &carol_tok, "").await;
    assert!(v["account_data"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["type"] == "m.ignored_user_list"));
    let room2 = create(&s, &tok, json!({"preset": "public_chat"})).await;
    s.post(
        &format!("{C}/rooms/{room2}/invite"),
        Some(&tok),
        json!({"user_id": carol}),
    )
    .await;
    let v = sync(&s, &carol_tok, "").await;
    assert!(
        v["rooms"]["invite"].get(&room2).is_none(),
        "invite from an ignored user: {v}"
    );
    s.post(&format!("{C}/join/{room2}"), Some(&carol_tok), json!({}))
        .await;
    send(&s, &tok, &room2, text("ignored")).await;
    let v = sync(&s, &carol_tok, "").await;
    assert!(!bodies(timeline(&v, &room2)).contains(&"ignored"));
    s.stop().await;
}

async fn typing_receipts_and_read_markers(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &[]).await;
    let (alice, tok, _) = s.register("alice", "pw").await;
    let (bob, bob_tok, _) = s.register("bob", "pw").await;
    let (_, carol_tok, _) = s.register("carol", "pw").await;
    let room = create(&s, &tok, json!({"preset": "public_chat"})).await;
    s.post(&format!("{C}/join/{room}"), Some(&bob_tok), json!({}))
        .await;
    let ev = send(&s, &tok, &room, text("read me")).await;
    let since = sync(&s, &bob_tok, "").await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();

    // Typing reaches bob; stopping clears it.
    let typing = format!("{C}/rooms/{room}/typing/{}", enc(&alice));
    let (st, _) = s
        .put(
            &typing,
            Some(&tok),
            json!({"typing": true, "timeout": 30000}),
        )
        .await;
    assert_eq!(st, 200);
    let v = sync(&s, &bob_tok, &format!("since={since}&timeout=5000")).await;
    let eph = v["rooms"]["join"][&room]["ephemeral"]["events"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"));
    let t = eph.iter().find(|e| e["type"] == "m.typing").unwrap();
    assert_eq!(t["content"]["user_ids"], json!([alice]));
    let since = v["next_batch"].as_str().unwrap().to_owned();
    s.put(&typing, Some(&tok), json!({"typing": false})).await;
    let v = sync(&s, &bob_tok, &format!("since={since}&timeout=5000")).await;
    let eph = v["rooms"]["join"][&room]["ephemeral"]["events"]
        .as_array()
        .unwrap();
    assert_eq!(
        eph.iter().find(|e| e["type"] == "m.typing").unwrap()["content"]["user_ids"],
        json!([])
    );
    let since = v["next_batch"].as_str().unwrap().to_owned();
    // A short timeout expires by itself.
    s.put(&typing, Some(&tok), json!({"typing": true, "timeout": 300}))
        .await;
    let v = sync(&s, &bob_tok, &format!("since={since}&timeout=5000")).await;
    let since = v["next_batch"].as_str().unwrap().to_owned();
    let v = sync(&s, &bob_tok, &format!("since={since}&timeout=5000")).await;
    let eph = v["rooms"]["join"][&room]["ephemeral"]["events"]
        .as_array()
        .unwrap_or_else(|| panic!("expired typing: {v}"));
    assert_eq!(
        eph.iter().find(|e| e["type"] == "m.typing").unwrap()["content"]["user_ids"],
        json!([])
    );
    let since = v["next_batch"].as_str().unwrap().to_owned();
    // Errors: someone else's typing (400, as Synapse), a room one is not in.
    assert_error(
        &s.put(
            &format!("{C}/rooms/{room}/typing/{}", enc(&bob)),
            Some(&tok),
            json!({"typing": true, "timeout": 1000}),
        )
        .await,
        400,
        "M_FORBIDDEN",
    );
    assert_error(
        &s.put(
            &format!("{C}/rooms/{room}/typing/@carol:test.local"),
            Some(&carol_tok),
            json!({"typing": true, "timeout": 1000}),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &s.put(&typing, Some(&tok), json!({"typing": true})).await,
        400,
        "M_BAD_JSON",
    );

    // Unread counts: bob has one unread message until his receipt.
    let v = sync(&s, &bob_tok, "").await;
    assert_eq!(
        v["rooms"]["join"][&room]["unread_notifications"]["notification_count"],
        1
    );
    let (st, _) = s
        .post(
            &format!("{C}/rooms/{room}/receipt/m.read/{ev}"),
            Some(&bob_tok),
            json!({}),
        )
        .await;
    assert_eq!(st, 200);
    let v = sync(&s, &tok, "").await;
    let eph = v["rooms"]["join"][&room]["ephemeral"]["events"]
        .as_array()
        .unwrap();
    let r = eph
        .iter()
        .find(|e| e["type"] == "m.receipt")
        .unwrap_or_else(|| panic!("{v}"));
    assert!(r["content"][&ev]["m.read"][&bob]["ts"].is_u64(), "{r}");
    let v = sync(&s, &bob_tok, &format!("since={since}&timeout=5000")).await;
    assert_eq!(
        v["rooms"]["join"][&room]["unread_notifications"]["notification_count"], 0,
        "{v}"
    );
    // Private receipts: only their user sees them.
    let ev2 = send(&s, &tok, &room, text("private")).await;
    s.post(
        &format!("{C}/rooms/{room}/receipt/m.read.private/{ev2}"),
        Some(&bob_tok),
        json!({}),
    )
    .await;
    let v = sync(&s, &tok, "").await;
    let eph = v["rooms"]["join"][&room]["ephemeral"]["events"]
        .as_array()
        .unwrap();
    let r = eph.iter().find(|e| e["type"] == "m.receipt").unwrap();
    assert!(
        r["content"].get(&ev2).is_none(),
        "alice must not see bob's private receipt: {r}"
    );
    let v = sync(&s, &bob_tok, "").await;
    let eph = v["rooms"]["join"][&room]["ephemeral"]["events"]
        .as_array()
        .unwrap();
    let r = eph.iter().find(|e| e["type"] == "m.receipt").unwrap();
    assert!(
        r["content"][&ev2]["m.read.private"][&bob].is_object(),
        "{r}"
    );
    // Threaded receipts carry their thread.
    let (st, _) = s
        .post(
            &format!("{C}/rooms/{room}/receipt/m.read/{ev2}"),
            Some(&bob_tok),
            json!({"thread_id": "main"}),
        )
        .await;
    assert_eq!(st, 200);
    // Receipt errors.
    assert_error(
        &s.post(
            &format!("{C}/rooms/{room}/receipt/m.read/$nope"),
            Some(&bob_tok),
            json!({}),
        )
        .await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &s.post(
            &format!("{C}/rooms/{room}/receipt/m.read/{ev}"),
            Some(&carol_tok),
            json!({}),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &s.post(
            &format!("{C}/rooms/{room}/receipt/m.fully_read/{ev}"),
            Some(&bob_tok),
            json!({"thread_id": "main"}),
        )
        .await,
        400,
        "M_INVALID_PARAM",
    );

    // Read markers: m.fully_read lands in room account data, m.read as a receipt.
    let (st, _) = s
        .post(
            &format!("{C}/rooms/{room}/read_markers"),
            Some(&bob_tok),
            json!({"m.fully_read": ev, "m.read": ev2}),
        )
        .await;
    assert_eq!(st, 200);
    let v = sync(&s, &bob_tok, "").await;
    let acct = v["rooms"]["join"][&room]["account_data"]["events"]
        .as_array()
        .unwrap();
    assert!(
        acct.iter()
            .any(|e| e["type"] == "m.fully_read" && e["content"]["event_id"] == ev.as_str()),
        "{acct:?}"
    );
    assert_error(
        &s.post(
            &format!("{C}/rooms/{room}/read_markers"),
            Some(&bob_tok),
            json!({"m.fully_read": "$unknown"}),
        )
        .await,
        404,
        "M_NOT_FOUND",
    );
    s.stop().await;
}

async fn presence_to_device_tags_and_account_data(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &[]).await;
    let (alice, tok, _) = s.register("alice", "pw").await;
    let (bob, bob_tok, bob_dev) = s.register("bob", "pw").await;
    let (carol, carol_tok, _) = s.register("carol", "pw").await;
    let room = create(&s, &tok, json!({"preset": "public_chat"})).await;
    s.post(&format!("{C}/join/{room}"), Some(&bob_tok), json!({}))
        .await;
    let since = sync(&s, &bob_tok, "").await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();

    // Presence: set, read by a roommate, seen in sync; hidden from strangers.
    let p = format!("{C}/presence/{}/status", enc(&alice));
    let (st, _) = s
        .put(
            &p,
            Some(&tok),
            json!({"presence": "unavailable", "status_msg": "lunch"}),
        )
        .await;
    assert_eq!(st, 200);
    let (st, v) = s.get(&p, Some(&bob_tok)).await;
    assert_eq!(st, 200);
    assert_eq!(v["presence"], "unavailable");
    assert_eq!(v["status_msg"], "lunch");
    assert_error(&s.get(&p, Some(&carol_tok)).await, 403, "M_FORBIDDEN");
    // Someone who never set a presence reads as offline.
    let (st, v) = s
        .get(
            &format!("{C}/presence/{}/status", enc(&carol)),
            Some(&carol_tok),
        )
        .await;
    assert_eq!((st, v["presence"].as_str()), (200, Some("offline")), "{v}");
    assert_error(
        &s.put(&p, Some(&bob_tok), json!({"presence": "online"}))
            .await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &s.put(&p, Some(&tok), json!({"presence": "dancing"})).await,
        400,
        "M_INVALID_PARAM",
    );
    let v = sync(
        &s,
        &bob_tok,
        &format!("since={since}&timeout=5000&set_presence=offline"),
    )
    .await;
    let pres = v["presence"]["events"].as_array().unwrap();
    assert!(
        pres.iter()
            .any(|e| e["sender"] == alice.as_str() && e["content"]["presence"] == "unavailable"),
        "{v}"
    );
    let since = v["next_batch"].as_str().unwrap().to_owned();

    // To-device: delivered once, deleted when acknowledged, a retried txn is not resent.
    let body = json!({"messages": {bob.clone(): {bob_dev.clone(): {"secret": 1}}}});
    let (st, _) = s
        .put(
            &format!("{C}/sendToDevice/m.test/txn1"),
            Some(&tok),
            body.clone(),
        )
        .await;
    assert_eq!(st, 200);
    let (st, _) = s
        .put(&format!("{C}/sendToDevice/m.test/txn1"), Some(&tok), body)
        .await;
    assert_eq!(st, 200);
    let v = sync(
        &s,
        &bob_tok,
        &format!("since={since}&timeout=5000&set_presence=offline"),
    )
    .await;
    let td = v["to_device"]["events"].as_array().unwrap();
    assert_eq!(td.len(), 1, "{v}");
    assert_eq!(td[0]["sender"], alice.as_str());
    assert_eq!(td[0]["type"], "m.test");
    assert_eq!(td[0]["content"]["secret"], 1);
    let next = v["next_batch"].as_str().unwrap().to_owned();
    // Not acknowledged yet: a sync from the old token gets it again.
    let again = sync(&s, &bob_tok, &format!("since={since}&set_presence=offline")).await;
    assert_eq!(again["to_device"]["events"].as_array().unwrap().len(), 1);
    let v = sync(&s, &bob_tok, &format!("since={next}&set_presence=offline")).await;
    assert!(v["to_device"]["events"].as_array().unwrap().is_empty());
    let gone = sync(&s, &bob_tok, &format!("since={since}&set_presence=offline")).await;
    assert!(
        gone["to_device"]["events"].as_array().unwrap().is_empty(),
        "deleted once acknowledged"
    );
    // To all of a user's devices.
    let (_, login) = s.login("bob", "pw").await;
    let tok2 = login["access_token"].as_str().unwrap();
    let (st, _) = s
        .put(
            &format!("{C}/sendToDevice/m.test/txn2"),
            Some(&tok),
            json!({"messages": {bob.clone(): {"*": {"all": true}}}}),
        )
        .await;
    assert_eq!(st, 200);
    for t in [bob_tok.as_str(), tok2] {
        let v = sync(&s, t, "set_presence=offline").await;
        assert!(
            v["to_device"]["events"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["content"]["all"] == true),
            "{v}"
        );
    }
    assert_error(
        &s.put(
            &format!("{C}/sendToDevice/m.test/txn3"),
            Some(&tok),
            json!({"messages": {bob.clone(): {"X": "not an object"}}}),
        )
        .await,
        400,
        "M_BAD_JSON",
    );

    // Tags: set, read, listed in sync as m.tag, deleted.
    let tags = format!("{C}/user/{}/rooms/{room}/tags", enc(&bob));
    let (st, _) = s
        .put(
            &format!("{tags}/m.favourite"),
            Some(&bob_tok),
            json!({"order": 0.25}),
        )
        .await;
    assert_eq!(st, 200);
    s.put(&format!("{tags}/u.work"), Some(&bob_tok), json!({}))
        .await;
    let (st, v) = s.get(&tags, Some(&bob_tok)).await;
    assert_eq!(st, 200);
    assert_eq!(v["tags"]["m.favourite"]["order"], 0.25);
    assert!(v["tags"]["u.work"].is_object());
    let v = sync(&s, &bob_tok, "set_presence=offline").await;
    let acct = v["rooms"]["join"][&room]["account_data"]["events"]
        .as_array()
        .unwrap();
    assert!(
        acct.iter()
            .any(|e| e["type"] == "m.tag" && e["content"]["tags"]["u.work"].is_object()),
        "{acct:?}"
    );
    let (st, _) = s
        .call("DELETE", &format!("{tags}/u.work"), Some(&bob_tok), None)
        .await;
    assert_eq!(st, 200);
    let (_, v) = s.get(&tags, Some(&bob_tok)).await;
    assert!(v["tags"].get("u.work").is_none());
    assert_error(&s.get(&tags, Some(&tok)).await, 403, "M_FORBIDDEN");
    assert_error(
        &s.put(
            &format!("{C}/user/{}/rooms/{room}/tags/x", enc(&carol)),
            Some(&bob_tok),
            json!({}),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );

    // Global account data reaches sync.
    s.put(
        &format!("{C}/user/{}/account_data/org.example.x", enc(&bob)),
        Some(&bob_tok),
        json!({"a": 1}),
    )
    .await;
    let v = sync(&s, &bob_tok, "set_presence=offline").await;
    assert!(v["account_data"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["type"] == "org.example.x" && e["content"]["a"] == 1));
    s.stop().await;
}

async fn history_relations_and_threads(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &[]).await;
    let (alice, tok, _) = s.register("alice", "pw").await;
    let (_, bob_tok, _) = s.register("bob", "pw").await;
    let (_, carol_tok, _) = s.register("carol", "pw").await;
    let room = create(&s, &tok, json!({"preset": "public_chat"})).await;
    s.post(&format!("{C}/join/{room}"), Some(&bob_tok), json!({}))
        .await;
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(send(&s, &tok, &room, text(&format!("h{i}"))).await);
    }

    // /messages both ways, with tokens that continue.
    let msgs = format!("{C}/rooms/{room}/messages");
    let (st, p1) = s
        .get(&format!("{msgs}?dir=b&limit=2"), Some(&bob_tok))
        .await;
    assert_eq!(st, 200, "{p1}");
    assert_eq!(bodies(p1["chunk"].as_array().unwrap()), ["h5", "h4"]);
    let end = p1["end"].as_str().unwrap();
    let (_, p2) = s
        .get(&format!("{msgs}?dir=b&limit=2&from={end}"), Some(&bob_tok))
        .await;
    assert_eq!(bodies(p2["chunk"].as_array().unwrap()), ["h3", "h2"]);
    let (_, f) = s
        .get(&format!("{msgs}?dir=f&limit=100"), Some(&bob_tok))
        .await;
    let all = bodies(f["chunk"].as_array().unwrap());
    assert_eq!(all, ["h0", "h1", "h2", "h3", "h4", "h5"]);
    // As Synapse: a page with events has an `end`; from there, an empty page has none.
    let f_end = f["end"].as_str().expect("end with events").to_owned();
    let (_, past) = s
        .get(
            &format!("{msgs}?dir=f&limit=100&from={f_end}"),
            Some(&bob_tok),
        )
        .await;
    assert_eq!(past["chunk"], json!([]), "{past}");
    assert!(past.get("end").is_none(), "no further events: {past}");
    // `to` stops a page: backwards from the newest to the token before h2.
    let (_, h2) = s
        .get(&format!("{msgs}?dir=b&limit=4"), Some(&bob_tok))
        .await;
    let stop = h2["end"].as_str().unwrap();
    let (_, upto) = s
        .get(&format!("{msgs}?dir=f&limit=100&to={stop}"), Some(&bob_tok))
        .await;
    assert!(
        !bodies(upto["chunk"].as_array().unwrap()).contains(&"h2"),
        "{upto}"
    );
    assert!(
        bodies(upto["chunk"].as_array().unwrap()).contains(&"h1"),
        "{upto}"
    );
    let only_members = enc(r#"{"types":["m.room.member"]}"#);
    let (_, m) = s
        .get(
            &format!("{msgs}?dir=b&filter={only_members}"),
            Some(&bob_tok),
        )
        .await;
    assert!(m["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["type"] == "m.room.member"));
    let lazy = enc(r#"{"lazy_load_members":true}"#);
    let (_, m) = s
        .get(
            &format!("{msgs}?dir=b&limit=1&filter={lazy}"),
            Some(&bob_tok),
        )
        .await;
    assert!(
        m["state"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["state_key"] == alice.as_str()),
        "{m}"
    );
    assert_error(
        &s.get(&format!("{msgs}?dir=b"), Some(&carol_tok)).await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &s.get(&format!("{msgs}?dir=b&from=nonsense"), Some(&bob_tok))
            .await,
        400,
        "M_INVALID_PARAM",
    );

    // /context around h3.
    let (st, c) = s
        .get(
            &format!("{C}/rooms/{room}/context/{}?limit=4", ids[3]),
            Some(&bob_tok),
        )
        .await;
    assert_eq!(st, 200, "{c}");
    assert_eq!(c["event"]["content"]["body"], "h3");
    assert_eq!(bodies(c["events_before"].as_array().unwrap()), ["h2", "h1"]);
    assert_eq!(bodies(c["events_after"].as_array().unwrap()), ["h4", "h5"]);
    assert!(c["start"].is_string() && c["end"].is_string());
    assert_error(
        &s.get(
            &format!("{C}/rooms/{room}/context/$missing"),
            Some(&bob_tok),
        )
        .await,
        404,
        "M_NOT_FOUND",
    );

    // Relations: an edit, two reactions, a reference, a thread.
    let root = ids[0].clone();
    let edit = send(&s, &tok, &room, json!({"msgtype": "m.text", "body": "* h0 edited", "m.new_content": {"msgtype": "m.text", "body": "h0 edited"}, "m.relates_to": {"rel_type": "m.replace", "event_id": root}})).await;
    send_type(
        &s,
        &bob_tok,
        &room,
        "m.reaction",
        json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": root, "key": "👍"}}),
    )
    .await;
    send_type(
        &s,
        &tok,
        &room,
        "m.reaction",
        json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": root, "key": "🎉"}}),
    )
    .await;
    send(&s, &bob_tok, &room, json!({"msgtype": "m.text", "body": "ref", "m.relates_to": {"rel_type": "m.reference", "event_id": root}})).await;
    let reply = send(&s, &bob_tok, &room, json!({"msgtype": "m.text", "body": "in thread", "m.relates_to": {"rel_type": "m.thread", "event_id": root}})).await;
    send_type(
        &s,
        &tok,
        &room,
        "m.reaction",
        json!({"m.relates_to": {"rel_type": "m.annotation", "event_id": reply, "key": "👀"}}),
    )
    .await;

    let rel = format!("{V1}/rooms/{room}/relations/{root}");
    let (st, r) = s.get(&rel, Some(&bob_tok)).await;
    assert_eq!(st, 200, "{r}");
    assert_eq!(r["chunk"].as_array().unwrap().len(), 5);
    let (_, r) = s.get(&format!("{rel}/m.annotation"), Some(&bob_tok)).await;
    assert_eq!(r["chunk"].as_array().unwrap().len(), 2);
    let (_, r) = s
        .get(
            &format!("{rel}/m.annotation/m.reaction?limit=1"),
            Some(&bob_tok),
        )
        .await;
    assert_eq!(r["chunk"].as_array().unwrap().len(), 1);
    let next = r["next_batch"].as_str().unwrap();
    let (_, r2) = s
        .get(
            &format!("{rel}/m.annotation/m.reaction?limit=1&from={next}"),
            Some(&bob_tok),
        )
        .await;
    assert_eq!(r2["chunk"].as_array().unwrap().len(), 1);
    assert_ne!(r["chunk"][0]["event_id"], r2["chunk"][0]["event_id"]);
    assert!(r2.get("next_batch").is_none());
    let (_, fw) = s.get(&format!("{rel}?dir=f&limit=1"), Some(&bob_tok)).await;
    assert_eq!(fw["chunk"][0]["event_id"], edit.as_str(), "oldest first");
    let (_, deep) = s
        .get(&format!("{rel}/m.annotation?recurse=true"), Some(&bob_tok))
        .await;
    assert_eq!(
        deep["chunk"].as_array().unwrap().len(),
        3,
        "the thread reply's reaction too: {deep}"
    );
    assert!(deep["recursion_depth"].is_u64());
    assert_error(
        &s.get(
            &format!("{V1}/rooms/{room}/relations/$missing"),
            Some(&bob_tok),
        )
        .await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(&s.get(&rel, Some(&carol_tok)).await, 404, "M_NOT_FOUND");

    // Bundled aggregations on the root as /messages serves it.
    let first_message = enc(r#"{"types":["m.room.message"]}"#);
    let (_, f) = s
        .get(
            &format!("{msgs}?dir=f&limit=1&filter={first_message}"),
            Some(&bob_tok),
        )
        .await;
    let served = f["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event_id"] == root.as_str())
        .unwrap_or_else(|| panic!("{f}"));
    let rels = &served["unsigned"]["m.relations"];
    assert_eq!(rels["m.replace"]["event_id"], edit.as_str(), "{served}");
    assert_eq!(rels["m.reference"]["chunk"].as_array().unwrap().len(), 1);
    assert_eq!(rels["m.thread"]["count"], 1);
    assert_eq!(rels["m.thread"]["latest_event"]["event_id"], reply.as_str());
    assert_eq!(rels["m.thread"]["current_user_participated"], true);

    // Threads: listed, and by participation.
    let (st, th) = s
        .get(&format!("{V1}/rooms/{room}/threads"), Some(&bob_tok))
        .await;
    assert_eq!(st, 200, "{th}");
    assert_eq!(th["chunk"][0]["event_id"], root.as_str());
    // A second thread, newer: pages of one, newest activity first.
    let root2 = ids[1].clone();
    send(&s, &tok, &room, json!({"msgtype": "m.text", "body": "t2", "m.relates_to": {"rel_type": "m.thread", "event_id": root2}})).await;
    let (_, p1) = s
        .get(
            &format!("{V1}/rooms/{room}/threads?limit=1"),
            Some(&bob_tok),
        )
        .await;
    assert_eq!(p1["chunk"][0]["event_id"], root2.as_str(), "{p1}");
    let next = p1["next_batch"].as_str().unwrap();
    let (_, p2) = s
        .get(
            &format!("{V1}/rooms/{room}/threads?limit=1&from={next}"),
            Some(&bob_tok),
        )
        .await;
    assert_eq!(p2["chunk"][0]["event_id"], root.as_str(), "{p2}");
    assert!(p2.get("next_batch").is_none(), "{p2}");
    let (_, th) = s
        .get(
            &format!("{V1}/rooms/{room}/threads?include=participated"),
            Some(&carol_tok),
        )
        .await;
    assert!(th.is_object());
    s.post(&format!("{C}/join/{room}"), Some(&carol_tok), json!({}))
        .await;
    let (_, th) = s
        .get(
            &format!("{V1}/rooms/{room}/threads?include=participated"),
            Some(&carol_tok),
        )
        .await;
    assert!(
        th["chunk"].as_array().unwrap().is_empty(),
        "carol took no part: {th}"
    );

    // A redaction removes the relation and redacts the served event.
    let (st, _) = s
        .put(
            &format!("{C}/rooms/{room}/redact/{edit}/r1"),
            Some(&tok),
            json!({}),
        )
        .await;
    assert_eq!(st, 200);
    let (_, r) = s.get(&format!("{rel}/m.replace"), Some(&bob_tok)).await;
    assert!(r["chunk"].as_array().unwrap().is_empty(), "{r}");
    let (_, c) = s
        .get(
            &format!("{C}/rooms/{room}/context/{edit}?limit=0"),
            Some(&bob_tok),
        )
        .await;
    assert!(c["event"]["content"].as_object().unwrap().is_empty(), "{c}");
    assert!(c["event"]["unsigned"]["redacted_because"].is_object());

    // History visibility "joined": a later member sees nothing from before joining.
    let secret = create(&s, &tok, json!({"preset": "public_chat", "initial_state": [{"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "joined"}}]})).await;
    send(&s, &tok, &secret, text("before carol")).await;
    s.post(&format!("{C}/join/{secret}"), Some(&carol_tok), json!({}))
        .await;
    send(&s, &tok, &secret, text("after carol")).await;
    let (_, m) = s
        .get(
            &format!("{C}/rooms/{secret}/messages?dir=b&limit=50"),
            Some(&carol_tok),
        )
        .await;
    let seen = bodies(m["chunk"].as_array().unwrap());
    assert_eq!(seen, ["after carol"], "{m}");
    let v = sync(&s, &carol_tok, "").await;
    assert_eq!(bodies(timeline(&v, &secret)), ["after carol"]);
    s.stop().await;
}

async fn tokens_survive_a_restart(b: Backend, t: Topology) {
    let mut s = TestServer::start(b, t, &[]).await;
    let (_, tok, _) = s.register("alice", "pw").await;
    let room = create(&s, &tok, json!({})).await;
    send(&s, &tok, &room, text("before")).await;
    let since = sync(&s, &tok, "").await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    s.restart().await;
    send(&s, &tok, &room, text("after")).await;
    let v = sync(&s, &tok, &format!("since={since}&timeout=5000")).await;
    assert_eq!(bodies(timeline(&v, &room)), ["after"], "{v}");
    s.stop().await;
}

scenarios!(
    initial_and_incremental_sync,
    long_polls_wake_only_for_their_users,
    invites_leaves_and_ignored_users,
    typing_receipts_and_read_markers,
    presence_to_device_tags_and_account_data,
    history_relations_and_threads,
    tokens_survive_a_restart,
    filters_lazy_members_knocks_and_thread_counts,
);

async fn filters_lazy_members_knocks_and_thread_counts(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &[]).await;
    let (alice, tok, _) = s.register("alice", "pw").await;
    let (bob, bob_tok, _) = s.register("bob", "pw").await;
    let (carol, carol_tok, _) = s.register("carol", "pw").await;
    let room = create(&s, &tok, json!({"preset": "public_chat"})).await;
    for t in [&bob_tok, &carol_tok] {
        let (st, _) = s
            .post(&format!("{C}/join/{room}"), Some(t), json!({}))
            .await;
        assert_eq!(st, 200);
    }
    for _ in 0..3 {
        send(&s, &bob_tok, &room, text("from bob")).await;
    }

    // Lazy loading: of the members, only the timeline's senders (and the user) are sent...
    let lazy = enc(r#"{"room":{"timeline":{"limit":2},"state":{"lazy_load_members":true}}}"#);
    let v = sync(&s, &tok, &format!("filter={lazy}")).await;
    let members: Vec<&str> = v["rooms"]["join"][&room]["state"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "m.room.member")
        .map(|e| e["state_key"].as_str().unwrap())
        .collect();
    assert!(members.contains(&bob.as_str()), "{members:?}");
    assert!(
        !members.contains(&carol.as_str()),
        "carol sent nothing: {members:?}"
    );
    let since = v["next_batch"].as_str().unwrap().to_owned();
    // ...and a new sender's member event comes with their first message, once.
    send(&s, &carol_tok, &room, text("from carol")).await;
    let v = sync(&s, &tok, &format!("filter={lazy}&since={since}")).await;
    let state = v["rooms"]["join"][&room]["state"]["events"]
        .as_array()
        .unwrap();
    assert!(
        state.iter().any(|e| e["state_key"] == carol.as_str()),
        "{v}"
    );
    let since = v["next_batch"].as_str().unwrap().to_owned();
    send(&s, &carol_tok, &room, text("again")).await;
    let v = sync(&s, &tok, &format!("filter={lazy}&since={since}")).await;
    let state = v["rooms"]["join"][&room]["state"]["events"]
        .as_array()
        .unwrap();
    assert!(
        !state.iter().any(|e| e["state_key"] == carol.as_str()),
        "already sent: {v}"
    );
    // include_redundant_members sends it every time.
    let redundant = enc(
        r#"{"room":{"timeline":{"limit":2},"state":{"lazy_load_members":true,"include_redundant_members":true}}}"#,
    );
    send(&s, &carol_tok, &room, text("once more")).await;
    let v = sync(&s, &tok, &format!("filter={redundant}&since={since}")).await;
    let state = v["rooms"]["join"][&room]["state"]["events"]
        .as_array()
        .unwrap();
    assert!(
        state.iter().any(|e| e["state_key"] == carol.as_str()),
        "{v}"
    );

    // senders / not_senders, and the presence and account_data filters.
    let only_carol = enc(&format!(
        r#"{{"room":{{"timeline":{{"senders":["{carol}"]}}}}}}"#
    ));
    let v = sync(&s, &tok, &format!("filter={only_carol}")).await;
    assert!(timeline(&v, &room)
        .iter()
        .all(|e| e["sender"] == carol.as_str()));
    let not_bob = enc(&format!(
        r#"{{"room":{{"timeline":{{"not_senders":["{bob}"]}}}}}}"#
    ));
    let v = sync(&s, &tok, &format!("filter={not_bob}")).await;
    assert!(timeline(&v, &room)
        .iter()
        .all(|e| e["sender"] != bob.as_str()));
    s.put(
        &format!("{C}/user/{}/account_data/org.example.a", enc(&alice)),
        Some(&tok),
        json!({}),
    )
    .await;
    let quiet = enc(r#"{"presence":{"types":[]},"account_data":{"not_types":["org.example.*"]}}"#);
    let v = sync(&s, &tok, &format!("filter={quiet}")).await;
    assert!(
        v["presence"]["events"].as_array().unwrap().is_empty(),
        "{v}"
    );
    assert!(!v["account_data"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["type"] == "org.example.a"));
    sync(&s, &bob_tok, "").await; // bob comes online
    let v = sync(&s, &tok, "").await;
    assert!(
        v["presence"]["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["sender"] == bob.as_str()),
        "{v}"
    );

    // Thread notifications counted apart with unread_thread_notifications.
    let root = send(&s, &tok, &room, text("root")).await;
    send(&s, &bob_tok, &room, json!({"msgtype": "m.text", "body": "in thread", "m.relates_to": {"rel_type": "m.thread", "event_id": root}})).await;
    let threads = enc(r#"{"room":{"timeline":{"unread_thread_notifications":true}}}"#);
    let v = sync(&s, &tok, &format!("filter={threads}")).await;
    let j = &v["rooms"]["join"][&room];
    assert_eq!(
        j["unread_thread_notifications"][&root]["notification_count"], 1,
        "{j}"
    );

    // A timeline filter that hides state changes: they come in `state` instead.
    let only_messages = enc(r#"{"room":{"timeline":{"types":["m.room.message"]}}}"#);
    let since = sync(&s, &tok, &format!("filter={only_messages}")).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    s.put(
        &format!("{C}/rooms/{room}/state/m.room.name/"),
        Some(&tok),
        json!({"name": "Renamed"}),
    )
    .await;
    send(&s, &tok, &room, text("after the rename")).await;
    let v = sync(&s, &tok, &format!("filter={only_messages}&since={since}")).await;
    let j = &v["rooms"]["join"][&room];
    assert_eq!(bodies(timeline(&v, &room)), ["after the rename"]);
    let state = j["state"]["events"].as_array().unwrap();
    assert!(
        state
            .iter()
            .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Renamed"),
        "{j}"
    );

    // Knocking: the knock section with stripped state.
    let knockable = create(&s, &tok, json!({"room_version": "12", "initial_state": [{"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}], "name": "Knock here"})).await;
    let (st, v) = s
        .post(
            &format!("{C}/knock/{knockable}"),
            Some(&carol_tok),
            json!({"reason": "let me in"}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let v = sync(&s, &carol_tok, "").await;
    let ks = v["rooms"]["knock"][&knockable]["knock_state"]["events"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"));
    assert!(ks
        .iter()
        .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Knock here"));
    assert!(ks
        .iter()
        .any(|e| e["type"] == "m.room.member" && e["content"]["membership"] == "knock"));
    s.stop().await;
}
