//! `/sync` as Synapse answers it, where the spec leaves room or clients rely on it: newly
//! joined rooms, gapped incremental syncs, state events under private history, room
//! summaries, ignored users, rooms joined and left within one sync window, display-name
//! changes, the federation event format and presence of new room-mates. On both databases,
//! with the components in-process and behind the HTTP bridge.

mod common;

use common::{create, enc, Backend, TestServer, Topology};
use serde_json::{json, Value};

const C: &str = "/_matrix/client/v3";

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

async fn put_state(s: &TestServer, token: &str, room: &str, ty: &str, key: &str, content: Value) {
    let (st, v) = s
        .put(
            &format!("{C}/rooms/{room}/state/{ty}/{}", enc(key)),
            Some(token),
            content,
        )
        .await;
    assert_eq!(st, 200, "{v}");
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

async fn invite(s: &TestServer, token: &str, room: &str, user: &str) {
    let (st, v) = s
        .post(
            &format!("{C}/rooms/{room}/invite"),
            Some(token),
            json!({"user_id": user}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
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

fn next(v: &Value) -> String {
    v["next_batch"].as_str().unwrap().to_owned()
}

fn events<'a>(v: &'a Value, section: &str, room: &str, part: &str) -> &'a Vec<Value> {
    v["rooms"][section][room][part]["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no {section}.{room}.{part} in {v}"))
}

fn bodies(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .map(|e| e["content"]["body"].as_str().unwrap())
        .collect()
}

fn has(events: &[Value], ty: &str, key: &str) -> bool {
    events
        .iter()
        .any(|e| e["type"] == ty && e["state_key"] == key)
}

fn member<'a>(events: &'a [Value], user: &str) -> Option<&'a Value> {
    events
        .iter()
        .rev()
        .find(|e| e["type"] == "m.room.member" && e["state_key"] == user)
}

/// (Item 1) A room joined since the token: its latest events (history before the token
/// included), `limited` with a `prev_batch` that pages on, and the state before the
/// timeline, so state and timeline together are the whole room state.
async fn newly_joined_room_is_limited_with_full_state(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &[]).await;
    let (alice, tok, _) = s.register("alice", "pw").await;
    let (bob, bob_tok, _) = s.register("bob", "pw").await;
    let room = create(&s, &tok, json!({"preset": "public_chat", "name": "Hall"})).await;
    for i in 0..12 {
        send(&s, &tok, &room, text(&format!("m{i}"))).await;
    }
    let since = next(&sync(&s, &bob_tok, "").await);
    join(&s, &bob_tok, &room).await;

    let small = enc(r#"{"room":{"timeline":{"limit":3}}}"#);
    let v = sync(&s, &bob_tok, &format!("since={since}&filter={small}")).await;
    let j = &v["rooms"]["join"][&room];
    assert_eq!(j["timeline"]["limited"], true, "{j}");
    let tl = events(&v, "join", &room, "timeline");
    assert_eq!(bodies(tl), ["m10", "m11"], "history before the token: {j}");
    assert_eq!(
        member(tl, &bob).unwrap()["content"]["membership"],
        "join",
        "{j}"
    );
    let state = events(&v, "join", &room, "state");
    for (ty, key) in [
        ("m.room.create", ""),
        ("m.room.name", ""),
        ("m.room.power_levels", ""),
        ("m.room.join_rules", ""),
        ("m.room.history_visibility", ""),
        ("m.room.member", alice.as_str()),
    ] {
        assert!(has(state, ty, key), "{ty} {key} in {j}");
    }
    assert!(
        !has(state, "m.room.member", &bob),
        "bob's join is in the timeline, not before it: {j}"
    );
    // State and timeline together: the whole current state.
    let (st, current) = s
        .get(&format!("{C}/rooms/{room}/state"), Some(&bob_tok))
        .await;
    assert_eq!(st, 200);
    for e in current.as_array().unwrap() {
        let ty = e["type"].as_str().unwrap();
        let key = e["state_key"].as_str().unwrap();
        assert!(has(state, ty, key) || has(tl, ty, key), "{ty} {key}: {j}");
    }
    // prev_batch pages on to the events before the timeline.
    let prev = j["timeline"]["prev_batch"].as_str().unwrap();
    let (st, page) = s
        .get(
            &format!("{C}/rooms/{room}/messages?dir=b&limit=2&from={prev}"),
            Some(&bob_tok),
        )
        .await;
    assert_eq!(st, 200, "{page}");
    assert_eq!(bodies(page["chunk"].as_array().unwrap()), ["m9", "m8"]);

    // With the default limit too, the room does not start at the join.
    let since = next(&sync(&s, &tok, "").await);
    let (carol, carol_tok, _) = s.register("carol", "pw").await;
    let carol_since = next(&sync(&s, &carol_tok, "").await);
    join(&s, &carol_tok, &room).await;
    let v = sync(&s, &carol_tok, &format!("since={carol_since}")).await;
    let j = &v["rooms"]["join"][&room];
    assert_eq!(j["timeline"]["limited"], true, "{j}");
    assert_eq!(events(&v, "join", &room, "timeline").len(), 10, "{j}");
    // Alice, who was there all along, just sees carol join.
    let v = sync(&s, &tok, &format!("since={since}")).await;
    let j = &v["rooms"]["join"][&room];
    assert_eq!(j["timeline"]["limited"], false, "{j}");
    assert!(member(events(&v, "join", &room, "timeline"), &carol).is_some());
    assert!(events(&v, "join", &room, "state").is_empty(), "{j}");
    s.stop().await;
}

