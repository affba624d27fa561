//! myelin federating with a real Synapse over HTTPS on loopback (issue 11's interop proof).
//!
//! One Synapse (pinned, from PyPI, see `common::synapse`) and, in turn, a myelin on each
//! database and topology. Both serve federation over HTTPS with certificates of a test CA made
//! with openssl (`common::certs`), and each checks the other's certificate against that CA
//! (Synapse: `federation_custom_ca_list`; myelin: `federation.ca_file`). Both are named by IP
//! literal and port (`127.0.0.1:<port>`), so neither needs DNS: the spec's discovery connects
//! to an IP literal with an explicit port directly. The tests reach both client APIs over
//! plain HTTP (Synapse's second listener, myelin's `server.http_listen`).
//!
//! What it proves so far: each server fetches the other's keys over TLS (directly, and each
//! serves the other's as a notary), and each accepts the other's `X-Matrix` signed requests
//! (Synapse's profile query to myelin, and one signed with myelin's key to Synapse), and
//! remote rooms both ways: a myelin user joins a Synapse room (`make_join`/`send_join` v2 to
//! Synapse, its answer checked and imported), a Synapse user is invited into a myelin room
//! (`invite` v2 to Synapse) and joins it (Synapse's `make_join`/`send_join` to myelin), and
//! Synapse's invites of a myelin user (`invite` v2 from Synapse) show in its `/sync`, one
//! accepted (a join through Synapse) and one rejected (`make_leave`/`send_leave` to Synapse).
//! Knocks and restricted rooms: a myelin user knocks on a Synapse room (`make_knock`/
//! `send_knock` to Synapse), is let in by an invite and joins, rescinds another knock, and
//! joins Synapse's restricted room as a member of its allowed room (Synapse vouches and
//! signs); a Synapse user joins myelin's restricted room the same way (myelin vouches).
//! The test fails, never skips, when Synapse, Python or openssl cannot be had.

mod common;

use common::certs::test_certificates;
use common::synapse::{free_port, synapse_python, Options, Synapse, Tls, SYNAPSE_VERSION};
use common::{enc, Backend, TestServer, Topology};
use myelin::federation::client::{ClientSettings, FederationClient};
use myelin::federation::keys;
use myelin::net::IpDenylist;
use myelin::signing_key::SigningKey;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What the test needs of the Synapse it runs.
struct Peer {
    synapse: Synapse,
    name: String,
    ca: String,
    chain: String,
    key: String,
    http: awc::Client,
}

impl Drop for Peer {
    /// On a failure, what Synapse logged says what it made of myelin.
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Synapse's log handler flushes INFO lines every 5 s.
            std::thread::sleep(Duration::from_secs(6));
            eprintln!("{}", self.synapse.log_tail());
        }
    }
}

