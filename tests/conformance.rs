//! Behaviours real clients and a conformance suite expect, as Synapse has them (issue 9):
//! the endpoints clients call at start (push rules, TURN, third-party protocols, OpenID,
//! versions), profile changes reaching rooms, state deduplication and the event size limit,
//! on both databases, with the components in-process and behind the HTTP bridge.

mod common;

use common::{assert_error, create, enc, Backend, TestServer, Topology};
use serde_json::{json, Value};

const C: &str = "/_matrix/client/v3";

async fn sync(s: &TestServer, token: &str, query: &str) -> Value {
    let (st, v) = s.get(&format!("{C}/sync?{query}"), Some(token)).await;
    assert_eq!(st, 200, "sync?{query}: {v}");
    v
}

fn rule_ids(rules: &Value, kind: &str) -> Vec<String> {
    rules[kind]
        .as_array()
        .unwrap_or_else(|| panic!("no {kind} rules in {rules}"))
        .iter()
        .map(|r| r["rule_id"].as_str().unwrap().to_owned())
        .collect()
}

/// The push rules of `m.push_rules` in a sync's global account data.
fn synced_push_rules(v: &Value) -> Option<Value> {
    v["account_data"]["events"]
        .as_array()?
        .iter()
        .find(|e| e["type"] == "m.push_rules")
        .map(|e| e["content"]["global"].clone())
}