/// (Item 2) A gapped incremental sync: the state carries every piece of state changed in the
/// gap (its latest value), leaves included; with lazy-loaded members too, where the
/// members of the timeline's senders come even when their join was in the gap.
async fn gapped_sync_has_the_state_of_the_gap(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &[]).await;
    let (_, tok, _) = s.register("alice", "pw").await;
    let (_, bob_tok, _) = s.register("bob", "pw").await;
    let (carol, carol_tok, _) = s.register("carol", "pw").await;
    let (dave, dave_tok, _) = s.register("dave", "pw").await;
    let room = create(&s, &tok, json!({"preset": "public_chat", "name": "Start"})).await;
    join(&s, &bob_tok, &room).await;
    let limit2 = enc(r#"{"room":{"timeline":{"limit":2}}}"#);
    let lazy = enc(r#"{"room":{"timeline":{"limit":2},"state":{"lazy_load_members":true}}}"#);
    let since = next(&sync(&s, &tok, &format!("filter={limit2}")).await);
    // A second device of alice's syncs with lazy-loaded members.
    let (st, login) = s.login("alice", "pw").await;
    assert_eq!(st, 200);
    let tok2 = login["access_token"].as_str().unwrap().to_owned();
    let since2 = next(&sync(&s, &tok2, &format!("filter={lazy}")).await);

    // The gap.
    put_state(&s, &tok, &room, "m.room.name", "", json!({"name": "One"})).await;
    put_state(&s, &tok, &room, "m.room.name", "", json!({"name": "Two"})).await;
    put_state(&s, &tok, &room, "m.room.topic", "", json!({"topic": "T"})).await;
    join(&s, &carol_tok, &room).await;
    send(&s, &carol_tok, &room, text("carol was here")).await;
    leave(&s, &carol_tok, &room).await;
    join(&s, &dave_tok, &room).await;
    for i in 0..3 {
        send(&s, &bob_tok, &room, text(&format!("gap {i}"))).await;
    }
    // The timeline.
    send(&s, &dave_tok, &room, text("hello from dave")).await;
    send(&s, &bob_tok, &room, text("last")).await;

    for (token, since, filter, lazy) in [
        (&tok, &since, &limit2, false),
        (&tok2, &since2, &lazy, true),
    ] {
        let v = sync(&s, token, &format!("since={since}&filter={filter}")).await;
        let j = &v["rooms"]["join"][&room];
        assert_eq!(j["timeline"]["limited"], true, "lazy {lazy}: {j}");
        assert_eq!(
            bodies(events(&v, "join", &room, "timeline")),
            ["hello from dave", "last"]
        );
        let state = events(&v, "join", &room, "state");
        let names: Vec<&Value> = state
            .iter()
            .filter(|e| e["type"] == "m.room.name")
            .collect();
        assert_eq!(names.len(), 1, "lazy {lazy}: {j}");
        assert_eq!(names[0]["content"]["name"], "Two");
        assert!(
            state
                .iter()
                .any(|e| e["type"] == "m.room.topic" && e["content"]["topic"] == "T"),
            "lazy {lazy}: {j}"
        );
        assert_eq!(
            member(state, &dave).map(|e| &e["content"]["membership"]),
            Some(&json!("join")),
            "the sender's join was in the gap; lazy {lazy}: {j}"
        );
        assert_eq!(
            member(state, &carol).map(|e| &e["content"]["membership"]),
            Some(&json!("leave")),
            "carol's leave, lazy {lazy}: {j}"
        );
    }
    s.stop().await;
}

/// (Item 3) Under `joined` or `invited` history, a member sees the room's current state events
/// in the timeline (as Synapse's `filter_events_for_client` with the current state always
/// included), state events sent after they joined among them, but no messages from before.
async fn private_history_keeps_current_state_in_the_timeline(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &[]).await;
    let (_, tok, _) = s.register("alice", "pw").await;
    let (bob, bob_tok, _) = s.register("bob", "pw").await;
    for visibility in ["joined", "invited"] {
        let hv = json!({"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": visibility}});
        let room = create(
            &s,
            &tok,
            json!({"preset": "private_chat", "initial_state": [hv]}),
        )
        .await;
        send(&s, &tok, &room, text("before the invite")).await;
        // State from before bob was there: one piece that stays current, one replaced later.
        put_state(
            &s,
            &tok,
            &room,
            "org.example.early",
            "",
            json!({"stays": true}),
        )
        .await;
        put_state(&s, &tok, &room, "m.room.name", "", json!({"name": "Early"})).await;
        invite(&s, &tok, &room, &bob).await;
        send(&s, &tok, &room, text("while invited")).await;
        join(&s, &bob_tok, &room).await;
        let since = next(&sync(&s, &bob_tok, "").await);
        put_state(
            &s,
            &tok,
            &room,
            "m.room.topic",
            "",
            json!({"topic": "after"}),
        )
        .await;
        send(&s, &tok, &room, text("after the join")).await;
        // Bob's own display-name change moves his membership on: what came between his
        // join and it is still his to see.
        let (st, _) = s
            .put(
                &format!("{C}/profile/{}/displayname", enc(&bob)),
                Some(&bob_tok),
                json!({"displayname": "Bobby"}),
            )
            .await;
        assert_eq!(st, 200);
        put_state(&s, &tok, &room, "m.room.name", "", json!({"name": "Later"})).await;

        let wide = enc(r#"{"room":{"timeline":{"limit":50}}}"#);
        let v = sync(&s, &bob_tok, &format!("filter={wide}")).await;
        let tl = events(&v, "join", &room, "timeline");
        assert!(has(tl, "m.room.topic", ""), "{visibility}: {tl:?}");
        assert!(has(tl, "m.room.name", ""), "{visibility}: {tl:?}");
        assert!(
            has(tl, "m.room.create", ""),
            "current state: {visibility}: {tl:?}"
        );
        assert!(
            has(tl, "org.example.early", ""),
            "current state from before the join: {visibility}: {tl:?}"
        );
        assert!(
            !tl.iter().any(|e| e["content"]["name"] == "Early"),
            "replaced state from before the invite stays hidden: {visibility}: {tl:?}"
        );
        assert!(
            has(tl, "m.room.history_visibility", ""),
            "{visibility}: {tl:?}"
        );
        let expected: &[&str] = if visibility == "invited" {
            &["while invited", "after the join"]
        } else {
            &["after the join"]
        };
        assert_eq!(bodies(tl), expected, "{visibility}");
        // Incremental: the state events since the token are in the timeline.
        let v = sync(&s, &bob_tok, &format!("since={since}&filter={wide}")).await;
        let tl = events(&v, "join", &room, "timeline");
        assert!(has(tl, "m.room.topic", ""), "{visibility}: {tl:?}");
        assert!(has(tl, "m.room.name", ""), "{visibility}: {tl:?}");
        assert_eq!(bodies(tl), ["after the join"], "{visibility}");
    }
    s.stop().await;
}

