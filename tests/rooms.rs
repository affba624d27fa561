//! The client room API end to end over HTTP: creating rooms of each preset and version,
//! sending, state, membership and its errors, on both databases, with the userapi and the
//! roomserver in-process and behind the HTTP bridge.

mod common;

use common::{assert_error, create, Backend, TestServer, Topology};
use serde_json::{json, Value};

const C: &str = "/_matrix/client/v3";

fn state_of<'a>(state: &'a Value, kind: &str, key: &str) -> Option<&'a Value> {
    state
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == kind && e["state_key"] == key)
}

async fn create_rooms_of_each_preset_and_version(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &[]).await;
    let (alice, tok, _) = s.register("alice", "pw").await;
    let (bob, bob_tok, _) = s.register("bob", "pw").await;

    // Public, default version (12): the initial events as the spec lists them.
    let room = create(&s, &tok, json!({
        "preset": "public_chat", "name": "Hall", "topic": "All welcome",
        "initial_state": [{"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}],
        "creation_content": {"m.federate": false},
    })).await;
    assert!(
        !room.contains(':'),
        "v12 room IDs come from the create event: {room}"
    );
    let (st, state) = s.get(&format!("{C}/rooms/{room}/state"), Some(&tok)).await;
    assert_eq!(st, 200);
    let create_ev = state_of(&state, "m.room.create", "").unwrap();
    assert_eq!(create_ev["content"]["room_version"], "12");
    assert_eq!(create_ev["content"]["m.federate"], false);
    assert_eq!(
        state_of(&state, "m.room.member", &alice).unwrap()["content"]["membership"],
        "join"
    );
    let pl = &state_of(&state, "m.room.power_levels", "").unwrap()["content"];
    assert!(
        pl["users"].get(&alice).is_none(),
        "v12 creators are privileged by the create event"
    );
    assert_eq!(pl["events"]["m.room.tombstone"], 150);
    assert_eq!(
        state_of(&state, "m.room.join_rules", "").unwrap()["content"]["join_rule"],
        "public"
    );
    assert_eq!(
        state_of(&state, "m.room.history_visibility", "").unwrap()["content"]["history_visibility"],
        "shared"
    );
    assert!(state_of(&state, "m.room.guest_access", "").is_none());
    assert_eq!(
        state_of(&state, "m.room.name", "").unwrap()["content"]["name"],
        "Hall"
    );
    assert_eq!(
        state_of(&state, "m.room.topic", "").unwrap()["content"]["topic"],
        "All welcome"
    );
    assert!(state_of(&state, "m.room.encryption", "").is_some());
    // Every state event is in the client format.
    for e in state.as_array().unwrap() {
        assert!(e["event_id"].as_str().unwrap().starts_with('$'));
        assert_eq!(e["room_id"], room.as_str());
        assert!(e["origin_server_ts"].is_u64() && e["sender"].is_string());
    }

    // Private, version 10, with an invitation; trusted_private_chat gives invitees power.
    let private = create(
        &s,
        &tok,
        json!({"preset": "private_chat", "room_version": "10", "invite": [bob], "is_direct": true}),
    )
    .await;
    assert!(private.ends_with(":test.local"));
    let (_, state) = s
        .get(&format!("{C}/rooms/{private}/state"), Some(&tok))
        .await;
    assert_eq!(
        state_of(&state, "m.room.create", "").unwrap()["content"]["creator"],
        alice.as_str()
    );
    assert_eq!(
        state_of(&state, "m.room.power_levels", "").unwrap()["content"]["users"][&alice],
        100
    );
    assert_eq!(
        state_of(&state, "m.room.join_rules", "").unwrap()["content"]["join_rule"],
        "invite"
    );
    assert_eq!(
        state_of(&state, "m.room.guest_access", "").unwrap()["content"]["guest_access"],
        "can_join"
    );
    let invite = state_of(&state, "m.room.member", &bob).unwrap();
    assert_eq!(
        (
            invite["content"]["membership"].as_str(),
            invite["content"]["is_direct"].as_bool()
        ),
        (Some("invite"), Some(true))
    );
    let trusted = create(
        &s,
        &tok,
        json!({"preset": "trusted_private_chat", "room_version": "11", "invite": [bob]}),
    )
    .await;
    let (_, state) = s
        .get(&format!("{C}/rooms/{trusted}/state"), Some(&tok))
        .await;
    assert_eq!(
        state_of(&state, "m.room.power_levels", "").unwrap()["content"]["users"][&bob],
        100
    );
    // The default preset follows visibility; power levels can be overridden.
    let default = create(
        &s,
        &tok,
        json!({"visibility": "private", "power_level_content_override": {"events_default": 20}}),
    )
    .await;
    let (_, state) = s
        .get(&format!("{C}/rooms/{default}/state"), Some(&tok))
        .await;
    assert_eq!(
        state_of(&state, "m.room.join_rules", "").unwrap()["content"]["join_rule"],
        "invite"
    );
    assert_eq!(
        state_of(&state, "m.room.power_levels", "").unwrap()["content"]["events_default"],
        20
    );
    for version in ["6", "7", "8", "9"] {
        let r = create(&s, &tok, json!({"room_version": version})).await;
        let (st, v) = s
            .get(&format!("{C}/rooms/{r}/state/m.room.create"), Some(&tok))
            .await;
        assert_eq!((st, v["room_version"].as_str()), (200, Some(version)));
    }

    // Errors.
    assert_error(
        &s.post(
            &format!("{C}/createRoom"),
            Some(&tok),
            json!({"room_version": "13"}),
        )
        .await,
        400,
        "M_UNSUPPORTED_ROOM_VERSION",
    );
    // Third-party invites work (tests/third_party_invites.rs); an identity server on a
    // private address is refused before the room is made.
    assert_error(&s.post(&format!("{C}/createRoom"), Some(&tok), json!({"invite_3pid": [{"id_server": "10.0.0.1", "id_access_token": "y", "medium": "email", "address": "a@b.c"}]})).await, 400, "M_INVALID_PARAM");
    let aliased = create(&s, &tok, json!({"room_alias_name": "hall"})).await;
    let (_, v) = s
        .get(
            &format!("{C}/rooms/{aliased}/state/m.room.canonical_alias"),
            Some(&tok),
        )
        .await;
    assert_eq!(v["alias"], "#hall:test.local");
    assert_error(
        &s.post(
            &format!("{C}/createRoom"),
            Some(&tok),
            json!({"room_alias_name": "hall"}),
        )
        .await,
        400,
        "M_ROOM_IN_USE",
    );
    assert_error(
        &s.post(
            &format!("{C}/createRoom"),
            Some(&tok),
            json!({"room_alias_name": "bad:name"}),
        )
        .await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &s.post(&format!("{C}/createRoom"), Some(&tok), json!({"preset": 5}))
            .await,
        400,
        "M_BAD_JSON",
    );
    assert_error(
        &s.post(&format!("{C}/createRoom"), None, json!({})).await,
        401,
        "M_MISSING_TOKEN",
    );
    let _ = bob_tok;
    s.stop().await;
}

async fn talk_and_state(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &[]).await;
    let (_, tok, _) = s.register("alice", "pw").await;
    let (bob, bob_tok, _) = s.register("bob", "pw").await;
    let (_, carol_tok, _) = s.register("carol", "pw").await;
    let room = create(&s, &tok, json!({"preset": "public_chat", "name": "Hall"})).await;
    let (st, v) = s
        .post(&format!("{C}/join/{room}"), Some(&bob_tok), json!({}))
        .await;
    assert_eq!(
        (st, v["room_id"].as_str()),
        (200, Some(room.as_str())),
        "{v}"
    );

    // Sending is idempotent per device and transaction ID.
    let send = |txn: &str| format!("{C}/rooms/{room}/send/m.room.message/{txn}");
    let (st, first) = s
        .put(
            &send("t1"),
            Some(&bob_tok),
            json!({"msgtype": "m.text", "body": "hi"}),
        )
        .await;
    assert_eq!(st, 200, "{first}");
    let (_, again) = s
        .put(
            &send("t1"),
            Some(&bob_tok),
            json!({"msgtype": "m.text", "body": "hi"}),
        )
        .await;
    assert_eq!(first["event_id"], again["event_id"]);
    let (_, other) = s
        .put(
            &send("t2"),
            Some(&bob_tok),
            json!({"msgtype": "m.text", "body": "hi"}),
        )
        .await;
    assert_ne!(first["event_id"], other["event_id"]);
    let event_id = first["event_id"].as_str().unwrap();

    // Reading an event: members may, others may not.
    let (st, e) = s
        .get(&format!("{C}/rooms/{room}/event/{event_id}"), Some(&tok))
        .await;
    assert_eq!(st, 200);
    assert_eq!(
        (
            e["sender"].as_str(),
            e["content"]["body"].as_str(),
            e["room_id"].as_str()
        ),
        (Some(bob.as_str()), Some("hi"), Some(room.as_str()))
    );
    // An event someone may not see is not found (its existence is not revealed).
    assert_error(
        &s.get(
            &format!("{C}/rooms/{room}/event/{event_id}"),
            Some(&carol_tok),
        )
        .await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &s.get(&format!("{C}/rooms/{room}/event/$nothere"), Some(&tok))
            .await,
        404,
        "M_NOT_FOUND",
    );
    // Non-members cannot send.
    assert_error(
        &s.put(&send("c1"), Some(&carol_tok), json!({"body": "x"}))
            .await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &s.put(&send("c2"), Some(&tok), json!([1, 2])).await,
        400,
        "M_BAD_JSON",
    );

    // State: with and without the trailing slash, content or event, and power.
    let (st, v) = s
        .get(
            &format!("{C}/rooms/{room}/state/m.room.name"),
            Some(&bob_tok),
        )
        .await;
    assert_eq!((st, v), (200, json!({"name": "Hall"})));
    let (st, v) = s
        .get(
            &format!("{C}/rooms/{room}/state/m.room.name/"),
            Some(&bob_tok),
        )
        .await;
    assert_eq!((st, v["name"].as_str()), (200, Some("Hall")));
    let (st, v) = s
        .get(
            &format!("{C}/rooms/{room}/state/m.room.name/?format=event"),
            Some(&bob_tok),
        )
        .await;
    assert_eq!(
        (st, v["type"].as_str(), v["content"]["name"].as_str()),
        (200, Some("m.room.name"), Some("Hall"))
    );
    assert_error(
        &s.get(
            &format!("{C}/rooms/{room}/state/m.room.avatar"),
            Some(&bob_tok),
        )
        .await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &s.put(
            &format!("{C}/rooms/{room}/state/m.room.name"),
            Some(&bob_tok),
            json!({"name": "Mine"}),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );
    let (st, v) = s
        .put(
            &format!("{C}/rooms/{room}/state/m.room.name/"),
            Some(&tok),
            json!({"name": "Great Hall"}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert!(v["event_id"].is_string());
    let (st, v) = s
        .put(
            &format!("{C}/rooms/{room}/state/org.example.key/a%2Fb"),
            Some(&tok),
            json!({"x": 1}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        s.get(
            &format!("{C}/rooms/{room}/state/org.example.key/a%2Fb"),
            Some(&bob_tok)
        )
        .await
        .1,
        json!({"x": 1})
    );
    assert_error(
        &s.get(&format!("{C}/rooms/{room}/state"), Some(&carol_tok))
            .await,
        403,
        "M_FORBIDDEN",
    );
    // An unknown room is not revealed: the same 403 as a room one is not in (as Synapse).
    assert_error(
        &s.get(&format!("{C}/rooms/!unknown:test.local/state"), Some(&tok))
            .await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &s.put(
            &format!("{C}/rooms/!unknown:test.local/send/m.room.message/x"),
            Some(&tok),
            json!({}),
        )
        .await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &s.get(&format!("{C}/rooms/not-a-room/state"), Some(&tok))
            .await,
        400,
        "M_INVALID_PARAM",
    );
    s.stop().await;
}

async fn membership(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &[]).await;
    let (alice, tok, _) = s.register("alice", "pw").await;
    let (bob, bob_tok, _) = s.register("bob", "pw").await;
    let (carol, carol_tok, _) = s.register("carol", "pw").await;
    s.put(
        &format!("{C}/profile/{bob}/displayname"),
        Some(&bob_tok),
        json!({"displayname": "Bob B."}),
    )
    .await;
    let room = create(&s, &tok, json!({"preset": "private_chat"})).await;
    let r = format!("{C}/rooms/{room}");

    // Invite-only: bob needs an invitation.
    assert_error(
        &s.post(&format!("{r}/join"), Some(&bob_tok), json!({}))
            .await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &s.post(
            &format!("{r}/invite"),
            Some(&bob_tok),
            json!({"user_id": carol}),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );
    assert_eq!(
        s.post(
            &format!("{r}/invite"),
            Some(&tok),
            json!({"user_id": bob, "reason": "welcome"})
        )
        .await
        .0,
        200
    );
    assert_eq!(
        s.post(&format!("{r}/join"), Some(&bob_tok), json!({}))
            .await
            .0,
        200
    );
    let (st, v) = s.get(&format!("{r}/joined_members"), Some(&bob_tok)).await;
    assert_eq!(st, 200);
    assert_eq!(v["joined"][&bob]["display_name"], "Bob B.");
    assert!(v["joined"].get(&alice).is_some());
    assert_error(&s.post(&format!("{r}/invite"), Some(&tok), json!({"id_server": "10.0.0.1", "id_access_token": "y", "medium": "email", "address": "a@b.c"})).await, 400, "M_INVALID_PARAM");

    // Members, filtered.
    assert_eq!(
        s.post(
            &format!("{r}/invite"),
            Some(&tok),
            json!({"user_id": carol})
        )
        .await
        .0,
        200
    );
    let (_, v) = s
        .get(&format!("{r}/members?membership=join"), Some(&bob_tok))
        .await;
    assert_eq!(v["chunk"].as_array().unwrap().len(), 2);
    let (_, v) = s
        .get(&format!("{r}/members?not_membership=join"), Some(&bob_tok))
        .await;
    let chunk = v["chunk"].as_array().unwrap();
    assert_eq!(
        (chunk.len(), chunk[0]["state_key"].as_str()),
        (1, Some(carol.as_str()))
    );
    let (_, v) = s.get(&format!("{r}/members"), Some(&bob_tok)).await;
    assert_eq!(v["chunk"].as_array().unwrap().len(), 3);
    // `at`: the members as of a position of the room stream (the first room of a fresh
    // server: its create event is position 1 and the creator's join position 2).
    let (st, v) = s.get(&format!("{r}/members?at=s1"), Some(&bob_tok)).await;
    assert_eq!((st, v["chunk"].as_array().unwrap().len()), (200, 0));
    let (_, v) = s.get(&format!("{r}/members?at=s2"), Some(&bob_tok)).await;
    let chunk = v["chunk"].as_array().unwrap();
    assert_eq!(
        (chunk.len(), chunk[0]["state_key"].as_str()),
        (1, Some(alice.as_str()))
    );
    let (_, v) = s
        .get(
            &format!("{r}/members?at=s999999&membership=invite"),
            Some(&bob_tok),
        )
        .await;
    assert_eq!(
        v["chunk"].as_array().unwrap().len(),
        1,
        "the newest state: carol's invite"
    );
    assert_error(
        &s.get(&format!("{r}/members?at=garbage"), Some(&bob_tok))
            .await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &s.get(&format!("{r}/members"), Some(&carol_tok)).await,
        403,
        "M_FORBIDDEN",
    );

    // Kick, ban, unban.
    assert_error(
        &s.post(
            &format!("{r}/kick"),
            Some(&bob_tok),
            json!({"user_id": alice}),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );
    assert_eq!(
        s.post(
            &format!("{r}/kick"),
            Some(&tok),
            json!({"user_id": bob, "reason": "bye"})
        )
        .await
        .0,
        200
    );
    assert_error(
        &s.put(
            &format!("{r}/send/m.room.message/k1"),
            Some(&bob_tok),
            json!({"body": "x"}),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );
    assert_eq!(
        s.post(&format!("{r}/ban"), Some(&tok), json!({"user_id": carol}))
            .await
            .0,
        200
    );
    assert_error(
        &s.post(&format!("{r}/join"), Some(&carol_tok), json!({}))
            .await,
        403,
        "M_FORBIDDEN",
    );
    assert_eq!(
        s.post(&format!("{r}/unban"), Some(&tok), json!({"user_id": carol}))
            .await
            .0,
        200
    );
    // Unbanned is not invited.
    assert_error(
        &s.post(&format!("{r}/join"), Some(&carol_tok), json!({}))
            .await,
        403,
        "M_FORBIDDEN",
    );
    let (_, v) = s
        .get(&format!("{r}/state/m.room.member/{carol}"), Some(&tok))
        .await;
    assert_eq!(v["membership"], "leave");

    // Leaving, then reading, is refused; joins of unknown rooms and aliases are 404.
    let public = create(&s, &tok, json!({"preset": "public_chat"})).await;
    assert_eq!(
        s.post(
            &format!("{C}/rooms/{public}/join"),
            Some(&bob_tok),
            json!({})
        )
        .await
        .0,
        200
    );
    assert_eq!(
        s.post(
            &format!("{C}/rooms/{public}/leave"),
            Some(&bob_tok),
            json!({})
        )
        .await
        .0,
        200
    );
    // Someone who left reads the state as of their leave (as Synapse).
    let (st, v) = s
        .get(&format!("{C}/rooms/{public}/state"), Some(&bob_tok))
        .await;
    assert_eq!(st, 200, "{v}");
    assert!(v
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["state_key"] == bob.as_str() && e["content"]["membership"] == "leave"));
    assert_error(
        &s.post(
            &format!("{C}/join/!nowhere:test.local"),
            Some(&bob_tok),
            json!({}),
        )
        .await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &s.post(
            &format!("{C}/join/%23hall:test.local"),
            Some(&bob_tok),
            json!({}),
        )
        .await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &s.post(&format!("{C}/rooms/{public}/kick"), Some(&tok), json!({}))
            .await,
        400,
        "M_BAD_JSON",
    );
    s.stop().await;
}

async fn joined_rooms_and_forget(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &[]).await;
    let (_, tok, _) = s.register("alice", "pw").await;
    let (_, bob_tok, _) = s.register("bob", "pw").await;
    let public = create(&s, &tok, json!({"preset": "public_chat"})).await;
    let other = create(&s, &tok, json!({"preset": "public_chat"})).await;
    assert_eq!(
        s.get(&format!("{C}/joined_rooms"), Some(&bob_tok)).await.1,
        json!({"joined_rooms": []})
    );
    for room in [&public, &other] {
        assert_eq!(
            s.post(&format!("{C}/rooms/{room}/join"), Some(&bob_tok), json!({}))
                .await
                .0,
            200
        );
    }
    let (st, v) = s.get(&format!("{C}/joined_rooms"), Some(&bob_tok)).await;
    let mut rooms: Vec<String> = v["joined_rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_owned())
        .collect();
    rooms.sort();
    let mut expect = vec![public.clone(), other.clone()];
    expect.sort();
    assert_eq!((st, rooms), (200, expect));
    // Forgetting needs leaving first.
    assert_error(
        &s.post(
            &format!("{C}/rooms/{public}/forget"),
            Some(&bob_tok),
            json!({}),
        )
        .await,
        400,
        "M_BAD_STATE",
    );
    assert_eq!(
        s.post(
            &format!("{C}/rooms/{public}/leave"),
            Some(&bob_tok),
            json!({})
        )
        .await
        .0,
        200
    );
    assert_eq!(
        s.get(&format!("{C}/joined_rooms"), Some(&bob_tok)).await.1,
        json!({"joined_rooms": [other]})
    );
    assert_eq!(
        s.post(
            &format!("{C}/rooms/{public}/forget"),
            Some(&bob_tok),
            json!({})
        )
        .await
        .0,
        200
    );
    assert_error(
        &s.post(
            &format!("{C}/rooms/!never:test.local/forget"),
            Some(&bob_tok),
            json!({}),
        )
        .await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &s.get(&format!("{C}/joined_rooms"), None).await,
        401,
        "M_MISSING_TOKEN",
    );
    s.stop().await;
}

async fn redactions(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &[]).await;
    let (_, tok, _) = s.register("alice", "pw").await;
    let (bob, bob_tok, _) = s.register("bob", "pw").await;
    let (_, carol_tok, _) = s.register("carol", "pw").await;
    for version in ["10", "12"] {
        let room = create(
            &s,
            &tok,
            json!({"preset": "public_chat", "room_version": version}),
        )
        .await;
        let r = format!("{C}/rooms/{room}");
        for t in [&bob_tok, &carol_tok] {
            assert_eq!(
                s.post(&format!("{r}/join"), Some(t), json!({})).await.0,
                200
            );
        }
        let (_, m1) = s
            .put(
                &format!("{r}/send/m.room.message/{version}a"),
                Some(&bob_tok),
                json!({"msgtype": "m.text", "body": "oops"}),
            )
            .await;
        let m1 = m1["event_id"].as_str().unwrap().to_owned();
        let (_, m2) = s
            .put(
                &format!("{r}/send/m.room.message/{version}b"),
                Some(&carol_tok),
                json!({"msgtype": "m.text", "body": "spam"}),
            )
            .await;
        let m2 = m2["event_id"].as_str().unwrap().to_owned();

        // Own events: allowed, and idempotent per transaction.
        let (st, red) = s
            .put(
                &format!("{r}/redact/{m1}/x{version}"),
                Some(&bob_tok),
                json!({"reason": "typo"}),
            )
            .await;
        assert_eq!(st, 200, "{red}");
        let (_, again) = s
            .put(
                &format!("{r}/redact/{m1}/x{version}"),
                Some(&bob_tok),
                json!({"reason": "typo"}),
            )
            .await;
        assert_eq!(red["event_id"], again["event_id"]);
        let (st, e) = s.get(&format!("{r}/event/{m1}"), Some(&tok)).await;
        assert_eq!(st, 200);
        assert_eq!(e["content"], json!({}), "v{version}: content is redacted");
        assert_eq!(
            e["unsigned"]["redacted_because"]["event_id"],
            red["event_id"]
        );
        assert_eq!(
            e["unsigned"]["redacted_because"]["content"]["reason"],
            "typo"
        );
        let (_, r_ev) = s
            .get(
                &format!("{r}/event/{}", red["event_id"].as_str().unwrap()),
                Some(&tok),
            )
            .await;
        assert_eq!(r_ev["type"], "m.room.redaction");
        assert_eq!(r_ev["redacts"], m1.as_str());

        // Others' events need the redact power.
        assert_error(
            &s.put(
                &format!("{r}/redact/{m2}/y{version}"),
                Some(&bob_tok),
                json!({}),
            )
            .await,
            403,
            "M_FORBIDDEN",
        );
        assert_eq!(
            s.put(
                &format!("{r}/redact/{m2}/z{version}"),
                Some(&tok),
                json!({})
            )
            .await
            .0,
            200
        );
        assert_eq!(
            s.get(&format!("{r}/event/{m2}"), Some(&bob_tok)).await.1["content"],
            json!({})
        );

        // A redacted member event keeps its membership (the redaction algorithm).
        s.put(
            &format!("{C}/profile/{bob}/displayname"),
            Some(&bob_tok),
            json!({"displayname": "Bob"}),
        )
        .await;
        let (_, join) = s
            .post(&format!("{r}/join"), Some(&bob_tok), json!({}))
            .await;
        let _ = join;
        let (_, member) = s
            .get(
                &format!("{r}/state/m.room.member/{bob}?format=event"),
                Some(&tok),
            )
            .await;
        let member_id = member["event_id"].as_str().unwrap().to_owned();
        assert_eq!(member["content"]["displayname"], "Bob");
        assert_eq!(
            s.put(
                &format!("{r}/redact/{member_id}/m{version}"),
                Some(&tok),
                json!({})
            )
            .await
            .0,
            200
        );
        let (_, member) = s
            .get(&format!("{r}/state/m.room.member/{bob}"), Some(&tok))
            .await;
        assert_eq!(member, json!({"membership": "join"}), "v{version}");

        assert_error(
            &s.put(
                &format!("{r}/redact/$unknown/u{version}"),
                Some(&tok),
                json!({}),
            )
            .await,
            404,
            "M_NOT_FOUND",
        );
    }
    s.stop().await;
}

async fn aliases_and_directory(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &[]).await;
    let (_, tok, _) = s.register("alice", "pw").await;
    let (_, bob_tok, _) = s.register("bob", "pw").await;
    let (_, carol_tok, _) = s.register("carol", "pw").await;
    let room = create(&s, &tok, json!({"visibility": "public", "name": "Hall", "topic": "General chat", "room_alias_name": "hall"})).await;
    let dir = |alias: &str| format!("{C}/directory/room/{}", alias.replace('#', "%23"));

    // Resolving and joining by alias.
    let (st, v) = s.get(&dir("#hall:test.local"), None).await;
    assert_eq!(
        (st, v["room_id"].as_str(), v["servers"].clone()),
        (200, Some(room.as_str()), json!(["test.local"]))
    );
    let (st, v) = s
        .post(
            &format!("{C}/join/%23hall:test.local"),
            Some(&carol_tok),
            json!({}),
        )
        .await;
    assert_eq!((st, v["room_id"].as_str()), (200, Some(room.as_str())));
    assert_error(
        &s.get(&dir("#nothing:test.local"), None).await,
        404,
        "M_NOT_FOUND",
    );
    // Another server's alias is asked of that server, which cannot be reached here.
    assert_error(
        &s.get(&dir("#hall:elsewhere.org"), None).await,
        502,
        "M_UNKNOWN",
    );

    // Creating aliases: members only, once, on this server.
    assert_error(
        &s.put(
            &dir("#bobs:test.local"),
            Some(&bob_tok),
            json!({"room_id": room}),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );
    assert_eq!(
        s.post(&format!("{C}/rooms/{room}/join"), Some(&bob_tok), json!({}))
            .await
            .0,
        200
    );
    assert_eq!(
        s.put(
            &dir("#bobs:test.local"),
            Some(&bob_tok),
            json!({"room_id": room})
        )
        .await
        .0,
        200
    );
    assert_error(
        &s.put(
            &dir("#bobs:test.local"),
            Some(&tok),
            json!({"room_id": room}),
        )
        .await,
        409,
        "M_UNKNOWN",
    );
    assert_error(
        &s.put(
            &dir("#x:elsewhere.org"),
            Some(&tok),
            json!({"room_id": room}),
        )
        .await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &s.put(
            &format!("{C}/directory/room/notanalias"),
            Some(&tok),
            json!({"room_id": room}),
        )
        .await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &s.put(
            &dir("#ghost:test.local"),
            Some(&tok),
            json!({"room_id": "!ghost:test.local"}),
        )
        .await,
        404,
        "M_NOT_FOUND",
    );
    let (st, v) = s
        .get(&format!("{C}/rooms/{room}/aliases"), Some(&bob_tok))
        .await;
    assert_eq!(
        (st, v["aliases"].clone()),
        (200, json!(["#bobs:test.local", "#hall:test.local"]))
    );

    // Deleting: the creator of the alias, or someone with power over the room's aliases.
    assert_error(
        &s.call("DELETE", &dir("#hall:test.local"), Some(&bob_tok), None)
            .await,
        403,
        "M_FORBIDDEN",
    );
    assert_eq!(
        s.call("DELETE", &dir("#bobs:test.local"), Some(&bob_tok), None)
            .await
            .0,
        200
    );
    assert_error(
        &s.call("DELETE", &dir("#bobs:test.local"), Some(&bob_tok), None)
            .await,
        404,
        "M_NOT_FOUND",
    );
    assert_eq!(
        s.put(
            &dir("#bobs2:test.local"),
            Some(&bob_tok),
            json!({"room_id": room})
        )
        .await
        .0,
        200
    );
    assert_eq!(
        s.call("DELETE", &dir("#bobs2:test.local"), Some(&tok), None)
            .await
            .0,
        200,
        "alice has the power"
    );

    // Visibility in the directory.
    let list = format!("{C}/directory/list/room/{room}");
    assert_eq!(s.get(&list, None).await.1, json!({"visibility": "public"}));
    let private = create(&s, &tok, json!({"preset": "private_chat"})).await;
    assert_eq!(
        s.get(&format!("{C}/directory/list/room/{private}"), None)
            .await
            .1,
        json!({"visibility": "private"})
    );
    assert_error(
        &s.get(&format!("{C}/directory/list/room/!none:test.local"), None)
            .await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &s.put(&list, Some(&bob_tok), json!({"visibility": "private"}))
            .await,
        403,
        "M_FORBIDDEN",
    );

    // publicRooms: ordered by members, paginated, searchable.
    let second = create(&s, &tok, json!({"visibility": "public", "name": "Garden"})).await;
    let third = create(
        &s,
        &tok,
        json!({"visibility": "public", "name": "Kitchen", "topic": "hall of food"}),
    )
    .await;
    let (st, v) = s.get(&format!("{C}/publicRooms?limit=2"), None).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["total_room_count_estimate"], 3);
    let chunk = v["chunk"].as_array().unwrap();
    assert_eq!(chunk.len(), 2);
    assert_eq!(chunk[0]["room_id"], room.as_str(), "most members first");
    assert_eq!(
        (
            chunk[0]["num_joined_members"].as_i64(),
            chunk[0]["name"].as_str()
        ),
        (Some(3), Some("Hall"))
    );
    assert_eq!(
        (
            chunk[0]["canonical_alias"].as_str(),
            chunk[0]["join_rule"].as_str()
        ),
        (Some("#hall:test.local"), Some("public"))
    );
    assert_eq!(chunk[0]["world_readable"], false);
    let next = v["next_batch"].as_str().unwrap().to_owned();
    let (_, v) = s
        .get(&format!("{C}/publicRooms?limit=2&since={next}"), None)
        .await;
    assert_eq!(v["chunk"].as_array().unwrap().len(), 1);
    assert!(v.get("next_batch").is_none() && v["prev_batch"].is_string());
    let (st, v) = s
        .post(
            &format!("{C}/publicRooms"),
            Some(&tok),
            json!({"filter": {"generic_search_term": "HALL"}}),
        )
        .await;
    assert_eq!(st, 200);
    let mut found: Vec<&str> = v["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["room_id"].as_str().unwrap())
        .collect();
    found.sort();
    let mut expect = vec![room.as_str(), third.as_str()];
    expect.sort();
    assert_eq!(found, expect);
    // Another server's directory is asked for signed-in users only.
    assert_error(
        &s.get(&format!("{C}/publicRooms?server=elsewhere.org"), None)
            .await,
        401,
        "M_MISSING_TOKEN",
    );
    assert_error(
        &s.get(&format!("{C}/publicRooms?since=garbage"), None).await,
        400,
        "M_INVALID_PARAM",
    );
    // Unlisting.
    assert_eq!(
        s.put(
            &format!("{C}/directory/list/room/{second}"),
            Some(&tok),
            json!({"visibility": "private"})
        )
        .await
        .0,
        200
    );
    assert_eq!(
        s.get(&format!("{C}/publicRooms"), None).await.1["total_room_count_estimate"],
        2
    );
    s.stop().await;
}

async fn knock_report_and_timestamps(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &[]).await;
    let (_, tok, _) = s.register("alice", "pw").await;
    let (bob, bob_tok, _) = s.register("bob", "pw").await;
    let (_, carol_tok, _) = s.register("carol", "pw").await;

    // Knocking: only where the join rule says knock, and from room version 7.
    let knocky = create(&s, &tok, json!({"initial_state": [{"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}]})).await;
    let (st, v) = s
        .post(
            &format!("{C}/knock/{knocky}"),
            Some(&bob_tok),
            json!({"reason": "let me in"}),
        )
        .await;
    assert_eq!(
        (st, v["room_id"].as_str()),
        (200, Some(knocky.as_str())),
        "{v}"
    );
    let (_, m) = s
        .get(
            &format!("{C}/rooms/{knocky}/state/m.room.member/{bob}"),
            Some(&tok),
        )
        .await;
    assert_eq!(
        (m["membership"].as_str(), m["reason"].as_str()),
        (Some("knock"), Some("let me in"))
    );
    assert_eq!(
        s.post(
            &format!("{C}/rooms/{knocky}/invite"),
            Some(&tok),
            json!({"user_id": bob})
        )
        .await
        .0,
        200
    );
    assert_eq!(
        s.post(
            &format!("{C}/rooms/{knocky}/join"),
            Some(&bob_tok),
            json!({})
        )
        .await
        .0,
        200
    );
    let public = create(&s, &tok, json!({"preset": "public_chat"})).await;
    assert_error(
        &s.post(&format!("{C}/knock/{public}"), Some(&carol_tok), json!({}))
            .await,
        403,
        "M_FORBIDDEN",
    );
    let old = create(&s, &tok, json!({"room_version": "6", "initial_state": [{"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}]})).await;
    assert_error(
        &s.post(&format!("{C}/knock/{old}"), Some(&carol_tok), json!({}))
            .await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &s.post(
            &format!("{C}/knock/!nowhere:test.local"),
            Some(&carol_tok),
            json!({}),
        )
        .await,
        404,
        "M_NOT_FOUND",
    );

    // Messages to report and to find by time.
    let mut ids = Vec::new();
    for i in 0..3 {
        let (_, v) = s
            .put(
                &format!("{C}/rooms/{knocky}/send/m.room.message/ts{i}"),
                Some(&tok),
                json!({"body": format!("m{i}")}),
            )
            .await;
        ids.push(v["event_id"].as_str().unwrap().to_owned());
    }
    let (_, second) = s
        .get(&format!("{C}/rooms/{knocky}/event/{}", ids[1]), Some(&tok))
        .await;
    let ts = second["origin_server_ts"].as_u64().unwrap();
    let at = |dir: &str, ts: u64| {
        format!("/_matrix/client/v1/rooms/{knocky}/timestamp_to_event?dir={dir}&ts={ts}")
    };
    let (st, v) = s.get(&at("f", ts), Some(&bob_tok)).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["origin_server_ts"].as_u64(), Some(ts));
    let (_, v) = s.get(&at("b", ts), Some(&bob_tok)).await;
    assert_eq!(v["origin_server_ts"].as_u64(), Some(ts));
    let (_, last) = s.get(&at("b", 9_000_000_000_000_000), Some(&bob_tok)).await;
    assert_eq!(last["event_id"], ids[2].as_str());
    assert_error(
        &s.get(&at("b", 0), Some(&bob_tok)).await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &s.get(&at("f", 9_000_000_000_000_000), Some(&bob_tok)).await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &s.get(&at("f", ts), Some(&carol_tok)).await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &s.get(&at("sideways", ts), Some(&bob_tok)).await,
        400,
        "M_INVALID_PARAM",
    );

    // Reports: of events one can see, and of rooms.
    let report = |e: &str| format!("{C}/rooms/{knocky}/report/{e}");
    assert_eq!(
        s.post(&report(&ids[0]), Some(&bob_tok), json!({"reason": "rude"}))
            .await,
        (200, json!({}))
    );
    assert_error(
        &s.post(&report(&ids[0]), Some(&carol_tok), json!({"reason": "x"}))
            .await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &s.post(&report("$unknown"), Some(&bob_tok), json!({})).await,
        404,
        "M_NOT_FOUND",
    );
    assert_eq!(
        s.post(
            &format!("{C}/rooms/{knocky}/report"),
            Some(&carol_tok),
            json!({"reason": "spam room"})
        )
        .await
        .0,
        200
    );
    assert_error(
        &s.post(
            &format!("{C}/rooms/!nowhere:test.local/report"),
            Some(&carol_tok),
            json!({"reason": "x"}),
        )
        .await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &s.post(
            &format!("{C}/rooms/{knocky}/report"),
            Some(&carol_tok),
            json!({"reason": 5}),
        )
        .await,
        400,
        "M_BAD_JSON",
    );
    s.stop().await;
}

async fn upgrades(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &[]).await;
    let (alice, tok, _) = s.register("alice", "pw").await;
    let (bob, bob_tok, _) = s.register("bob", "pw").await;
    for (from, to) in [("10", "12"), ("12", "12"), ("9", "11")] {
        let name = format!("up{from}{to}");
        let old = create(
            &s,
            &tok,
            json!({
                "preset": "public_chat", "visibility": "public", "room_version": from,
                "name": "Old hall", "topic": "before", "room_alias_name": name,
            }),
        )
        .await;
        assert_eq!(
            s.post(&format!("{C}/rooms/{old}/join"), Some(&bob_tok), json!({}))
                .await
                .0,
            200
        );
        // Only someone with the power to tombstone the room may upgrade it.
        assert_error(
            &s.post(
                &format!("{C}/rooms/{old}/upgrade"),
                Some(&bob_tok),
                json!({"new_version": to}),
            )
            .await,
            403,
            "M_FORBIDDEN",
        );
        assert_error(
            &s.post(
                &format!("{C}/rooms/{old}/upgrade"),
                Some(&tok),
                json!({"new_version": "13"}),
            )
            .await,
            400,
            "M_UNSUPPORTED_ROOM_VERSION",
        );
        let (st, v) = s
            .post(
                &format!("{C}/rooms/{old}/upgrade"),
                Some(&tok),
                json!({"new_version": to}),
            )
            .await;
        assert_eq!(st, 200, "{from}->{to}: {v}");
        let new = v["replacement_room"].as_str().unwrap().to_owned();

        // The old room: tombstoned, and only moderators may speak.
        let (_, tomb) = s
            .get(
                &format!("{C}/rooms/{old}/state/m.room.tombstone"),
                Some(&tok),
            )
            .await;
        assert_eq!(tomb["replacement_room"], new.as_str());
        assert_error(
            &s.put(
                &format!("{C}/rooms/{old}/send/m.room.message/late{to}"),
                Some(&bob_tok),
                json!({"body": "x"}),
            )
            .await,
            403,
            "M_FORBIDDEN",
        );
        assert_eq!(
            s.get(&format!("{C}/directory/list/room/{old}"), None)
                .await
                .1["visibility"],
            "private"
        );

        // The new room: its version, its predecessor, the state carried over, the alias moved.
        let (_, create_ev) = s
            .get(&format!("{C}/rooms/{new}/state/m.room.create"), Some(&tok))
            .await;
        assert_eq!(
            (
                create_ev["room_version"].as_str(),
                create_ev["predecessor"]["room_id"].as_str()
            ),
            (Some(to), Some(old.as_str()))
        );
        assert_eq!(
            s.get(&format!("{C}/rooms/{new}/state/m.room.name"), Some(&tok))
                .await
                .1["name"],
            "Old hall"
        );
        assert_eq!(
            s.get(&format!("{C}/rooms/{new}/state/m.room.topic"), Some(&tok))
                .await
                .1["topic"],
            "before"
        );
        assert_eq!(
            s.get(
                &format!("{C}/rooms/{new}/state/m.room.join_rules"),
                Some(&tok)
            )
            .await
            .1["join_rule"],
            "public"
        );
        let pl = s
            .get(
                &format!("{C}/rooms/{new}/state/m.room.power_levels"),
                Some(&tok),
            )
            .await
            .1;
        if to == "12" {
            assert!(
                pl["users"].get(&alice).is_none(),
                "v12 creators are not listed"
            );
        } else {
            assert_eq!(pl["users"][&alice], 100);
        }
        let alias = format!("%23{name}:test.local");
        assert_eq!(
            s.get(&format!("{C}/directory/room/{alias}"), None).await.1["room_id"],
            new.as_str()
        );
        assert_eq!(
            s.get(
                &format!("{C}/rooms/{new}/state/m.room.canonical_alias"),
                Some(&tok)
            )
            .await
            .1["alias"],
            format!("#{name}:test.local")
        );
        assert_eq!(
            s.get(&format!("{C}/directory/list/room/{new}"), None)
                .await
                .1["visibility"],
            "public"
        );
        // Members follow by joining the new room.
        assert_eq!(
            s.post(&format!("{C}/rooms/{new}/join"), Some(&bob_tok), json!({}))
                .await
                .0,
            200
        );
        let _ = &bob;
    }
    assert_error(
        &s.post(
            &format!("{C}/rooms/!gone:test.local/upgrade"),
            Some(&tok),
            json!({"new_version": "12"}),
        )
        .await,
        404,
        "M_NOT_FOUND",
    );
    s.stop().await;
}

async fn history_visibility(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &[]).await;
    let (_, tok, _) = s.register("alice", "pw").await;
    let (bob, bob_tok, _) = s.register("bob", "pw").await;
    let (_, carol_tok, _) = s.register("carol", "pw").await;
    let room_with = |visibility: &str| {
        json!({"preset": "public_chat", "initial_state": [
            {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": visibility}}
        ]})
    };
    let say = |room: &str, txn: &str| format!("{C}/rooms/{room}/send/m.room.message/{txn}");
    let event = |room: &str, id: &Value| format!("{C}/rooms/{room}/event/{}", id.as_str().unwrap());

    // joined: only what was sent while joined.
    let room = create(&s, &tok, room_with("joined")).await;
    let (_, before) = s
        .put(&say(&room, "j1"), Some(&tok), json!({"body": "before"}))
        .await;
    assert_eq!(
        s.post(&format!("{C}/rooms/{room}/join"), Some(&bob_tok), json!({}))
            .await
            .0,
        200
    );
    let (_, after) = s
        .put(&say(&room, "j2"), Some(&tok), json!({"body": "after"}))
        .await;
    assert_error(
        &s.get(&event(&room, &before["event_id"]), Some(&bob_tok))
            .await,
        404,
        "M_NOT_FOUND",
    );
    assert_eq!(
        s.get(&event(&room, &after["event_id"]), Some(&bob_tok))
            .await
            .0,
        200
    );

    // shared (the default of every preset): members see everything.
    let room = create(&s, &tok, json!({"preset": "public_chat"})).await;
    let (_, before) = s
        .put(&say(&room, "s1"), Some(&tok), json!({"body": "before"}))
        .await;
    assert_eq!(
        s.post(&format!("{C}/rooms/{room}/join"), Some(&bob_tok), json!({}))
            .await
            .0,
        200
    );
    assert_eq!(
        s.get(&event(&room, &before["event_id"]), Some(&bob_tok))
            .await
            .0,
        200
    );

    // invited: from the invitation on.
    let room = create(&s, &tok, room_with("invited")).await;
    let (_, early) = s
        .put(&say(&room, "i1"), Some(&tok), json!({"body": "early"}))
        .await;
    assert_eq!(
        s.post(
            &format!("{C}/rooms/{room}/invite"),
            Some(&tok),
            json!({"user_id": bob})
        )
        .await
        .0,
        200
    );
    let (_, invited) = s
        .put(&say(&room, "i2"), Some(&tok), json!({"body": "invited"}))
        .await;
    assert_eq!(
        s.post(&format!("{C}/rooms/{room}/join"), Some(&bob_tok), json!({}))
            .await
            .0,
        200
    );
    assert_error(
        &s.get(&event(&room, &early["event_id"]), Some(&bob_tok))
            .await,
        404,
        "M_NOT_FOUND",
    );
    assert_eq!(
        s.get(&event(&room, &invited["event_id"]), Some(&bob_tok))
            .await
            .0,
        200
    );

    // world_readable: anyone, member or not.
    let room = create(&s, &tok, room_with("world_readable")).await;
    let (_, open) = s
        .put(&say(&room, "w1"), Some(&tok), json!({"body": "open"}))
        .await;
    assert_eq!(
        s.get(&event(&room, &open["event_id"]), Some(&carol_tok))
            .await
            .0,
        200
    );
    assert_eq!(
        s.get(&format!("{C}/rooms/{room}/state"), Some(&carol_tok))
            .await
            .0,
        200
    );
    s.stop().await;
}

async fn review_regressions(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &["registration.guests=true"]).await;
    let (_, tok, _) = s.register("alice", "pw").await;
    let (bob, bob_tok, _) = s.register("bob", "pw").await;
    let one = create(&s, &tok, json!({"preset": "public_chat"})).await;
    let two = create(&s, &tok, json!({"preset": "public_chat"})).await;
    for room in [&one, &two] {
        assert_eq!(
            s.post(&format!("{C}/rooms/{room}/join"), Some(&bob_tok), json!({}))
                .await
                .0,
            200
        );
    }
    // A transaction ID is scoped to its request: the same ID in another room sends anew.
    let (_, a) = s
        .put(
            &format!("{C}/rooms/{one}/send/m.room.message/same"),
            Some(&bob_tok),
            json!({"body": "1"}),
        )
        .await;
    let (_, b2) = s
        .put(
            &format!("{C}/rooms/{two}/send/m.room.message/same"),
            Some(&bob_tok),
            json!({"body": "2"}),
        )
        .await;
    assert_ne!(a["event_id"], b2["event_id"]);
    let (_, e) = s
        .get(
            &format!("{C}/rooms/{two}/event/{}", b2["event_id"].as_str().unwrap()),
            Some(&bob_tok),
        )
        .await;
    assert_eq!(e["content"]["body"], "2");
    let (_, again) = s
        .put(
            &format!("{C}/rooms/{one}/send/m.room.message/same"),
            Some(&bob_tok),
            json!({"body": "1"}),
        )
        .await;
    assert_eq!(again["event_id"], a["event_id"]);

    // Kick needs someone in the room; unban needs a ban.
    assert_error(
        &s.post(
            &format!("{C}/rooms/{one}/unban"),
            Some(&tok),
            json!({"user_id": bob}),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );
    assert_eq!(
        s.post(
            &format!("{C}/rooms/{one}/ban"),
            Some(&tok),
            json!({"user_id": bob})
        )
        .await
        .0,
        200
    );
    assert_error(
        &s.post(
            &format!("{C}/rooms/{one}/kick"),
            Some(&tok),
            json!({"user_id": bob}),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );
    let (_, m) = s
        .get(
            &format!("{C}/rooms/{one}/state/m.room.member/{bob}"),
            Some(&tok),
        )
        .await;
    assert_eq!(m["membership"], "ban", "a kick must not unban");

    // Listing and aliases need membership as well as power: a creator who left has neither.
    assert_eq!(
        s.post(&format!("{C}/rooms/{two}/leave"), Some(&tok), json!({}))
            .await
            .0,
        200
    );
    assert_error(
        &s.put(
            &format!("{C}/directory/list/room/{two}"),
            Some(&tok),
            json!({"visibility": "public"}),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );

    // Guests join only where m.room.guest_access says can_join.
    let (_, guest) = s
        .post(&format!("{C}/register?kind=guest"), None, json!({}))
        .await;
    let guest_tok = guest["access_token"].as_str().unwrap().to_owned();
    assert_error(
        &s.post(
            &format!("{C}/rooms/{one}/join"),
            Some(&guest_tok),
            json!({}),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );
    let open = create(&s, &tok, json!({"preset": "public_chat", "initial_state": [
        {"type": "m.room.guest_access", "state_key": "", "content": {"guest_access": "can_join"}}
    ]})).await;
    assert_eq!(
        s.post(
            &format!("{C}/rooms/{open}/join"),
            Some(&guest_tok),
            json!({})
        )
        .await
        .0,
        200
    );
    s.stop().await;
}

async fn joined_count(s: &TestServer, tok: &str) -> usize {
    let (st, v) = s.get(&format!("{C}/joined_rooms"), Some(tok)).await;
    assert_eq!(st, 200, "{v}");
    v["joined_rooms"].as_array().unwrap().len()
}

/// A `createRoom` whose initial events the auth rules refuse leaves nothing behind: no room
/// joined, no alias taken, nothing listed; the same request fixed then succeeds.
async fn create_room_fails_whole(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &[]).await;
    let (alice, tok, _) = s.register("alice", "pw").await;
    let (bob, _, _) = s.register("bob", "pw").await;
    let server = alice.split(':').nth(1).unwrap().to_owned();
    // Late failures: a power levels override that leaves the creator unable to send the
    // preset's state (v11, where creators have no power of their own), and an initial state
    // event the creator may not send (another user's join).
    let bad_requests = [
        json!({"room_version": "11", "room_alias_name": "late", "visibility": "public",
               "power_level_content_override": {"users": {alice.clone(): 10}}}),
        json!({"room_alias_name": "late", "visibility": "public", "initial_state": [
            {"type": "m.room.member", "state_key": bob, "content": {"membership": "join"}}]}),
    ];
    for body in bad_requests {
        let got = s
            .post(&format!("{C}/createRoom"), Some(&tok), body.clone())
            .await;
        assert_error(&got, 403, "M_FORBIDDEN");
        assert_eq!(joined_count(&s, &tok).await, 0, "no room left by {body}");
        let (st, v) = s
            .get(
                &format!(
                    "{C}/directory/room/{}",
                    common::enc(&format!("#late:{server}"))
                ),
                None,
            )
            .await;
        assert_eq!(st, 404, "the alias stays free: {v}");
        let (st, v) = s.get(&format!("{C}/publicRooms"), None).await;
        assert_eq!(st, 200);
        assert_eq!(
            v["chunk"].as_array().unwrap().len(),
            0,
            "nothing listed: {v}"
        );
    }
    // An invitee on a server that cannot be reached: the room made for it is abandoned.
    let got = s
        .post(
            &format!("{C}/createRoom"),
            Some(&tok),
            json!({"invite": ["@someone:elsewhere.example"]}),
        )
        .await;
    assert_error(&got, 502, "M_UNKNOWN");
    assert_eq!(joined_count(&s, &tok).await, 0);
    // The same alias, fixed request: a whole room.
    let room = create(
        &s,
        &tok,
        json!({"room_version": "11", "room_alias_name": "late", "invite": [bob],
               "power_level_content_override": {"state_default": 100, "users": {alice.clone(): 100}}}),
    )
    .await;
    let (st, state) = s.get(&format!("{C}/rooms/{room}/state"), Some(&tok)).await;
    assert_eq!(st, 200);
    assert!(state_of(&state, "m.room.member", &bob)
        .is_some_and(|e| e["content"]["membership"] == "invite"));
    assert!(state_of(&state, "m.room.canonical_alias", "").is_some());
    assert_eq!(joined_count(&s, &tok).await, 1);
    s.stop().await;
}

/// Work that needs another server answers an error, never a success for work not done: an
/// invite of a user whose server cannot be reached (no invite event is made). To-device
/// messages for other servers' users are queued for them.
async fn remote_work_is_refused(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &[]).await;
    let (_, tok, _) = s.register("alice", "pw").await;
    let (bob, _, _) = s.register("bob", "pw").await;
    let room = create(&s, &tok, json!({})).await;
    let remote = "@someone:elsewhere.example";
    let got = s
        .post(
            &format!("{C}/rooms/{room}/invite"),
            Some(&tok),
            json!({"user_id": remote}),
        )
        .await;
    assert_error(&got, 502, "M_UNKNOWN");
    let (_, state) = s.get(&format!("{C}/rooms/{room}/state"), Some(&tok)).await;
    assert!(
        state_of(&state, "m.room.member", remote).is_none(),
        "{state}"
    );
    // To-device messages for another server's user are queued for it (see
    // tests/federation.rs), with the local ones delivered.
    let (st, v) = s
        .put(
            &format!("{C}/sendToDevice/m.test/t1"),
            Some(&tok),
            json!({"messages": {remote: {"DEV": {"a": 1}}, bob.clone(): {"*": {"a": 1}}}}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    // Local recipients alone still work.
    let (st, v) = s
        .put(
            &format!("{C}/sendToDevice/m.test/t2"),
            Some(&tok),
            json!({"messages": {bob: {"*": {"a": 1}}}}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    s.stop().await;
}

/// A redaction from another server that arrives before the event it redacts (fed to the
/// roomserver's `InputRoomEvent` on the internal listener, as federation will): once the
/// target arrives, `/event` and `/sync` serve it redacted, with the redaction that came first.
async fn a_redaction_before_its_target(b: Backend, t: Topology) {
    let extra: &[&str] = match t {
        Topology::Local => &[
            "components.internal_listen=127.0.0.1:0",
            common::INTERNAL_SECRET,
        ],
        Topology::Bridged => &[],
    };
    let s = TestServer::start(b, t, extra).await;
    let internal = [&s.userapi_node, &s.node]
        .into_iter()
        .find_map(|n| n.as_ref().and_then(|n| n.internal_addr))
        .expect("an internal listener");
    let secret = common::INTERNAL_SECRET
        .split_once('=')
        .map(|(_, v)| v)
        .unwrap();
    let (_, tok, _) = s.register("alice", "pw").await;
    let (bob, bob_tok, _) = s.register("bob", "pw").await;
    let room = create(
        &s,
        &tok,
        json!({"room_version": "11", "preset": "public_chat"}),
    )
    .await;
    let (st, _) = s
        .post(&format!("{C}/rooms/{room}/join"), Some(&bob_tok), json!({}))
        .await;
    assert_eq!(st, 200);
    let (_, state) = s.get(&format!("{C}/rooms/{room}/state"), Some(&tok)).await;
    let id_of = |kind: &str, key: &str| -> String {
        state
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["type"] == kind && e["state_key"] == key)
            .unwrap()["event_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (create_id, pl, bob_join) = (
        id_of("m.room.create", ""),
        id_of("m.room.power_levels", ""),
        id_of("m.room.member", &bob),
    );
    // Bob's server (this one: its key is the only one known) sends his message and his
    // redaction of it, both after his join; the redaction arrives first.
    let key = myelin::signing_key::SigningKey::load_or_generate(s.db.dir.path()).unwrap();
    let pdu = |kind: &str, content: Value, redacts: Option<&str>| {
        myelin::pdu::PduBuilder {
            room_version: ruma::RoomVersionId::V11,
            room_id: Some(room.as_str().try_into().unwrap()),
            sender: bob.as_str().try_into().unwrap(),
            event_type: kind.into(),
            state_key: None,
            content,
            redacts: redacts.map(|r| r.try_into().unwrap()),
            prev_events: vec![bob_join.as_str().try_into().unwrap()],
            auth_events: [&create_id, &pl, &bob_join]
                .iter()
                .map(|id| id.as_str().try_into().unwrap())
                .collect(),
            reference_hashes: Default::default(),
            depth: 100u32.into(),
            origin_server_ts: ruma::MilliSecondsSinceUnixEpoch::now(),
        }
        .build(&key, "test.local".try_into().unwrap())
        .unwrap()
    };
    let said = pdu(
        "m.room.message",
        json!({"msgtype": "m.text", "body": "oops"}),
        None,
    );
    let said_id = said.event_id.to_string();
    let redaction = pdu("m.room.redaction", json!({}), Some(&said_id));
    for p in [&redaction, &said] {
        let mut res = s
            .client
            .post(format!(
                "http://{internal}/_myelin/internal/roomserver/InputRoomEvent"
            ))
            .insert_header(("Authorization", format!("Bearer {secret}")))
            .send_json(&json!({"room_id": room, "event": p.json}))
            .await
            .unwrap();
        let v: Value = res.json().await.unwrap();
        assert_eq!(
            v["Ok"]["Accepted"]["event_id"],
            p.event_id.as_str(),
            "{b:?} {t:?}: {v}"
        );
    }
    let (st, e) = s
        .get(
            &format!("{C}/rooms/{room}/event/{}", common::enc(&said_id)),
            Some(&tok),
        )
        .await;
    assert_eq!(st, 200, "{e}");
    assert_eq!(e["content"], json!({}), "{b:?} {t:?}: {e}");
    assert_eq!(
        e["unsigned"]["redacted_because"]["event_id"],
        redaction.event_id.as_str()
    );
    let (_, sync) = s.get(&format!("{C}/sync"), Some(&tok)).await;
    let timeline = sync["rooms"]["join"][&room]["timeline"]["events"]
        .as_array()
        .unwrap();
    let shown = timeline
        .iter()
        .find(|e| e["event_id"] == said_id.as_str())
        .expect("the message in the timeline");
    assert_eq!(shown["content"], json!({}), "{shown}");
    assert!(shown["unsigned"]["redacted_because"].is_object(), "{shown}");
    s.stop().await;
}

scenarios!(
    create_room_fails_whole,
    remote_work_is_refused,
    review_regressions,
    history_visibility,
    upgrades,
    knock_report_and_timestamps,
    aliases_and_directory,
    redactions,
    joined_rooms_and_forget,
    create_rooms_of_each_preset_and_version,
    talk_and_state,
    membership,
    a_redaction_before_its_target
);