async fn push_rules(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &[]).await;
    let (uid, tok, _) = s.register("alice", "pw").await;
    let p = format!("{C}/pushrules");
    assert_error(&s.get(&format!("{p}/"), None).await, 401, "M_MISSING_TOKEN");

    // The server defaults, in the spec's order.
    let (st, all) = s.get(&format!("{p}/"), Some(&tok)).await;
    assert_eq!(st, 200, "{all}");
    let g = &all["global"];
    let over = rule_ids(g, "override");
    assert_eq!(over[0], ".m.rule.master");
    assert_eq!(g["override"][0]["enabled"], false);
    for id in [
        ".m.rule.suppress_notices",
        ".m.rule.invite_for_me",
        ".m.rule.member_event",
        ".m.rule.is_user_mention",
        ".m.rule.contains_display_name",
        ".m.rule.is_room_mention",
        ".m.rule.roomnotif",
        ".m.rule.tombstone",
        ".m.rule.reaction",
        ".m.rule.room.server_acl",
        ".m.rule.suppress_edits",
    ] {
        assert!(over.iter().any(|r| r == id), "{id} missing: {over:?}");
    }
    assert_eq!(rule_ids(g, "content"), vec![".m.rule.contains_user_name"]);
    assert_eq!(g["content"][0]["pattern"], "alice");
    let under = rule_ids(g, "underride");
    assert_eq!(under.first().map(String::as_str), Some(".m.rule.call"));
    assert!(under.iter().any(|r| r == ".m.rule.message"));
    assert!(under.iter().any(|r| r == ".m.rule.encrypted"));
    assert_eq!(g["room"], json!([]));
    assert_eq!(g["sender"], json!([]));
    // The global scope is the rule set itself; one kind is its list (as Synapse).
    let (st, global) = s.get(&format!("{p}/global/"), Some(&tok)).await;
    assert_eq!((st, &global), (200, g));
    let (st, kind) = s.get(&format!("{p}/global/underride/"), Some(&tok)).await;
    assert_eq!((st, &kind), (200, &g["underride"]));
    assert_eq!(g["postcontent"], json!([]));
    assert_eq!(
        g["underride"][3]["actions"],
        json!(["notify", {"set_tweak": "highlight", "value": false}]),
        "Synapse's shape of the defaults"
    );

    // The first sync carries them as account data, before any change.
    let first = sync(&s, &tok, "").await;
    assert_eq!(synced_push_rules(&first).as_ref(), Some(g), "{first}");
    let since = first["next_batch"].as_str().unwrap().to_owned();

    // One rule, its attributes.
    let (st, r) = s
        .get(&format!("{p}/global/override/.m.rule.master"), Some(&tok))
        .await;
    assert_eq!(
        (st, r["rule_id"].as_str(), r["default"].as_bool()),
        (200, Some(".m.rule.master"), Some(true))
    );
    let (st, r) = s
        .get(
            &format!("{p}/global/underride/.m.rule.message/actions"),
            Some(&tok),
        )
        .await;
    assert_eq!(
        (st, &r["actions"]),
        (
            200,
            &json!(["notify", {"set_tweak": "highlight", "value": false}])
        )
    );
    let (st, r) = s
        .get(
            &format!("{p}/global/override/.m.rule.master/enabled"),
            Some(&tok),
        )
        .await;
    assert_eq!((st, &r), (200, &json!({"enabled": false})));

    // Disable a default, change its actions.
    let (st, v) = s
        .put(
            &format!("{p}/global/override/.m.rule.suppress_notices/enabled"),
            Some(&tok),
            json!({"enabled": false}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = s
        .put(
            &format!("{p}/global/underride/.m.rule.message/actions"),
            Some(&tok),
            json!({"actions": ["notify", {"set_tweak": "sound", "value": "ping"}]}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (_, r) = s
        .get(
            &format!("{p}/global/override/.m.rule.suppress_notices"),
            Some(&tok),
        )
        .await;
    assert_eq!(r["enabled"], false);
    let (_, r) = s
        .get(
            &format!("{p}/global/underride/.m.rule.message/actions"),
            Some(&tok),
        )
        .await;
    assert_eq!(r["actions"][1]["value"], "ping");

    // User-defined rules of each kind, placed with before/after.
    let room = create(&s, &tok, json!({})).await;
    for (kind, id, body) in [
        (
            "override",
            "o1",
            json!({"actions": ["dont_notify"], "conditions": [{"kind": "event_match", "key": "type", "pattern": "m.x"}]}),
        ),
        ("override", "o2", json!({"actions": [], "conditions": []})),
        (
            "content",
            "c1",
            json!({"actions": ["notify"], "pattern": "cake"}),
        ),
        ("room", room.as_str(), json!({"actions": ["dont_notify"]})),
        ("sender", "@bob:test.local", json!({"actions": []})),
        (
            "underride",
            "u1",
            json!({"actions": ["notify"], "conditions": []}),
        ),
    ] {
        let (st, v) = s
            .put(&format!("{p}/global/{kind}/{}", enc(id)), Some(&tok), body)
            .await;
        assert_eq!(st, 200, "PUT {kind}/{id}: {v}");
    }
    let (st, v) = s
        .put(
            &format!("{p}/global/override/o3?before=o1"),
            Some(&tok),
            json!({"actions": [], "conditions": []}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = s
        .put(
            &format!("{p}/global/override/o4?after=o1"),
            Some(&tok),
            json!({"actions": [], "conditions": []}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (_, all) = s.get(&format!("{p}/"), Some(&tok)).await;
    let over = rule_ids(&all["global"], "override");
    // The master rule stays first; user rules come before the other defaults.
    assert_eq!(
        &over[..5],
        &[".m.rule.master", "o2", "o3", "o1", "o4"],
        "{over:?}"
    );
    assert_eq!(rule_ids(&all["global"], "room"), vec![room.clone()]);
    assert_eq!(rule_ids(&all["global"], "sender"), vec!["@bob:test.local"]);
    assert_eq!(rule_ids(&all["global"], "content")[0], "c1");
    assert_eq!(rule_ids(&all["global"], "underride")[0], "u1");
    let (_, r) = s.get(&format!("{p}/global/content/c1"), Some(&tok)).await;
    assert_eq!(
        (
            r["pattern"].as_str(),
            r["default"].as_bool(),
            r["enabled"].as_bool()
        ),
        (Some("cake"), Some(false), Some(true))
    );

    // Errors.
    for (method, path, body, status, code) in [
        (
            "GET",
            format!("{p}/global/override/nope"),
            None,
            404,
            "M_NOT_FOUND",
        ),
        (
            "GET",
            format!("{p}/global/override/nope/enabled"),
            None,
            404,
            "M_NOT_FOUND",
        ),
        (
            "PUT",
            format!("{p}/global/override/nope/enabled"),
            Some(json!({"enabled": true})),
            404,
            "M_NOT_FOUND",
        ),
        (
            "PUT",
            format!("{p}/global/override/nope/actions"),
            Some(json!({"actions": []})),
            404,
            "M_NOT_FOUND",
        ),
        (
            "DELETE",
            format!("{p}/global/override/nope"),
            None,
            404,
            "M_NOT_FOUND",
        ),
        // Server-default rules can be disabled, never deleted.
        (
            "DELETE",
            format!("{p}/global/override/.m.rule.master"),
            None,
            404,
            "M_NOT_FOUND",
        ),
        (
            "GET",
            format!("{p}/device/override/o1"),
            None,
            400,
            "M_UNRECOGNIZED",
        ),
        (
            "PUT",
            format!("{p}/device/override/o9"),
            Some(json!({"actions": [], "conditions": []})),
            400,
            "M_UNRECOGNIZED",
        ),
        (
            "GET",
            format!("{p}/global/weird/o1"),
            None,
            400,
            "M_UNRECOGNIZED",
        ),
        (
            "DELETE",
            format!("{p}/global/weird/o1"),
            None,
            400,
            "M_UNRECOGNIZED",
        ),
        (
            "GET",
            format!("{p}/global/weird/"),
            None,
            400,
            "M_UNRECOGNIZED",
        ),
        (
            "PUT",
            format!("{p}/global/override/"),
            Some(json!({"actions": []})),
            400,
            "M_UNRECOGNIZED",
        ),
        ("GET", p.clone(), None, 404, "M_UNRECOGNIZED"),
        (
            "PUT",
            format!("{p}/global/override/o6"),
            Some(json!({"actions": ["bogus"], "conditions": []})),
            400,
            "M_UNKNOWN",
        ),
        // A new rule may not take a server-default ID, and needs what its kind needs.
        (
            "PUT",
            format!("{p}/global/override/.m.rule.mine"),
            Some(json!({"actions": [], "conditions": []})),
            400,
            "M_UNKNOWN",
        ),
        (
            "PUT",
            format!("{p}/global/content/c2"),
            Some(json!({"actions": []})),
            400,
            "M_BAD_JSON",
        ),
        (
            "PUT",
            format!("{p}/global/room/not-a-room"),
            Some(json!({"actions": []})),
            400,
            "M_INVALID_PARAM",
        ),
        (
            "PUT",
            format!("{p}/global/override/o5?before=nope"),
            Some(json!({"actions": [], "conditions": []})),
            400,
            "M_UNKNOWN",
        ),
        (
            "PUT",
            format!("{p}/global/override/o5?after=.m.rule.master"),
            Some(json!({"actions": [], "conditions": []})),
            400,
            "M_UNKNOWN",
        ),
        (
            "PUT",
            format!("{p}/global/override/o1/enabled"),
            Some(json!({})),
            400,
            "M_BAD_JSON",
        ),
    ] {
        let got = s.call(method, &path, Some(&tok), body).await;
        assert_eq!(
            (got.0, got.1["errcode"].as_str()),
            (status, Some(code)),
            "{method} {path}: {}",
            got.1
        );
    }
    // Pushing rules through the account-data API is refused, as Synapse does; reading works.
    assert_error(
        &s.put(
            &format!("{C}/user/{}/account_data/m.push_rules", enc(&uid)),
            Some(&tok),
            json!({"global": {}}),
        )
        .await,
        405,
        "M_BAD_JSON",
    );
    let (st, v) = s
        .get(
            &format!("{C}/user/{}/account_data/m.push_rules", enc(&uid)),
            Some(&tok),
        )
        .await;
    assert_eq!(st, 200);
    assert_eq!(rule_ids(&v["global"], "override")[1], "o2");

    // Deleting user rules.
    for path in ["override/o2", "sender/%40bob%3Atest.local"] {
        let (st, v) = s
            .call("DELETE", &format!("{p}/global/{path}"), Some(&tok), None)
            .await;
        assert_eq!(st, 200, "{path}: {v}");
    }
    assert_error(
        &s.get(&format!("{p}/global/override/o2"), Some(&tok)).await,
        404,
        "M_NOT_FOUND",
    );

    // An incremental sync brings the changed rules; they survive a restart of the syncapi's view.
    let next = sync(&s, &tok, &format!("since={since}")).await;
    let synced = synced_push_rules(&next).expect("m.push_rules after changes");
    let (_, all) = s.get(&format!("{p}/"), Some(&tok)).await;
    assert_eq!(synced, all["global"]);
    assert!(!rule_ids(&synced, "override").contains(&"o2".to_owned()));
    assert_eq!(synced["sender"], json!([]));
    // Rules are per user.
    let (_, bob_tok, _) = s.register("bob", "pw").await;
    let (_, bob) = s.get(&format!("{p}/"), Some(&bob_tok)).await;
    assert_eq!(bob["global"]["content"][0]["pattern"], "bob");
    assert!(!rule_ids(&bob["global"], "override").contains(&"o1".to_owned()));
    s.stop().await;
}

async fn start_up_endpoints(b: Backend, t: Topology) {
    let s = TestServer::start(
        b,
        t,
        &[
            "voip.turn_uris=[\"turn:turn.test.local:3478?transport=udp\",\"turns:turn.test.local:5349\"]",
            "voip.turn_shared_secret=\"s3cret\"",
            "voip.turn_user_lifetime_ms=86400000",
        ],
    )
    .await;
    let (uid, tok, _) = s.register("alice", "pw").await;

    // /versions: Synapse's list, r0.0.1 to v1.12.
    let (st, v) = s.get("/_matrix/client/versions", None).await;
    assert_eq!(st, 200);
    let versions: Vec<&str> = v["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect();
    for want in ["r0.0.1", "r0.5.0", "r0.6.1", "v1.1", "v1.6", "v1.12"] {
        assert!(versions.contains(&want), "{want} missing from {versions:?}");
    }

    // TURN: time-limited credentials from the shared secret.
    assert_error(
        &s.get(&format!("{C}/voip/turnServer"), None).await,
        401,
        "M_MISSING_TOKEN",
    );
    let (st, v) = s.get(&format!("{C}/voip/turnServer"), Some(&tok)).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["ttl"], 86400);
    assert_eq!(v["uris"].as_array().map(Vec::len), Some(2));
    let username = v["username"].as_str().unwrap();
    let (expiry, user) = username.split_once(':').unwrap();
    assert_eq!(user, uid);
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let expiry: u64 = expiry.parse().unwrap();
    assert!(
        expiry > now_s + 86_000 && expiry <= now_s + 86_401,
        "{expiry} vs {now_s}"
    );
    assert_eq!(v["password"].as_str().map(str::len), Some(28), "{v}");

    // Third-party protocols: none without bridges.
    let (st, v) = s
        .get(&format!("{C}/thirdparty/protocols"), Some(&tok))
        .await;
    assert_eq!((st, v), (200, json!({})));
    assert_error(
        &s.get(&format!("{C}/thirdparty/protocols"), None).await,
        401,
        "M_MISSING_TOKEN",
    );

    // OpenID: a token a third party resolves to the user through the federation API.
    let path = format!("{C}/user/{}/openid/request_token", enc(&uid));
    let (st, v) = s.post(&path, Some(&tok), json!({})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["matrix_server_name"], "test.local");
    assert_eq!(v["expires_in"], 3600);
    let openid = v["access_token"].as_str().unwrap().to_owned();
    let (st, v) = s
        .get(
            &format!(
                "/_matrix/federation/v1/openid/userinfo?access_token={}",
                enc(&openid)
            ),
            None,
        )
        .await;
    assert_eq!((st, v["sub"].as_str()), (200, Some(uid.as_str())), "{v}");
    assert_error(
        &s.get(
            "/_matrix/federation/v1/openid/userinfo?access_token=nope",
            None,
        )
        .await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    // The client's access token is no OpenID token.
    assert_error(
        &s.get(
            &format!("/_matrix/federation/v1/openid/userinfo?access_token={tok}"),
            None,
        )
        .await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    let (_, bob_tok, _) = s.register("bob", "pw").await;
    assert_error(
        &s.post(&path, Some(&bob_tok), json!({})).await,
        403,
        "M_FORBIDDEN",
    );
    s.stop().await;

    // Without TURN configuration: an empty object, as Synapse.
    let s = TestServer::start(b, t, &[]).await;
    let (_, tok, _) = s.register("carol", "pw").await;
    let (st, v) = s.get(&format!("{C}/voip/turnServer"), Some(&tok)).await;
    assert_eq!((st, v), (200, json!({})));
    s.stop().await;
}

/// The member event of `user` in the state of a room.
async fn member_content(s: &TestServer, tok: &str, room: &str, user: &str) -> Value {
    let (st, v) = s
        .get(
            &format!("{C}/rooms/{room}/state/m.room.member/{}", enc(user)),
            Some(tok),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    v
}

async fn profile_changes_reach_rooms(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &[]).await;
    let (alice, tok, _) = s.register("alice", "pw").await;
    let (bob, bob_tok, _) = s.register("bob", "pw").await;
    let r1 = create(&s, &tok, json!({"preset": "public_chat"})).await;
    let r2 = create(&s, &tok, json!({"preset": "public_chat"})).await;
    let left = create(&s, &tok, json!({"preset": "public_chat"})).await;
    for r in [&r1, &r2, &left] {
        assert_eq!(
            s.post(&format!("{C}/rooms/{r}/join"), Some(&bob_tok), json!({}))
                .await
                .0,
            200
        );
    }
    assert_eq!(
        s.post(&format!("{C}/rooms/{left}/leave"), Some(&tok), json!({}))
            .await
            .0,
        200
    );
    let since = sync(&s, &bob_tok, "").await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();

    let (st, v) = s
        .put(
            &format!("{C}/profile/{}/displayname", enc(&alice)),
            Some(&tok),
            json!({"displayname": "Alice Liddell"}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    for r in [&r1, &r2] {
        let c = member_content(&s, &bob_tok, r, &alice).await;
        assert_eq!(
            (c["membership"].as_str(), c["displayname"].as_str()),
            (Some("join"), Some("Alice Liddell"))
        );
    }
    // A room alice left keeps her leave.
    assert_eq!(
        member_content(&s, &bob_tok, &left, &alice).await["membership"],
        "leave"
    );

    // Bob's next sync shows the new member event in the timeline, not a full state sync.
    let v = sync(&s, &bob_tok, &format!("since={since}&timeout=0")).await;
    for r in [&r1, &r2] {
        let room = &v["rooms"]["join"][r.as_str()];
        let events = room["timeline"]["events"].as_array().expect("timeline");
        let member: Vec<&Value> = events
            .iter()
            .filter(|e| e["type"] == "m.room.member" && e["state_key"] == alice.as_str())
            .collect();
        assert_eq!(member.len(), 1, "{room}");
        assert_eq!(member[0]["content"]["displayname"], "Alice Liddell");
        assert_eq!(member[0]["unsigned"]["prev_content"]["membership"], "join");
        let state = room["state"]["events"].as_array().map_or(0, Vec::len);
        assert_eq!(state, 0, "no state beyond the timeline: {room}");
    }
    assert!(v["rooms"]["join"].get(left.as_str()).is_none());

    // The avatar too, and clearing it.
    let (st, _) = s
        .put(
            &format!("{C}/profile/{}/avatar_url", enc(&alice)),
            Some(&tok),
            json!({"avatar_url": "mxc://test.local/abc"}),
        )
        .await;
    assert_eq!(st, 200);
    let c = member_content(&s, &bob_tok, &r1, &alice).await;
    assert_eq!(
        (c["avatar_url"].as_str(), c["displayname"].as_str()),
        (Some("mxc://test.local/abc"), Some("Alice Liddell"))
    );
    // /joined_members shows both, and null for what a member has not set.
    let (st, v) = s
        .get(&format!("{C}/rooms/{r1}/joined_members"), Some(&bob_tok))
        .await;
    assert_eq!(st, 200);
    assert_eq!(
        v["joined"][alice.as_str()],
        json!({"display_name": "Alice Liddell", "avatar_url": "mxc://test.local/abc"})
    );
    assert_eq!(
        v["joined"][bob.as_str()],
        json!({"display_name": "bob", "avatar_url": null})
    );
    let (st, _) = s
        .call(
            "DELETE",
            &format!("{C}/profile/{}/avatar_url", enc(&alice)),
            Some(&tok),
            None,
        )
        .await;
    assert!(st == 200 || st == 404 || st == 405, "{st}");
    let (st, _) = s
        .put(
            &format!("{C}/profile/{}/avatar_url", enc(&alice)),
            Some(&tok),
            json!({"avatar_url": ""}),
        )
        .await;
    assert_eq!(st, 200);
    let c = member_content(&s, &bob_tok, &r1, &alice).await;
    assert!(c.get("avatar_url").is_none(), "{c}");

    // Setting the same name again sends nothing.
    let before = sync(&s, &bob_tok, "").await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    s.put(
        &format!("{C}/profile/{}/displayname", enc(&alice)),
        Some(&tok),
        json!({"displayname": "Alice Liddell"}),
    )
    .await;
    let v = sync(&s, &bob_tok, &format!("since={before}&timeout=0")).await;
    assert!(v["rooms"]["join"].get(r1.as_str()).is_none(), "{v}");
    s.stop().await;
}

async fn identical_state_is_not_sent_twice(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &[]).await;
    let (_, tok, _) = s.register("alice", "pw").await;
    let (_, bob_tok, _) = s.register("bob", "pw").await;
    let room = create(&s, &tok, json!({"preset": "public_chat"})).await;
    let put_name = |name: &'static str, tok: String| {
        let s = &s;
        let room = room.clone();
        async move {
            let (st, v) = s
                .put(
                    &format!("{C}/rooms/{room}/state/m.room.name/"),
                    Some(&tok),
                    json!({"name": name}),
                )
                .await;
            assert_eq!(st, 200, "{v}");
            v["event_id"].as_str().unwrap().to_owned()
        }
    };
    let first = put_name("Lounge", tok.clone()).await;
    assert_eq!(put_name("Lounge", tok.clone()).await, first);
    let other = put_name("Parlour", tok.clone()).await;
    assert_ne!(other, first);
    // The same content again after a change is a new event.
    assert_ne!(put_name("Lounge", tok.clone()).await, first);

    // Joining again with the same member content changes nothing.
    let (st, _) = s
        .post(&format!("{C}/rooms/{room}/join"), Some(&bob_tok), json!({}))
        .await;
    assert_eq!(st, 200);
    let (_, m1) = s
        .get(
            &format!("{C}/rooms/{room}/messages?dir=b&limit=50"),
            Some(&bob_tok),
        )
        .await;
    let (st, _) = s
        .post(&format!("{C}/rooms/{room}/join"), Some(&bob_tok), json!({}))
        .await;
    assert_eq!(st, 200);
    let (_, m2) = s
        .get(
            &format!("{C}/rooms/{room}/messages?dir=b&limit=50"),
            Some(&bob_tok),
        )
        .await;
    assert_eq!(
        m1["chunk"].as_array().map(Vec::len),
        m2["chunk"].as_array().map(Vec::len)
    );
    s.stop().await;
}

async fn registration_and_uia(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &["registration.guests=true"]).await;
    let r = format!("{C}/register");
    // The parameters go once, with the first request; then only auth.
    let (st, v) = s
        .post(
            &r,
            None,
            json!({"username": "ülrich", "password": "pässwörd ✓", "initial_device_display_name": "Phone"}),
        )
        .await;
    assert_error(&(st, v), 400, "M_INVALID_USERNAME");
    let (st, v) = s
        .post(
            &r,
            None,
            json!({"username": "ulrich", "password": "pässwörd ✓", "initial_device_display_name": "Phone"}),
        )
        .await;
    assert_eq!(st, 401, "{v}");
    let session = v["session"].as_str().unwrap().to_owned();
    let complete = json!({"auth": {"type": "m.login.dummy", "session": session}});
    let (st, first) = s.post(&r, None, complete.clone()).await;
    assert_eq!(st, 200, "{first}");
    assert_eq!(first["user_id"], "@ulrich:test.local");
    let tok = first["access_token"].as_str().unwrap().to_owned();
    let (_, devices) = s.get(&format!("{C}/devices"), Some(&tok)).await;
    assert_eq!(devices["devices"][0]["display_name"], "Phone");
    // The completing request again: the same account, a new login.
    let (st, again) = s.post(&r, None, complete.clone()).await;
    assert_eq!(st, 200, "{again}");
    assert_eq!(again["user_id"], first["user_id"]);
    assert_ne!(again["access_token"], first["access_token"]);
    assert_ne!(again["device_id"], first["device_id"]);
    // The non-ASCII password logs in.
    let (st, v) = s
        .post(
            &format!("{C}/login"),
            None,
            json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "ulrich"}, "password": "pässwörd ✓"}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    // A fresh session for the same name finds it taken.
    assert_error(
        &s.post(
            &r,
            None,
            json!({"username": "ulrich", "password": "x", "auth": {"type": "m.login.dummy"}}),
        )
        .await,
        400,
        "M_USER_IN_USE",
    );

    // inhibit_login: an account and no session.
    let (st, v) = s
        .post(
            &r,
            None,
            json!({"username": "quiet", "password": "pw", "inhibit_login": true, "auth": {"type": "m.login.dummy"}}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["user_id"], "@quiet:test.local");
    assert!(
        v.get("access_token").is_none() && v["device_id"].is_null(),
        "{v}"
    );
    assert_eq!(s.login("quiet", "pw").await.0, 200);

    // A guest upgrades to a full account and keeps the user ID.
    let (st, g) = s.post(&format!("{r}?kind=guest"), None, json!({})).await;
    assert_eq!(st, 200, "{g}");
    let guest_id = g["user_id"].as_str().unwrap().to_owned();
    let guest_tok = g["access_token"].as_str().unwrap().to_owned();
    assert_error(
        &s.get(&format!("{C}/joined_rooms"), Some(&guest_tok)).await,
        403,
        "M_GUEST_ACCESS_FORBIDDEN",
    );
    let (st, v) = s
        .post(
            &r,
            None,
            json!({"password": "upgraded", "guest_access_token": guest_tok, "auth": {"type": "m.login.dummy"}}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["user_id"], guest_id.as_str());
    let localpart = guest_id.trim_start_matches('@').split(':').next().unwrap();
    assert_eq!(s.login(localpart, "upgraded").await.0, 200);
    // The guest's own token now acts for the full account.
    assert_eq!(
        s.get(&format!("{C}/joined_rooms"), Some(&guest_tok))
            .await
            .0,
        200
    );
    // Once only; and a non-guest's token upgrades nothing.
    assert_error(
        &s.post(&r, None, json!({"password": "x", "guest_access_token": guest_tok, "auth": {"type": "m.login.dummy"}}))
            .await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &s.post(&r, None, json!({"password": "x", "guest_access_token": "nope", "auth": {"type": "m.login.dummy"}}))
            .await,
        401,
        "M_UNKNOWN_TOKEN",
    );

    // A UIA session is bound to its user and operation.
    let (_, alice_tok, alice_dev) = s.register("alice", "pw").await;
    let (_, bob_tok, bob_dev) = s.register("bob", "pw").await;
    let (st, v) = s
        .call(
            "DELETE",
            &format!("{C}/devices/{alice_dev}"),
            Some(&alice_tok),
            Some(json!({})),
        )
        .await;
    assert_eq!(st, 401);
    let alice_session = v["session"].as_str().unwrap().to_owned();
    let stolen = json!({"auth": {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "bob"}, "password": "pw", "session": alice_session}});
    assert_error(
        &s.call(
            "DELETE",
            &format!("{C}/devices/{bob_dev}"),
            Some(&bob_tok),
            Some(stolen),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );
    // Bob's device is still there, and alice's session still works for alice.
    assert_eq!(
        s.get(&format!("{C}/account/whoami"), Some(&bob_tok))
            .await
            .0,
        200
    );
    let own = json!({"auth": {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"}, "password": "pw", "session": alice_session}});
    let (st, v) = s
        .call(
            "DELETE",
            &format!("{C}/devices/{alice_dev}"),
            Some(&alice_tok),
            Some(own),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    s.stop().await;
}

async fn rooms_as_synapse(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &[]).await;
    let (alice, tok, _) = s.register("alice", "pw").await;
    let (bob, bob_tok, _) = s.register("bob", "pw").await;
    let (_, eve_tok, _) = s.register("eve", "pw").await;
    let room = create(&s, &tok, json!({"preset": "public_chat", "name": "Before"})).await;

    // Joins carry the reason and extra keys; the server's keys win.
    let (st, v) = s
        .post(
            &format!("{C}/join/{}", enc(&room)),
            Some(&bob_tok),
            json!({"reason": "hello", "io.example.note": 7, "membership": "leave", "displayname": "Fake"}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let c = member_content(&s, &tok, &room, &bob).await;
    assert_eq!(
        (
            c["membership"].as_str(),
            c["reason"].as_str(),
            c["io.example.note"].as_i64(),
            c["displayname"].as_str()
        ),
        (Some("join"), Some("hello"), Some(7), Some("bob"))
    );

    // Typing off needs no timeout.
    let (st, v) = s
        .put(
            &format!("{C}/rooms/{room}/typing/{}", enc(&bob)),
            Some(&bob_tok),
            json!({"typing": false}),
        )
        .await;
    assert_eq!(st, 200, "{v}");

    // Bob sees a message, leaves; later events and state are hidden from him, earlier ones not.
    let (_, m) = s
        .put(
            &format!("{C}/rooms/{room}/send/m.room.message/t1"),
            Some(&tok),
            json!({"msgtype": "m.text", "body": "seen"}),
        )
        .await;
    let seen = m["event_id"].as_str().unwrap().to_owned();
    assert_eq!(
        s.post(
            &format!("{C}/rooms/{room}/leave"),
            Some(&bob_tok),
            json!({})
        )
        .await
        .0,
        200
    );
    s.put(
        &format!("{C}/rooms/{room}/state/m.room.name/"),
        Some(&tok),
        json!({"name": "After"}),
    )
    .await;
    let (_, m) = s
        .put(
            &format!("{C}/rooms/{room}/send/m.room.message/t2"),
            Some(&tok),
            json!({"msgtype": "m.text", "body": "unseen"}),
        )
        .await;
    let unseen = m["event_id"].as_str().unwrap().to_owned();
    let (_, carol_tok, _) = s.register("carol", "pw").await;
    s.post(
        &format!("{C}/rooms/{room}/join"),
        Some(&carol_tok),
        json!({}),
    )
    .await;

    let (st, v) = s
        .get(
            &format!("{C}/rooms/{room}/state/m.room.name/"),
            Some(&bob_tok),
        )
        .await;
    assert_eq!((st, v["name"].as_str()), (200, Some("Before")), "{v}");
    let (st, v) = s
        .get(&format!("{C}/rooms/{room}/state"), Some(&bob_tok))
        .await;
    assert_eq!(st, 200, "{v}");
    let names: Vec<&Value> = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "m.room.name")
        .collect();
    assert_eq!(names[0]["content"]["name"], "Before");
    let (st, v) = s
        .get(&format!("{C}/rooms/{room}/members"), Some(&bob_tok))
        .await;
    assert_eq!(st, 200, "{v}");
    let members: Vec<&str> = v["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state_key"].as_str().unwrap())
        .collect();
    assert!(
        members.contains(&alice.as_str()) && members.contains(&bob.as_str()),
        "{members:?}"
    );
    assert_eq!(members.len(), 2, "carol joined after bob left: {members:?}");
    let (st, v) = s
        .get(
            &format!("{C}/rooms/{room}/event/{}", enc(&seen)),
            Some(&bob_tok),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_error(
        &s.get(
            &format!("{C}/rooms/{room}/event/{}", enc(&unseen)),
            Some(&bob_tok),
        )
        .await,
        404,
        "M_NOT_FOUND",
    );
    // Current-state-only reads stay closed to him.
    assert_error(
        &s.get(&format!("{C}/rooms/{room}/joined_members"), Some(&bob_tok))
            .await,
        403,
        "M_FORBIDDEN",
    );
    // Someone never in the room: no state, and events are not found (not forbidden).
    assert_error(
        &s.get(&format!("{C}/rooms/{room}/state"), Some(&eve_tok))
            .await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &s.get(
            &format!("{C}/rooms/{room}/event/{}", enc(&seen)),
            Some(&eve_tok),
        )
        .await,
        404,
        "M_NOT_FOUND",
    );
    s.stop().await;
}

async fn sending_aliases_and_versions(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &[]).await;
    let (_, tok, _) = s.register("alice", "pw").await;
    let (bob, bob_tok, _) = s.register("bob", "pw").await;
    let room = create(&s, &tok, json!({"preset": "public_chat"})).await;
    let other = create(&s, &tok, json!({})).await;

    // POST .../send/{type}: no transaction ID, a new event each time.
    let path = format!("{C}/rooms/{room}/send/m.room.message");
    let body = json!({"msgtype": "m.text", "body": "old style"});
    let (st, a) = s.post(&path, Some(&tok), body.clone()).await;
    assert_eq!(st, 200, "{a}");
    let (_, b2) = s.post(&path, Some(&tok), body).await;
    assert!(a["event_id"].is_string() && a["event_id"] != b2["event_id"]);

    // A redaction names an event of its own room only.
    let (_, m) = s
        .put(
            &format!("{C}/rooms/{other}/send/m.room.message/x1"),
            Some(&tok),
            json!({"body": "elsewhere"}),
        )
        .await;
    let elsewhere = m["event_id"].as_str().unwrap().to_owned();
    let (st, v) = s
        .put(
            &format!("{C}/rooms/{room}/redact/{}/r1", enc(&elsewhere)),
            Some(&tok),
            json!({}),
        )
        .await;
    assert_eq!(st, 404, "{v}");
    let (_, e) = s
        .get(
            &format!("{C}/rooms/{other}/event/{}", enc(&elsewhere)),
            Some(&tok),
        )
        .await;
    assert_eq!(e["content"]["body"], "elsewhere", "not redacted: {e}");

    // m.room.canonical_alias: aliases must be valid, exist and point here.
    let alias = "#lounge:test.local";
    let (st, v) = s
        .put(
            &format!("{C}/directory/room/{}", enc(alias)),
            Some(&tok),
            json!({"room_id": room}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = s
        .put(
            &format!("{C}/directory/room/{}", enc("#attic:test.local")),
            Some(&tok),
            json!({"room_id": other}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let canon = format!("{C}/rooms/{room}/state/m.room.canonical_alias/");
    for (content, code) in [
        (json!({"alias": "not an alias"}), "M_INVALID_PARAM"),
        (json!({"alias": "#missing:test.local"}), "M_BAD_ALIAS"),
        (json!({"alias": "#attic:test.local"}), "M_BAD_ALIAS"),
        (
            json!({"alias": alias, "alt_aliases": ["#missing:test.local"]}),
            "M_BAD_ALIAS",
        ),
        (json!({"alt_aliases": ["bad"]}), "M_INVALID_PARAM"),
        (json!({"alias": "#remote:elsewhere.org"}), "M_BAD_ALIAS"),
    ] {
        assert_error(&s.put(&canon, Some(&tok), content.clone()).await, 400, code);
    }
    let (st, v) = s
        .put(
            &canon,
            Some(&tok),
            json!({"alias": alias, "alt_aliases": [alias]}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    // Removing them is always allowed.
    let (st, _) = s.put(&canon, Some(&tok), json!({})).await;
    assert_eq!(st, 200);
    s.put(
        &canon,
        Some(&tok),
        json!({"alias": alias, "alt_aliases": [alias]}),
    )
    .await;
    // Deleting the alias takes it out of the canonical alias event.
    let (st, v) = s
        .call(
            "DELETE",
            &format!("{C}/directory/room/{}", enc(alias)),
            Some(&tok),
            None,
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, c) = s.get(&canon, Some(&tok)).await;
    assert_eq!(st, 200);
    assert!(c.get("alias").is_none(), "{c}");
    assert_eq!(c["alt_aliases"], json!([]));

    // Room versions 3 to 5: create, invite, join, send, upgrade.
    for version in ["3", "4", "5"] {
        let (st, v) = s
            .post(
                &format!("{C}/createRoom"),
                Some(&tok),
                json!({"room_version": version, "invite": [bob]}),
            )
            .await;
        assert_eq!(st, 200, "v{version}: {v}");
        let r = v["room_id"].as_str().unwrap().to_owned();
        let (st, v) = s
            .post(&format!("{C}/rooms/{r}/join"), Some(&bob_tok), json!({}))
            .await;
        assert_eq!(st, 200, "v{version}: {v}");
        let (st, v) = s
            .put(
                &format!("{C}/rooms/{r}/send/m.room.message/v{version}"),
                Some(&bob_tok),
                json!({"msgtype": "m.text", "body": "hi"}),
            )
            .await;
        assert_eq!(st, 200, "v{version}: {v}");
        let (_, c) = s
            .get(&format!("{C}/rooms/{r}/state/m.room.create/"), Some(&tok))
            .await;
        assert_eq!(c["room_version"], version);
        let (st, v) = s
            .post(
                &format!("{C}/rooms/{r}/upgrade"),
                Some(&tok),
                json!({"new_version": "11"}),
            )
            .await;
        assert_eq!(st, 200, "v{version} upgrade: {v}");
    }
    let (_, caps) = s.get(&format!("{C}/capabilities"), Some(&tok)).await;
    assert_eq!(
        caps["capabilities"]["m.room_versions"]["available"]["4"],
        "stable"
    );
    s.stop().await;
}

async fn upgrades_carry_tags_and_push_rules(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &[]).await;
    let (alice, tok, _) = s.register("alice", "pw").await;
    let (bob, bob_tok, _) = s.register("bob", "pw").await;
    let old = create(&s, &tok, json!({"preset": "public_chat"})).await;
    assert_eq!(
        s.post(&format!("{C}/rooms/{old}/join"), Some(&bob_tok), json!({}))
            .await
            .0,
        200
    );
    let ub = enc(&bob);
    let (st, v) = s
        .put(
            &format!("{C}/user/{ub}/rooms/{old}/tags/u.work"),
            Some(&bob_tok),
            json!({"order": 0.5}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    s.put(
        &format!("{C}/user/{ub}/account_data/m.direct"),
        Some(&bob_tok),
        json!({ alice.as_str(): [old] }),
    )
    .await;
    let p = format!("{C}/pushrules/global");
    let (st, v) = s
        .put(
            &format!("{p}/room/{}", enc(&old)),
            Some(&bob_tok),
            json!({"actions": ["dont_notify"]}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = s
        .put(
            &format!("{p}/override/quiet-{}", enc(&old)),
            Some(&bob_tok),
            json!({"actions": [], "conditions": [{"kind": "event_match", "key": "room_id", "pattern": old}]}),
        )
        .await;
    assert_eq!(st, 200, "{v}");

    let (st, v) = s
        .post(
            &format!("{C}/rooms/{old}/upgrade"),
            Some(&tok),
            json!({"new_version": "11"}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let new = v["replacement_room"].as_str().unwrap().to_owned();

    let (_, tags) = s
        .get(&format!("{C}/user/{ub}/rooms/{new}/tags"), Some(&bob_tok))
        .await;
    assert_eq!(tags["tags"]["u.work"]["order"], 0.5, "{tags}");
    let (_, direct) = s
        .get(
            &format!("{C}/user/{ub}/account_data/m.direct"),
            Some(&bob_tok),
        )
        .await;
    assert_eq!(direct[alice.as_str()], json!([old, new]));
    let (_, r) = s
        .get(&format!("{p}/room/{}", enc(&new)), Some(&bob_tok))
        .await;
    assert_eq!(r["actions"], json!(["dont_notify"]), "{r}");
    let (_, r) = s
        .get(&format!("{p}/override/quiet-{}", enc(&new)), Some(&bob_tok))
        .await;
    assert_eq!(r["conditions"][0]["pattern"], new.as_str(), "{r}");
    // The old room's rules stay.
    assert_eq!(
        s.get(&format!("{p}/room/{}", enc(&old)), Some(&bob_tok))
            .await
            .0,
        200
    );
    // Alice had none of it: nothing was made up for her.
    let (_, r) = s.get(&format!("{C}/pushrules/"), Some(&tok)).await;
    assert_eq!(r["global"]["room"], json!([]));
    s.stop().await;
}

async fn guests(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &["registration.guests=true"]).await;
    let (_, tok, _) = s.register("alice", "pw").await;
    let open = create(
        &s,
        &tok,
        json!({"preset": "public_chat", "initial_state": [
            {"type": "m.room.guest_access", "state_key": "", "content": {"guest_access": "can_join"}}
        ]}),
    )
    .await;
    let closed = create(&s, &tok, json!({"preset": "public_chat"})).await;
    let (st, g) = s
        .post(&format!("{C}/register?kind=guest"), None, json!({}))
        .await;
    assert_eq!(st, 200, "{g}");
    let guest = g["user_id"].as_str().unwrap().to_owned();
    let gtok = g["access_token"].as_str().unwrap().to_owned();

    assert_error(
        &s.post(&format!("{C}/rooms/{closed}/join"), Some(&gtok), json!({}))
            .await,
        403,
        "M_FORBIDDEN",
    );
    let (st, v) = s
        .post(&format!("{C}/rooms/{open}/join"), Some(&gtok), json!({}))
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        member_content(&s, &tok, &open, &guest).await["kind"],
        "guest"
    );
    let (st, v) = s
        .put(
            &format!("{C}/rooms/{open}/send/m.room.message/g1"),
            Some(&gtok),
            json!({"msgtype": "m.text", "body": "from a guest"}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = s
        .put(
            &format!("{C}/profile/{}/displayname", enc(&guest)),
            Some(&gtok),
            json!({"displayname": "Visitor"}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let c = member_content(&s, &tok, &open, &guest).await;
    assert_eq!(
        (c["displayname"].as_str(), c["kind"].as_str()),
        (Some("Visitor"), Some("guest"))
    );
    let v = sync(&s, &gtok, "").await;
    let events = v["rooms"]["join"][open.as_str()]["timeline"]["events"]
        .as_array()
        .expect("timeline")
        .clone();
    assert!(
        events
            .iter()
            .any(|e| e["content"]["body"] == "from a guest"),
        "{v}"
    );
    let (st, m) = s
        .get(
            &format!("{C}/rooms/{open}/messages?dir=b&limit=50"),
            Some(&gtok),
        )
        .await;
    assert_eq!(st, 200, "{m}");
    assert!(
        m["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "m.room.create"),
        "shared history: {m}"
    );

    // Revoking guest access makes every guest leave.
    let (st, v) = s
        .put(
            &format!("{C}/rooms/{open}/state/m.room.guest_access/"),
            Some(&tok),
            json!({"guest_access": "forbidden"}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let c = member_content(&s, &tok, &open, &guest).await;
    assert_eq!(
        (c["membership"].as_str(), c["kind"].as_str()),
        (Some("leave"), Some("guest"))
    );
    assert_error(
        &s.post(&format!("{C}/rooms/{open}/join"), Some(&gtok), json!({}))
            .await,
        403,
        "M_FORBIDDEN",
    );
    s.stop().await;
}

async fn deactivation_parts_rooms_and_erases(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &[]).await;
    let (_, tok, _) = s.register("alice", "pw").await;
    let (bob, bob_tok, _) = s.register("bob", "pw").await;
    let (_, carol_tok, _) = s.register("carol", "pw").await;
    let room = create(&s, &tok, json!({"preset": "public_chat"})).await;
    let invited = create(&s, &tok, json!({"invite": [bob]})).await;
    assert_eq!(
        s.post(&format!("{C}/rooms/{room}/join"), Some(&bob_tok), json!({}))
            .await
            .0,
        200
    );
    let (_, m) = s
        .put(
            &format!("{C}/rooms/{room}/send/m.room.message/e1"),
            Some(&bob_tok),
            json!({"msgtype": "m.text", "body": "secret"}),
        )
        .await;
    let said = m["event_id"].as_str().unwrap().to_owned();

    let deactivate = format!("{C}/account/deactivate");
    let (st, v) = s
        .post(&deactivate, Some(&bob_tok), json!({"erase": true}))
        .await;
    assert_eq!(st, 401, "{v}");
    let session = v["session"].as_str().unwrap();
    let (st, v) = s
        .post(
            &deactivate,
            Some(&bob_tok),
            json!({"erase": true, "auth": {"type": "m.login.password", "session": session,
                "identifier": {"type": "m.id.user", "user": "bob"}, "password": "pw"}}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    // Bob left every room, and his invite is rejected.
    assert_eq!(
        member_content(&s, &tok, &room, &bob).await["membership"],
        "leave"
    );
    assert_eq!(
        member_content(&s, &tok, &invited, &bob).await["membership"],
        "leave"
    );

    // Alice was there: she still sees the message. Carol comes later: she does not.
    let (_, e) = s
        .get(
            &format!("{C}/rooms/{room}/messages?dir=b&limit=50"),
            Some(&tok),
        )
        .await;
    let body_in = |v: &Value| {
        v["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["event_id"] == said.as_str())
            .map(|e| e["content"].clone())
    };
    assert_eq!(body_in(&e).unwrap()["body"], "secret");
    assert_eq!(
        s.post(
            &format!("{C}/rooms/{room}/join"),
            Some(&carol_tok),
            json!({})
        )
        .await
        .0,
        200
    );
    let (_, e) = s
        .get(
            &format!("{C}/rooms/{room}/messages?dir=b&limit=50"),
            Some(&carol_tok),
        )
        .await;
    assert_eq!(
        body_in(&e),
        Some(json!({})),
        "erased for later joiners: {e}"
    );
    let v = sync(&s, &carol_tok, "").await;
    let events = v["rooms"]["join"][room.as_str()]["timeline"]["events"]
        .as_array()
        .unwrap()
        .clone();
    if let Some(e) = events.iter().find(|e| e["event_id"] == said.as_str()) {
        assert_eq!(e["content"], json!({}), "{e}");
    }
    let (st, e) = s
        .get(
            &format!("{C}/rooms/{room}/context/{}", enc(&said)),
            Some(&carol_tok),
        )
        .await;
    assert_eq!(st, 200, "{e}");
    assert_eq!(e["event"]["content"], json!({}));
    let ev = format!("{C}/rooms/{room}/event/{}", enc(&said));
    let (st, e) = s.get(&ev, Some(&carol_tok)).await;
    assert_eq!((st, &e["content"]), (200, &json!({})), "{e}");
    let (st, e) = s.get(&ev, Some(&tok)).await;
    assert_eq!(
        (st, e["content"]["body"].as_str()),
        (200, Some("secret")),
        "{e}"
    );
    s.stop().await;
}

scenarios!(
    push_rules,
    start_up_endpoints,
    profile_changes_reach_rooms,
    identical_state_is_not_sent_twice,
    registration_and_uia,
    rooms_as_synapse,
    sending_aliases_and_versions,
    upgrades_carry_tags_and_push_rules,
    guests,
    deactivation_parts_rooms_and_erases,
);