/// (Item 4) `m.heroes` only for rooms with neither a name nor a canonical alias (joined members
/// first, then invited ones); the member counts always.
async fn summary_heroes_only_for_unnamed_rooms(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &[]).await;
    let (_, tok, _) = s.register("alice", "pw").await;
    let (bob, bob_tok, _) = s.register("bob", "pw").await;
    let (carol, _, _) = s.register("carol", "pw").await;
    let (_, dave_tok, _) = s.register("dave", "pw").await;
    let room = create(&s, &tok, json!({"preset": "public_chat"})).await;
    invite(&s, &tok, &room, &carol).await;
    join(&s, &bob_tok, &room).await;
    let v = sync(&s, &tok, "").await;
    let summary = &v["rooms"]["join"][&room]["summary"];
    assert_eq!(summary["m.heroes"], json!([bob, carol]), "{summary}");
    assert_eq!(summary["m.joined_member_count"], 2);
    assert_eq!(summary["m.invited_member_count"], 1);

    put_state(&s, &tok, &room, "m.room.name", "", json!({"name": "Named"})).await;
    let since = next(&v);
    join(&s, &dave_tok, &room).await;
    let v = sync(&s, &tok, &format!("since={since}")).await;
    let summary = &v["rooms"]["join"][&room]["summary"];
    assert!(summary.get("m.heroes").is_none(), "{summary}");
    assert_eq!(summary["m.joined_member_count"], 3, "{summary}");
    assert_eq!(summary["m.invited_member_count"], 1, "{summary}");
    let v = sync(&s, &tok, "").await;
    assert!(
        v["rooms"]["join"][&room]["summary"]
            .get("m.heroes")
            .is_none(),
        "{v}"
    );

    // An empty name names nothing: the heroes are back.
    let since = next(&v);
    put_state(&s, &tok, &room, "m.room.name", "", json!({"name": ""})).await;
    let v = sync(&s, &tok, &format!("since={since}")).await;
    let heroes = &v["rooms"]["join"][&room]["summary"]["m.heroes"];
    assert_eq!(heroes.as_array().map(Vec::len), Some(3), "{v}");

    // A canonical alias, without a name: no heroes.
    let aliased = create(
        &s,
        &tok,
        json!({"preset": "public_chat", "room_alias_name": "aliased"}),
    )
    .await;
    join(&s, &bob_tok, &aliased).await;
    let v = sync(&s, &tok, "").await;
    let summary = &v["rooms"]["join"][&aliased]["summary"];
    assert!(summary.get("m.heroes").is_none(), "{summary}");
    assert_eq!(summary["m.joined_member_count"], 2);
    s.stop().await;
}