impl Peer {
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}{}", self.synapse.base, path);
        let mut req = self.http.request(method.parse().unwrap(), url);
        if let Some(t) = token {
            req = req.insert_header(("Authorization", format!("Bearer {t}")));
        }
        let mut res = match body {
            Some(b) => req.send_json(&b).await,
            None => req.send().await,
        }
        .unwrap_or_else(|e| panic!("Synapse {method} {path}: {e}"));
        let bytes = res.body().limit(16 << 20).await.expect("Synapse body");
        (
            res.status().as_u16(),
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    /// Registers a Synapse user (open registration, dummy flow); its access token.
    async fn register(&self, username: &str) -> String {
        let (status, body) = self
            .call(
                "POST",
                "/_matrix/client/v3/register",
                None,
                Some(json!({"username": username, "password": "secret-pass-1",
                            "auth": {"type": "m.login.dummy"}})),
            )
            .await;
        assert_eq!(status, 200, "Synapse register {username}: {body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// Synapse's current signing keys, from its own key endpoint.
    async fn keys(&self) -> BTreeMap<String, String> {
        let (status, body) = self.call("GET", "/_matrix/key/v2/server", None, None).await;
        assert_eq!(status, 200, "{body}");
        body["verify_keys"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(id, k)| (id.clone(), k["key"].as_str().unwrap().to_owned()))
            .collect()
    }
}

/// A federation client of the test's own, trusting the test CA: signs as `origin` with `key`.
fn client(origin: &str, key: SigningKey, ca: &str) -> FederationClient {
    FederationClient::new(ClientSettings {
        server_name: origin.try_into().unwrap(),
        key: Arc::new(key),
        denylist: Arc::new(IpDenylist::parse::<&str>(&[]).unwrap()),
        verify_tls: true,
        ca_file: ca.to_owned(),
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(30),
        max_response_bytes: 1 << 20,
        test_destinations: BTreeMap::new(),
    })
    .unwrap()
}

fn server(name: &str) -> &ruma::ServerName {
    <&ruma::ServerName>::try_from(name).unwrap()
}

/// A myelin named `127.0.0.1:<port>`, serving HTTPS with the test certificate.
async fn start_myelin(peer: &Peer, backend: Backend, topology: Topology) -> (TestServer, String) {
    let port = free_port();
    let name = format!("127.0.0.1:{port}");
    let sets = [
        format!("server.name={name}"),
        format!("server.listen=127.0.0.1:{port}"),
        format!("server.tls_cert={}", peer.chain),
        format!("server.tls_key={}", peer.key),
        "server.http_listen=127.0.0.1:0".to_owned(),
        "server.ip_range_denylist=[]".to_owned(),
        format!("federation.ca_file={}", peer.ca),
    ];
    let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
    (TestServer::start(backend, topology, &sets).await, name)
}

/// Keys both ways, directly and through each other as notaries.
async fn keys_cross_over_tls(peer: &Peer, s: &TestServer, name: &str) {
    let own = SigningKey::load_or_generate(s.db.dir.path()).unwrap();
    let own_keys = BTreeMap::from([(own.key_id().to_string(), own.public_key_base64())]);
    let synapse_keys = peer.keys().await;

    // Synapse, as a notary, fetches myelin's keys from myelin over HTTPS (it fetches only
    // keys asked for by ID).
    let (status, body) = peer
        .call(
            "POST",
            "/_matrix/key/v2/query",
            None,
            Some(json!({"server_keys": {name: {own.key_id().as_str(): {"minimum_valid_until_ts": myelin::storage::now_ms()}}}})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let list = body["server_keys"].as_array().expect("server_keys");
    assert_eq!(
        list.len(),
        1,
        "Synapse could not fetch myelin's keys: {body}"
    );
    let checked = keys::check_server_keys(&list[0], server(name), myelin::storage::now_ms())
        .unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(checked.verify_keys, own_keys);
    keys::check_signed_by(&list[0], &peer.name, &synapse_keys)
        .unwrap_or_else(|e| panic!("Synapse's notary signature: {e}: {body}"));

    // myelin, as a notary, fetches Synapse's keys from Synapse over HTTPS.
    // Unsigned: the key endpoints need no signature.
    let asker_dir = tempfile::tempdir().unwrap();
    let asker_key = SigningKey::load_or_generate(asker_dir.path()).unwrap();
    let asker = client("asker.test", asker_key, &peer.ca);
    let answer = asker
        .json(
            http::Method::GET,
            server(name),
            &format!("/_matrix/key/v2/query/{}", enc(&peer.name)),
            None,
            false,
            None,
        )
        .await
        .unwrap_or_else(|e| panic!("myelin's notary query: {e}"));
    let list = answer["server_keys"].as_array().expect("server_keys");
    assert_eq!(
        list.len(),
        1,
        "myelin could not fetch Synapse's keys: {answer}"
    );
    let checked = keys::check_server_keys(&list[0], server(&peer.name), myelin::storage::now_ms())
        .unwrap_or_else(|e| panic!("{e}: {answer}"));
    assert_eq!(checked.verify_keys, synapse_keys);
    keys::check_signed_by(&list[0], name, &own_keys)
        .unwrap_or_else(|e| panic!("myelin's notary signature: {e}: {answer}"));
}

/// Signed requests both ways: Synapse asks myelin for a profile (its signature checked by
/// myelin with keys fetched from Synapse), and a request signed with myelin's key is accepted
/// by Synapse (which fetches myelin's key to check it).
async fn signed_requests_cross(peer: &Peer, s: &TestServer, name: &str, round: usize) {
    let alice = format!("alice{round}");
    let (alice_id, alice_token, _) = s.register(&alice, "secret-pass-1").await;
    let (status, body) = s
        .put(
            &format!("/_matrix/client/v3/profile/{}/displayname", enc(&alice_id)),
            Some(&alice_token),
            json!({"displayname": "Alice of myelin"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let bob = format!("bob{round}");
    let bob_token = peer.register(&bob).await;
    let (status, body) = peer
        .call(
            "GET",
            &format!("/_matrix/client/v3/profile/{}", enc(&alice_id)),
            Some(&bob_token),
            None,
        )
        .await;
    assert_eq!(status, 200, "Synapse's profile query to myelin: {body}");
    assert_eq!(body["displayname"], "Alice of myelin", "{body}");

    let own = SigningKey::load_or_generate(s.db.dir.path()).unwrap();
    let as_myelin = client(name, own, &peer.ca);
    let bob_id = format!("@{bob}:{}", peer.name);
    let profile = as_myelin
        .get(
            server(&peer.name),
            &format!(
                "/_matrix/federation/v1/query/profile?user_id={}",
                enc(&bob_id)
            ),
        )
        .await
        .unwrap_or_else(|e| panic!("a request signed as myelin, to Synapse: {e}"));
    assert_eq!(profile["displayname"], bob.as_str(), "{profile}");
    // And through myelin's client API: myelin asks Synapse.
    let (status, body) = s
        .get(
            &format!("/_matrix/client/v3/profile/{}", enc(&bob_id)),
            Some(&alice_token),
        )
        .await;
    assert_eq!(status, 200, "myelin's profile query to Synapse: {body}");
    assert_eq!(body["displayname"], bob.as_str(), "{body}");
}

/// Remote rooms both ways: a myelin user joins a Synapse user's public room, and a Synapse
/// user is invited into a myelin room and joins it; each side then lists both members.
async fn rooms_cross(peer: &Peer, s: &TestServer, name: &str, round: usize) {
    let carol = format!("carol{round}");
    let (carol_id, carol_token, _) = s.register(&carol, "secret-pass-1").await;
    let dave = format!("dave{round}");
    let dave_token = peer.register(&dave).await;
    let dave_id = format!("@{dave}:{}", peer.name);

    // myelin joins Synapse's room.
    let (status, body) = peer
        .call(
            "POST",
            "/_matrix/client/v3/createRoom",
            Some(&dave_token),
            Some(json!({"preset": "public_chat", "name": "Synapse's"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let room = body["room_id"].as_str().unwrap().to_owned();
    let before = format!("before carol {round}");
    let (status, body) = peer
        .call(
            "PUT",
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/b{round}",
                enc(&room)
            ),
            Some(&dave_token),
            Some(json!({"msgtype": "m.text", "body": before})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = s
        .post(
            &format!(
                "/_matrix/client/v3/join/{}?via={}",
                enc(&room),
                enc(&peer.name)
            ),
            Some(&carol_token),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "myelin joining Synapse's room: {body}");
    // Paging back past the join backfills the history from Synapse (`/backfill`).
    let (status, body) = s
        .get(
            &format!(
                "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=100",
                enc(&room)
            ),
            Some(&carol_token),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let chunk = body["chunk"].as_array().cloned().unwrap_or_default();
    assert!(
        chunk
            .iter()
            .any(|e| e["content"]["body"] == before.as_str()),
        "history before the join, backfilled from Synapse: {body}"
    );
    assert_eq!(
        chunk.last().map(|e| e["type"].clone()),
        Some(json!("m.room.create")),
        "{body}"
    );
    let members = |body: &Value| {
        let mut m: Vec<String> = body["joined"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        m.sort();
        m
    };
    let mut both = vec![carol_id.clone(), dave_id.clone()];
    both.sort();
    let (_, body) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{}/joined_members", enc(&room)),
            Some(&carol_token),
        )
        .await;
    assert_eq!(members(&body), both, "{body}");
    let (_, body) = peer
        .call(
            "GET",
            &format!("/_matrix/client/v3/rooms/{}/joined_members", enc(&room)),
            Some(&dave_token),
            None,
        )
        .await;
    assert_eq!(members(&body), both, "Synapse's members: {body}");

    // Messages both ways in Synapse's room: myelin's outgoing queue to Synapse, Synapse's
    // transactions to myelin's /send.
    let from_myelin = format!("from myelin {round}");
    let (status, body) = s
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/m{round}",
                enc(&room)
            ),
            Some(&carol_token),
            json!({"msgtype": "m.text", "body": from_myelin}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut seen = Value::Null;
    for _ in 0..300 {
        let (_, body) = peer
            .call(
                "GET",
                &format!(
                    "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=20",
                    enc(&room)
                ),
                Some(&dave_token),
                None,
            )
            .await;
        if body["chunk"].as_array().is_some_and(|c| {
            c.iter()
                .any(|e| e["content"]["body"] == from_myelin.as_str())
        }) {
            seen = body;
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!seen.is_null(), "Synapse never showed myelin's message");
    let from_synapse = format!("from Synapse {round}");
    let (status, body) = peer
        .call(
            "PUT",
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/s{round}",
                enc(&room)
            ),
            Some(&dave_token),
            Some(json!({"msgtype": "m.text", "body": from_synapse})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut arrived = false;
    for _ in 0..300 {
        let (_, synced) = s
            .get("/_matrix/client/v3/sync?timeout=0", Some(&carol_token))
            .await;
        if synced["rooms"]["join"][&room]["timeline"]["events"]
            .as_array()
            .is_some_and(|t| {
                t.iter()
                    .any(|e| e["content"]["body"] == from_synapse.as_str())
            })
        {
            arrived = true;
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(arrived, "myelin never showed Synapse's message");

    // Synapse's user is invited into a myelin room and joins it.
    let mine = common::create(
        s,
        &carol_token,
        json!({"preset": "private_chat", "name": "myelin's"}),
    )
    .await;
    let (status, body) = s
        .post(
            &format!("/_matrix/client/v3/rooms/{}/invite", enc(&mine)),
            Some(&carol_token),
            json!({"user_id": dave_id}),
        )
        .await;
    assert_eq!(status, 200, "myelin inviting Synapse's user: {body}");
    let (status, body) = peer
        .call(
            "POST",
            &format!(
                "/_matrix/client/v3/join/{}?server_name={}",
                enc(&mine),
                enc(name)
            ),
            Some(&dave_token),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, 200, "Synapse joining myelin's room: {body}");
    let (_, body) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{}/joined_members", enc(&mine)),
            Some(&carol_token),
        )
        .await;
    assert_eq!(members(&body), both, "{body}");

    // Synapse's invites of the myelin user: one accepted, one rejected.
    let mut invited = Vec::new();
    for name in ["accepted", "rejected"] {
        let (status, body) = peer
            .call(
                "POST",
                "/_matrix/client/v3/createRoom",
                Some(&dave_token),
                Some(json!({"preset": "private_chat", "name": name, "invite": [carol_id]})),
            )
            .await;
        assert_eq!(status, 200, "Synapse inviting myelin's user: {body}");
        invited.push(body["room_id"].as_str().unwrap().to_owned());
    }
    let (status, synced) = s
        .get("/_matrix/client/v3/sync?timeout=0", Some(&carol_token))
        .await;
    assert_eq!(status, 200);
    for (room, name) in invited.iter().zip(["accepted", "rejected"]) {
        let events = &synced["rooms"]["invite"][room]["invite_state"]["events"];
        assert!(
            events
                .as_array()
                .is_some_and(|l| l.iter().any(|e| e["content"]["name"] == name)),
            "{synced}"
        );
    }
    let (status, body) = s
        .post(
            &format!("/_matrix/client/v3/rooms/{}/join", enc(&invited[0])),
            Some(&carol_token),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "accepting Synapse's invite: {body}");
    let (status, body) = s
        .post(
            &format!("/_matrix/client/v3/rooms/{}/leave", enc(&invited[1])),
            Some(&carol_token),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "rejecting Synapse's invite: {body}");
    let state_of = |room: &str| {
        format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.member/{}",
            enc(room),
            enc(&carol_id)
        )
    };
    let (_, body) = peer
        .call("GET", &state_of(&invited[0]), Some(&dave_token), None)
        .await;
    assert_eq!(body["membership"], "join", "Synapse's view: {body}");
    let (_, body) = peer
        .call("GET", &state_of(&invited[1]), Some(&dave_token), None)
        .await;
    assert_eq!(body["membership"], "leave", "Synapse's view: {body}");
}

/// Knocks and restricted joins between myelin and Synapse: myelin's user knocks on Synapse's
/// room (let in by an invite, then joined; another knock rescinded), joins Synapse's
/// restricted room as a member of its allowed room (Synapse vouches and signs), and Synapse's
/// user joins myelin's restricted room the same way (myelin vouches and signs).
async fn knocks_and_restricted_joins_cross(peer: &Peer, s: &TestServer, name: &str, round: usize) {
    let erin = format!("erin{round}");
    let (erin_id, erin_token, _) = s.register(&erin, "secret-pass-1").await;
    let frank = format!("frank{round}");
    let frank_token = peer.register(&frank).await;
    let frank_id = format!("@{frank}:{}", peer.name);
    let synapse_room = |body: Value| {
        let token = frank_token.clone();
        async move {
            let (status, made) = peer
                .call(
                    "POST",
                    "/_matrix/client/v3/createRoom",
                    Some(&token),
                    Some(body),
                )
                .await;
            assert_eq!(status, 200, "{made}");
            made["room_id"].as_str().unwrap().to_owned()
        }
    };
    let member_on_synapse = |room: String| {
        let token = frank_token.clone();
        let path = format!(
            "/_matrix/client/v3/rooms/{}/state/m.room.member/{}",
            enc(&room),
            enc(&erin_id)
        );
        async move { peer.call("GET", &path, Some(&token), None).await.1["membership"].clone() }
    };
    let via = enc(&peer.name);
    let knock_rule =
        json!([{"type": "m.room.join_rules", "state_key": "", "content": {"join_rule": "knock"}}]);

    // A knock on Synapse's room: seen by Synapse, shown under `knock`, answered by an invite.
    let knock_room = synapse_room(json!({"preset": "private_chat", "room_version": "10",
        "name": "Knock at Synapse", "initial_state": knock_rule}))
    .await;
    let (status, body) = s
        .post(
            &format!("/_matrix/client/v3/knock/{}?via={via}", enc(&knock_room)),
            Some(&erin_token),
            json!({"reason": "hello"}),
        )
        .await;
    assert_eq!(status, 200, "myelin knocking on Synapse's room: {body}");
    assert_eq!(member_on_synapse(knock_room.clone()).await, "knock");
    let (_, synced) = s
        .get("/_matrix/client/v3/sync?timeout=0", Some(&erin_token))
        .await;
    let events = &synced["rooms"]["knock"][&knock_room]["knock_state"]["events"];
    assert!(
        events
            .as_array()
            .is_some_and(|l| l.iter().any(|e| e["content"]["name"] == "Knock at Synapse")),
        "{synced}"
    );
    let (status, body) = peer
        .call(
            "POST",
            &format!("/_matrix/client/v3/rooms/{}/invite", enc(&knock_room)),
            Some(&frank_token),
            Some(json!({"user_id": erin_id})),
        )
        .await;
    assert_eq!(status, 200, "Synapse letting the knocker in: {body}");
    let mut invited = false;
    for _ in 0..300 {
        let (_, synced) = s
            .get("/_matrix/client/v3/sync?timeout=0", Some(&erin_token))
            .await;
        if synced["rooms"]["invite"][&knock_room].is_object() {
            invited = true;
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        invited,
        "myelin never showed Synapse's invite after the knock"
    );
    let (status, body) = s
        .post(
            &format!("/_matrix/client/v3/rooms/{}/join", enc(&knock_room)),
            Some(&erin_token),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "joining after the knock: {body}");
    assert_eq!(member_on_synapse(knock_room.clone()).await, "join");

    // A knock rescinded.
    let other = synapse_room(json!({"preset": "private_chat", "room_version": "10",
        "initial_state": knock_rule}))
    .await;
    let (status, body) = s
        .post(
            &format!("/_matrix/client/v3/knock/{}?via={via}", enc(&other)),
            Some(&erin_token),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = s
        .post(
            &format!("/_matrix/client/v3/rooms/{}/leave", enc(&other)),
            Some(&erin_token),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "rescinding a knock on Synapse's room: {body}");
    assert_eq!(member_on_synapse(other.clone()).await, "leave");

    // Synapse's restricted room, open to the members of its space.
    let space = synapse_room(json!({"preset": "public_chat"})).await;
    let restricted = |allowed: &str| {
        json!([{"type": "m.room.join_rules", "state_key": "",
                "content": {"join_rule": "restricted",
                            "allow": [{"type": "m.room_membership", "room_id": allowed}]}}])
    };
    let room = synapse_room(json!({"preset": "private_chat", "room_version": "10",
        "initial_state": restricted(&space)}))
    .await;
    let join = |room: &str, via: &str| {
        let path = format!("/_matrix/client/v3/join/{}?via={via}", enc(room));
        let token = erin_token.clone();
        async move { s.post(&path, Some(&token), json!({})).await }
    };
    let refused = join(&room, &via).await;
    assert_eq!(refused.0, 403, "not yet in Synapse's space: {}", refused.1);
    let (status, body) = join(&space, &via).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = join(&room, &via).await;
    assert_eq!(
        status, 200,
        "myelin joining Synapse's restricted room: {body}"
    );
    assert_eq!(member_on_synapse(room.clone()).await, "join");

    // myelin's restricted room, open to the members of its space: Synapse's user joins it.
    let my_space = common::create(s, &erin_token, json!({"preset": "public_chat"})).await;
    let mine = common::create(
        s,
        &erin_token,
        json!({"preset": "private_chat", "room_version": "10", "initial_state": restricted(&my_space)}),
    )
    .await;
    let synapse_join = |room: String| {
        let token = frank_token.clone();
        let path = format!(
            "/_matrix/client/v3/join/{}?server_name={}",
            enc(&room),
            enc(name)
        );
        async move {
            peer.call("POST", &path, Some(&token), Some(json!({})))
                .await
        }
    };
    let refused = synapse_join(mine.clone()).await;
    assert_eq!(
        refused.0, 403,
        "Synapse's user not yet in myelin's space: {}",
        refused.1
    );
    let (status, body) = synapse_join(my_space.clone()).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = synapse_join(mine.clone()).await;
    assert_eq!(
        status, 200,
        "Synapse joining myelin's restricted room: {body}"
    );
    let (status, member) = s
        .get(
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.member/{}",
                enc(&mine),
                enc(&frank_id)
            ),
            Some(&erin_token),
        )
        .await;
    assert_eq!(status, 200, "{member}");
    assert_eq!(member["membership"], "join", "{member}");
    assert_eq!(
        member["join_authorised_via_users_server"],
        erin_id.as_str(),
        "{member}"
    );
}

#[actix_web::test]
async fn myelin_and_synapse_federate() {
    let started = Instant::now();
    let python = actix_web::rt::task::spawn_blocking(synapse_python)
        .await
        .expect("the thread installing Synapse")
        .unwrap_or_else(|e| panic!("no Python environment with Synapse {SYNAPSE_VERSION}: {e}"));
    let dir = tempfile::tempdir().unwrap();
    let (ca, chain, key) = test_certificates(dir.path());
    let port = free_port();
    let name = format!("127.0.0.1:{port}");
    let options = Options {
        server_name: name.clone(),
        tls: Some(Tls {
            port,
            chain: chain.clone(),
            key: key.clone(),
            ca: ca.clone(),
        }),
    };
    let py = python.clone();
    let synapse = actix_web::rt::task::spawn_blocking(move || Synapse::start(&py, &options))
        .await
        .expect("the thread starting Synapse")
        .unwrap_or_else(|e| panic!("cannot start Synapse {SYNAPSE_VERSION}: {e}"));
    println!(
        "Synapse {SYNAPSE_VERSION} ready in {:.1?}",
        started.elapsed()
    );
    let peer = Peer {
        synapse,
        name,
        ca,
        chain,
        key,
        http: awc::Client::builder()
            .timeout(Duration::from_secs(60))
            .finish(),
    };
    let mut round = 0;
    for backend in [Backend::Sqlite, Backend::Postgres] {
        for topology in [Topology::Local, Topology::Bridged] {
            round += 1;
            let (s, name) = start_myelin(&peer, backend, topology).await;
            let what = format!("myelin {name} on {backend:?}, {topology:?}");
            let t = Instant::now();
            keys_cross_over_tls(&peer, &s, &name).await;
            signed_requests_cross(&peer, &s, &name, round).await;
            rooms_cross(&peer, &s, &name, round).await;
            knocks_and_restricted_joins_cross(&peer, &s, &name, round).await;
            println!("{what}: federates with Synapse ({:.1?})", t.elapsed());
            s.stop().await;
        }
    }
}