/// (Item 5) Ignoring a user hides their messages in rooms already joined from the next sync on;
/// a room with nothing left once filters and the ignore list are applied is not in the
/// incremental sync at all.
async fn ignored_users_and_empty_rooms(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &[]).await;
    let (alice, tok, _) = s.register("alice", "pw").await;
    let (bob, bob_tok, _) = s.register("bob", "pw").await;
    let (_, carol_tok, _) = s.register("carol", "pw").await;
    let room = create(&s, &tok, json!({"preset": "public_chat"})).await;
    join(&s, &bob_tok, &room).await;
    join(&s, &carol_tok, &room).await;
    send(&s, &bob_tok, &room, text("before ignoring")).await;
    let since = next(&sync(&s, &tok, "").await);
    let (st, _) = s
        .put(
            &format!("{C}/user/{}/account_data/m.ignored_user_list", enc(&alice)),
            Some(&tok),
            json!({"ignored_users": {bob.clone(): {}}}),
        )
        .await;
    assert_eq!(st, 200);
    let v = sync(&s, &tok, &format!("since={since}")).await;
    assert!(v["account_data"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["type"] == "m.ignored_user_list"));
    let since = next(&v);

    send(&s, &bob_tok, &room, text("ignored")).await;
    let v = sync(&s, &tok, &format!("since={since}&timeout=0")).await;
    assert!(
        v["rooms"]["join"].get(&room).is_none(),
        "no empty room object: {v}"
    );
    // Bob's state events still show (only messages are hidden).
    let (st, _) = s
        .put(
            &format!("{C}/profile/{}/displayname", enc(&bob)),
            Some(&bob_tok),
            json!({"displayname": "Still Bob"}),
        )
        .await;
    assert_eq!(st, 200);
    let v = sync(&s, &tok, &format!("since={since}&timeout=0")).await;
    let tl = events(&v, "join", &room, "timeline");
    assert!(has(tl, "m.room.member", &bob), "{v}");
    assert!(bodies(tl).is_empty(), "{v}");
    // A full sync shows none of bob's messages, the earlier one included.
    let v = sync(&s, &tok, "").await;
    let tl = events(&v, "join", &room, "timeline");
    assert!(
        tl.iter()
            .all(|e| e["type"] != "m.room.message" || e["sender"] != bob.as_str()),
        "{v}"
    );
    let since = next(&v);

    // A timeline filter that leaves nothing of what happened: no room either.
    send_type(&s, &carol_tok, &room, "org.example.ping", json!({})).await;
    let only_messages = enc(r#"{"room":{"timeline":{"types":["m.room.message"]}}}"#);
    let v = sync(
        &s,
        &tok,
        &format!("since={since}&timeout=0&filter={only_messages}"),
    )
    .await;
    assert!(v["rooms"]["join"].get(&room).is_none(), "{v}");
    let v = sync(&s, &tok, &format!("since={since}&timeout=0")).await;
    assert_eq!(
        events(&v, "join", &room, "timeline")[0]["type"],
        "org.example.ping"
    );
    s.stop().await;
}

/// (Item 6) A room joined and left between the token and now is in `leave` with its state and
/// timeline, as a newly joined room would be.
async fn joined_and_left_within_one_window(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &[]).await;
    let (alice, tok, _) = s.register("alice", "pw").await;
    let (bob, bob_tok, _) = s.register("bob", "pw").await;
    let room = create(&s, &tok, json!({"preset": "public_chat", "name": "Brief"})).await;
    for i in 0..12 {
        send(&s, &tok, &room, text(&format!("before bob {i}"))).await;
    }
    let since = next(&sync(&s, &bob_tok, "").await);
    join(&s, &bob_tok, &room).await;
    send(&s, &tok, &room, text("while bob was here")).await;
    leave(&s, &bob_tok, &room).await;
    send(&s, &tok, &room, text("after bob left")).await;

    let v = sync(&s, &bob_tok, &format!("since={since}")).await;
    assert!(v["rooms"]["join"].get(&room).is_none(), "{v}");
    let l = &v["rooms"]["leave"][&room];
    let tl = events(&v, "leave", &room, "timeline");
    let mine: Vec<&Value> = tl
        .iter()
        .filter(|e| e["type"] == "m.room.member" && e["state_key"] == bob.as_str())
        .collect();
    assert_eq!(mine.len(), 2, "{l}");
    assert_eq!(mine[0]["content"]["membership"], "join");
    assert_eq!(mine[1]["content"]["membership"], "leave");
    assert_eq!(tl.last().unwrap()["content"]["membership"], "leave");
    let b = bodies(tl);
    assert!(b.contains(&"while bob was here"), "{l}");
    assert!(!b.contains(&"after bob left"), "{l}");
    let state = events(&v, "leave", &room, "state");
    let mut all: Vec<Value> = state.clone();
    all.extend(tl.iter().cloned());
    for (ty, key) in [
        ("m.room.create", ""),
        ("m.room.name", ""),
        ("m.room.power_levels", ""),
        ("m.room.join_rules", ""),
        ("m.room.member", alice.as_str()),
    ] {
        assert!(has(&all, ty, key), "{ty} {key} in {l}");
    }
    for (ty, key) in [("m.room.create", ""), ("m.room.name", "")] {
        assert!(
            has(state, ty, key),
            "state before the timeline: {ty} in {l}"
        );
    }
    assert_eq!(l["timeline"]["limited"], true, "{l}");

    // Left without having joined in the window (joined before it): only what is new.
    let since = next(&v);
    join(&s, &bob_tok, &room).await;
    let since_joined = next(&sync(&s, &bob_tok, &format!("since={since}")).await);
    leave(&s, &bob_tok, &room).await;
    let v = sync(&s, &bob_tok, &format!("since={since_joined}")).await;
    let tl = events(&v, "leave", &room, "timeline");
    assert_eq!(tl.len(), 1, "{v}");
    assert!(events(&v, "leave", &room, "state").is_empty(), "{v}");
    s.stop().await;
}

/// (Item 7) A display-name change is a member event in the timeline, not a full state sync,
/// whoever's it is.
async fn display_name_change_is_not_full_state(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &[]).await;
    let (alice, tok, _) = s.register("alice", "pw").await;
    let (bob, bob_tok, _) = s.register("bob", "pw").await;
    let room = create(&s, &tok, json!({"preset": "public_chat", "name": "Names"})).await;
    join(&s, &bob_tok, &room).await;
    for _ in 0..3 {
        send(&s, &tok, &room, text("filler")).await;
    }
    for (who, who_tok, name) in [(&bob, &bob_tok, "Robert"), (&alice, &tok, "Alicia")] {
        let since = next(&sync(&s, &tok, "").await);
        let (st, _) = s
            .put(
                &format!("{C}/profile/{}/displayname", enc(who)),
                Some(who_tok),
                json!({"displayname": name}),
            )
            .await;
        assert_eq!(st, 200);
        let v = sync(&s, &tok, &format!("since={since}")).await;
        let j = &v["rooms"]["join"][&room];
        assert!(events(&v, "join", &room, "state").is_empty(), "{who}: {j}");
        assert_eq!(j["timeline"]["limited"], false, "{who}: {j}");
        let tl = events(&v, "join", &room, "timeline");
        assert_eq!(tl.len(), 1, "{who}: {j}");
        assert_eq!(member(tl, who).unwrap()["content"]["displayname"], name);
    }
    s.stop().await;
}

/// (Item 8) `event_format: federation`: events as the roomserver stored them, `room_id`,
/// hashes, signatures and the DAG fields included, in the timeline and the state.
async fn federation_event_format(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &[]).await;
    let (_, tok, _) = s.register("alice", "pw").await;
    let room = create(&s, &tok, json!({"preset": "public_chat", "name": "Fed"})).await;
    send(&s, &tok, &room, text("one")).await;
    let fed = enc(r#"{"event_format":"federation","room":{"timeline":{"limit":2}}}"#);
    let v = sync(&s, &tok, &format!("filter={fed}")).await;
    let tl = events(&v, "join", &room, "timeline");
    let state = events(&v, "join", &room, "state");
    assert_eq!(tl.len(), 2);
    assert!(!state.is_empty());
    for e in tl.iter().chain(state) {
        assert_eq!(e["room_id"], room.as_str(), "{e}");
        assert!(e["event_id"].is_string(), "{e}");
        assert!(e["hashes"]["sha256"].is_string(), "{e}");
        assert!(e["signatures"].is_object(), "{e}");
        assert!(e["depth"].is_u64(), "{e}");
        assert!(e["prev_events"].is_array(), "{e}");
        assert!(e["auth_events"].is_array(), "{e}");
        assert!(e["origin_server_ts"].is_u64(), "{e}");
    }
    // The client format stays without them.
    let v = sync(&s, &tok, "").await;
    for e in events(&v, "join", &room, "timeline") {
        assert!(
            e.get("room_id").is_none() && e.get("hashes").is_none(),
            "{e}"
        );
    }
    s.stop().await;
}

/// (Item 9) Presence of who newly shares a room with the user comes with the next incremental
/// sync, changed since the token or not.
async fn presence_of_new_room_mates(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &[]).await;
    let (_, tok, _) = s.register("alice", "pw").await;
    let (bob, bob_tok, _) = s.register("bob", "pw").await;
    let (carol, carol_tok, _) = s.register("carol", "pw").await;
    let (dave, dave_tok, _) = s.register("dave", "pw").await;
    let room = create(&s, &tok, json!({"preset": "public_chat"})).await;
    let carols = create(&s, &carol_tok, json!({"preset": "public_chat"})).await;
    // Bob and carol come online, in no room with alice.
    sync(&s, &bob_tok, "").await;
    sync(&s, &carol_tok, "").await;
    let v = sync(&s, &tok, "").await;
    let presence_of = |v: &Value, user: &str| -> Option<Value> {
        v["presence"]["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["sender"] == user)
            .cloned()
    };
    assert!(presence_of(&v, &bob).is_none(), "{v}");
    let since = next(&v);

    // Bob joins alice's room: his presence comes with alice's next sync.
    join(&s, &bob_tok, &room).await;
    let v = sync(&s, &tok, &format!("since={since}")).await;
    let p = presence_of(&v, &bob).unwrap_or_else(|| panic!("bob's presence: {v}"));
    assert_eq!(p["content"]["presence"], "online", "{p}");
    assert_eq!(p["type"], "m.presence");
    let since = next(&v);
    // Only once: nothing changed after.
    send(&s, &bob_tok, &room, text("hi")).await;
    let v = sync(&s, &tok, &format!("since={since}")).await;
    assert!(presence_of(&v, &bob).is_none(), "{v}");
    let since = next(&v);

    // Alice joins carol's room: carol's presence comes with it.
    join(&s, &tok, &carols).await;
    let v = sync(&s, &tok, &format!("since={since}")).await;
    let p = presence_of(&v, &carol).unwrap_or_else(|| panic!("carol's presence: {v}"));
    assert_eq!(p["content"]["presence"], "online", "{p}");
    let since = next(&v);

    // Dave never synced: he reads as offline.
    join(&s, &dave_tok, &room).await;
    let v = sync(&s, &tok, &format!("since={since}")).await;
    let p = presence_of(&v, &dave).unwrap_or_else(|| panic!("dave's presence: {v}"));
    assert_eq!(p["content"]["presence"], "offline", "{p}");
    s.stop().await;
}

/// Ids of the events of a room's state section in a sync body.
fn state_types(room: &Value) -> Vec<(String, String)> {
    room["state"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_owned(),
                e["state_key"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// After `/forget`, the room reads as one the user was never in: gone from `include_leave`
/// syncs (initial and incremental) and `/initialSync?archived=true`, and `/messages`,
/// `/context`, `/event`, `/state`, `/members` and `/rooms/{id}/initialSync` answer as they
/// do a stranger. A rejoin brings the room back.
async fn forgotten_rooms_disappear(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &[]).await;
    let (_, alice, _) = s.register("alice", "pw").await;
    let (bob_id, bob, _) = s.register("bob", "pw").await;
    let (_, carol, _) = s.register("carol", "pw").await;
    let room = create(&s, &alice, json!({"preset": "public_chat"})).await;
    join(&s, &bob, &room).await;
    let event = send(&s, &alice, &room, text("before the leave")).await;
    let since = next(&sync(&s, &bob, "timeout=0").await);
    leave(&s, &bob, &room).await;
    let with_leaves = format!("filter={}", enc(r#"{"room":{"include_leave":true}}"#));
    let v = sync(&s, &bob, &with_leaves).await;
    assert!(v["rooms"]["leave"][&room].is_object(), "{v}");
    let (st, _) = s
        .get(&format!("{C}/rooms/{room}/messages?dir=b"), Some(&bob))
        .await;
    assert_eq!(st, 200, "a former member reads up to the leave");

    let (st, v) = s
        .post(&format!("{C}/rooms/{room}/forget"), Some(&bob), json!({}))
        .await;
    assert_eq!(st, 200, "{v}");
    let v = sync(&s, &bob, &with_leaves).await;
    assert!(v["rooms"]["leave"].get(&room).is_none(), "initial: {v}");
    let v = sync(&s, &bob, &format!("{with_leaves}&since={since}&timeout=0")).await;
    assert!(v["rooms"]["leave"].get(&room).is_none(), "incremental: {v}");
    let (st, v) = s
        .get(&format!("{C}/initialSync?archived=true"), Some(&bob))
        .await;
    assert_eq!(st, 200, "{v}");
    assert!(
        !v["rooms"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["room_id"] == room.as_str()),
        "{v}"
    );
    for path in [
        format!("{C}/rooms/{room}/messages?dir=b"),
        format!("{C}/rooms/{room}/context/{}", enc(&event)),
        format!("{C}/rooms/{room}/event/{}", enc(&event)),
        format!("{C}/rooms/{room}/state"),
        format!("{C}/rooms/{room}/members"),
        format!("{C}/rooms/{room}/initialSync"),
    ] {
        let (forgot, v) = s.get(&path, Some(&bob)).await;
        let (stranger, _) = s.get(&path, Some(&carol)).await;
        assert!(forgot >= 400, "{path}: {v}");
        assert_eq!(forgot, stranger, "{path}: as for a room never joined: {v}");
    }

    // Back in the room: it is back everywhere.
    invite(&s, &alice, &room, &bob_id).await;
    let v = sync(&s, &bob, &with_leaves).await;
    assert!(v["rooms"]["invite"][&room].is_object(), "{v}");
    join(&s, &bob, &room).await;
    let v = sync(&s, &bob, &with_leaves).await;
    assert!(v["rooms"]["join"][&room].is_object(), "{v}");
    let (st, _) = s
        .get(&format!("{C}/rooms/{room}/messages?dir=b"), Some(&bob))
        .await;
    assert_eq!(st, 200);
    s.stop().await;
}

/// A full-state sync gives every current state event even when a timeline filter drops it
/// from the timeline (the timeline will not bring it).
async fn full_state_has_what_the_timeline_filter_drops(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &[]).await;
    let (_, alice, _) = s.register("alice", "pw").await;
    let (_, bob, _) = s.register("bob", "pw").await;
    let room = create(&s, &alice, json!({"preset": "public_chat"})).await;
    // The state changes come after the timeline's first event, in the window of both the
    // initial sync and the full-state incremental one.
    let since = next(&sync(&s, &alice, "timeout=0").await);
    for i in 0..4 {
        send(&s, &alice, &room, text(&format!("m{i}"))).await;
    }
    put_state(
        &s,
        &alice,
        &room,
        "m.room.topic",
        "",
        json!({"topic": "new"}),
    )
    .await;
    join(&s, &bob, &room).await;
    send(&s, &alice, &room, text("last")).await;
    for filter in [
        r#"{"room":{"timeline":{"types":["m.room.message"],"limit":3}}}"#,
        r#"{"room":{"timeline":{"not_types":["m.room.topic","m.room.member"]}}}"#,
    ] {
        for query in [
            format!("filter={}", enc(filter)),
            format!(
                "filter={}&full_state=true&since={since}&timeout=0",
                enc(filter)
            ),
        ] {
            let v = sync(&s, &alice, &query).await;
            let joined = &v["rooms"]["join"][&room];
            let timeline = joined["timeline"]["events"].as_array().unwrap();
            assert!(
                timeline
                    .iter()
                    .all(|e| e["type"] != "m.room.topic" && e["type"] != "m.room.member"),
                "{query}: {timeline:?}"
            );
            let state = joined["state"]["events"].as_array().unwrap();
            let topic = state
                .iter()
                .find(|e| e["type"] == "m.room.topic")
                .unwrap_or_else(|| panic!("{query}: no topic in {state:?}"));
            assert_eq!(topic["content"]["topic"], "new", "{query}");
            let types = state_types(joined);
            // The rest of the state is in the state section or in the timeline.
            for wanted in ["m.room.create", "m.room.power_levels", "m.room.join_rules"] {
                assert!(
                    types.iter().any(|(t, _)| t == wanted)
                        || timeline.iter().any(|e| e["type"] == wanted),
                    "{query}: {types:?}"
                );
            }
            let members = state
                .iter()
                .filter(|e| e["type"] == "m.room.member")
                .count();
            assert_eq!(members, 2, "{query}: both members: {types:?}");
            let mut keys = types.clone();
            keys.sort();
            keys.dedup();
            assert_eq!(keys.len(), types.len(), "{query}: one event per key");
        }
    }
    s.stop().await;
}

/// `@room` highlights only when the sender has the room's `notifications.room` power level
/// (default 50) in the power levels it sent under.
async fn room_mentions_need_the_power_to_notify(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &[]).await;
    let (_, alice, _) = s.register("alice", "pw").await;
    let (bob_id, bob, _) = s.register("bob", "pw").await;
    let room = create(
        &s,
        &alice,
        json!({"preset": "public_chat", "room_version": "11"}),
    )
    .await;
    join(&s, &bob, &room).await;
    let counts = |v: &Value| {
        let u = &v["rooms"]["join"][&room]["unread_notifications"];
        (
            u["notification_count"].as_u64().unwrap(),
            u["highlight_count"].as_u64().unwrap(),
        )
    };
    // Bob (power 0) mentions the room, in the body and in `m.mentions`.
    send(&s, &bob, &room, text("@room look")).await;
    send(
        &s,
        &bob,
        &room,
        json!({"msgtype": "m.text", "body": "all", "m.mentions": {"room": true}}),
    )
    .await;
    assert_eq!(counts(&sync(&s, &alice, "").await), (2, 0));
    // Alice (100) does.
    send(&s, &alice, &room, text("@room listen")).await;
    assert_eq!(counts(&sync(&s, &bob, "").await), (1, 1));
    // Once bob has 50, his room mentions highlight.
    let (st, mut pl) = s
        .get(
            &format!("{C}/rooms/{room}/state/m.room.power_levels/"),
            Some(&alice),
        )
        .await;
    assert_eq!(st, 200, "{pl}");
    pl["users"][&bob_id] = json!(50);
    put_state(&s, &alice, &room, "m.room.power_levels", "", pl).await;
    send(&s, &bob, &room, text("@room now")).await;
    assert_eq!(counts(&sync(&s, &alice, "").await), (3, 1));
    s.stop().await;
}

scenarios!(
    newly_joined_room_is_limited_with_full_state,
    gapped_sync_has_the_state_of_the_gap,
    private_history_keeps_current_state_in_the_timeline,
    summary_heroes_only_for_unnamed_rooms,
    ignored_users_and_empty_rooms,
    joined_and_left_within_one_window,
    display_name_change_is_not_full_state,
    federation_event_format,
    presence_of_new_room_mates,
    forgotten_rooms_disappear,
    full_state_has_what_the_timeline_filter_drops,
    room_mentions_need_the_power_to_notify,
);
