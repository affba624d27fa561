//! Federation's foundation between real nodes on loopback: server keys (published, fetched
//! directly and through a notary, served as a notary), `X-Matrix` request signatures (accepted
//! and refused), `/version`, the HTTPS listeners (a test CA made with openssl), the read
//! side other servers use (`/event`, `/state`, `/backfill`, ..., the directory, OpenID),
//! remote rooms (joins, invites, leaves over federation, and bad membership requests
//! refused), and transactions both ways against a fake remote server
//! (`common::remote::Fake`: publishes its key, records the transactions it receives, can be
//! told to fail, serves `/get_missing_events`).
//! Each server is a `TestServer` (both databases, local and
//! bridged) named `<x>.test`, reached by the others through `federation.test_destinations` on a
//! port reserved before any of them starts, with `server.ip_range_denylist = []`.

mod common;

use common::certs::test_certificates;
use common::remote::{auth_of, eventually, put_txn, put_txn_with, remote_event, room_tip, Fake};
use common::{enc, reserve_port, Backend, TestServer, Topology};
use myelin::federation::client::{ClientSettings, FederationClient, FederationError};
use myelin::federation::keys;
use myelin::net::IpDenylist;
use myelin::signing_key::SigningKey;
use ruma::api::federation::authentication::{XMatrix, XMatrixSigningInput};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

fn url(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// Starts server `name` on `port`, reaching the others at `destinations`.
async fn start(
    backend: Backend,
    topology: Topology,
    name: &str,
    port: u16,
    destinations: &[(&str, String)],
    extra: &[String],
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
    sets.extend(extra.iter().cloned());
    let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
    TestServer::start(backend, topology, &sets).await
}

/// A server's signing key, read from its data dir (where the node generated it).
fn key_of(s: &TestServer) -> SigningKey {
    SigningKey::load_or_generate(s.db.dir.path()).expect("signing key")
}

fn key_map(key: &SigningKey) -> BTreeMap<String, String> {
    BTreeMap::from([(key.key_id().to_string(), key.public_key_base64())])
}

fn server(name: &str) -> &ruma::ServerName {
    <&ruma::ServerName>::try_from(name).unwrap()
}

/// The one key object for `of` in a notary answer, checked: signed by `of` and by `notary`.
fn notary_answer(
    body: &Value,
    of: &str,
    of_key: &SigningKey,
    notary: &str,
    notary_key: &SigningKey,
) {
    let list = body["server_keys"].as_array().expect("server_keys");
    assert_eq!(list.len(), 1, "{body}");
    let object = &list[0];
    let checked = keys::check_server_keys(object, server(of), myelin::storage::now_ms())
        .unwrap_or_else(|e| panic!("{e}: {object}"));
    assert_eq!(checked.verify_keys, key_map(of_key));
    keys::check_signed_by(object, notary, &key_map(notary_key))
        .unwrap_or_else(|e| panic!("{e}: {object}"));
}

async fn published_keys_are_self_signed(backend: Backend, topology: Topology) {
    let old = "ed25519:old";
    let old_public = "6kpsY+KcUgq+9VB7Ey7F+ZVHdq6+vnuSQh7qaRRG0iw";
    let s = start(
        backend,
        topology,
        "a.test",
        reserve_port(),
        &[],
        &[
            format!(
                "federation.old_signing_keys={{\"{old}\" = {{ key = \"{old_public}\", expired_ts = 1234 }}}}"
            ),
            "federation.key_validity=2h".to_owned(),
        ],
    )
    .await;
    let key = key_of(&s);
    let before = myelin::storage::now_ms();
    for path in [
        "/_matrix/key/v2/server",
        &format!("/_matrix/key/v2/server/{}", key.key_id()),
    ] {
        let (status, body) = s.get(path, None).await;
        assert_eq!(status, 200, "{path}: {body}");
        let checked = keys::check_server_keys(&body, server("a.test"), before).unwrap();
        assert_eq!(checked.verify_keys, key_map(&key));
        assert_eq!(
            checked.old_verify_keys[old],
            (old_public.to_owned(), 1234),
            "{body}"
        );
        let until = body["valid_until_ts"].as_i64().unwrap();
        assert!(
            (before + 7_000_000..before + 7_300_000).contains(&until),
            "valid_until_ts {until}, now {before}"
        );
    }
    // /version needs no signature.
    let (status, body) = s.get("/_matrix/federation/v1/version", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["server"]["name"], "myelin");
    assert!(body["server"]["version"].is_string(), "{body}");
    s.stop().await;
}

async fn keys_are_fetched_directly_and_served_as_notary(backend: Backend, topology: Topology) {
    let (pa, pb) = (reserve_port(), reserve_port());
    let b = start(backend, topology, "b.test", pb, &[], &[]).await;
    let a = start(backend, topology, "a.test", pa, &[("b.test", url(pb))], &[]).await;
    let (a_key, b_key) = (key_of(&a), key_of(&b));

    // A fetches B's keys from B itself and serves them signed by both.
    let (status, body) = a.get("/_matrix/key/v2/query/b.test", None).await;
    assert_eq!(status, 200, "{body}");
    notary_answer(&body, "b.test", &b_key, "a.test", &a_key);
    // The batch form, naming the key; now from A's cache (B is gone).
    b.stop().await;
    let (status, body) = a
        .post(
            "/_matrix/key/v2/query",
            None,
            json!({"server_keys": {"b.test": {b_key.key_id().as_str(): {}}}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    notary_answer(&body, "b.test", &b_key, "a.test", &a_key);
    // Its own keys, as a notary, and nothing for a server nobody can reach.
    let (status, body) = a
        .post(
            "/_matrix/key/v2/query",
            None,
            json!({"server_keys": {"a.test": {}, "nowhere.test": {}}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let list = body["server_keys"].as_array().unwrap();
    assert_eq!(list.len(), 1, "{body}");
    assert_eq!(list[0]["server_name"], "a.test");
    a.stop().await;
}

async fn keys_are_fetched_through_a_notary(backend: Backend, topology: Topology) {
    let (pa, pb, pc) = (reserve_port(), reserve_port(), reserve_port());
    let closed = reserve_port();
    let b = start(backend, topology, "b.test", pb, &[], &[]).await;
    let c = start(backend, topology, "c.test", pc, &[("b.test", url(pb))], &[]).await;
    let (b_key, c_key) = (key_of(&b), key_of(&c));
    let trusted = |key: &SigningKey| {
        format!(
            "federation.trusted_key_servers=[{{ server_name = \"c.test\", verify_keys = {{ \"{}\" = \"{}\" }} }}]",
            key.key_id(),
            key.public_key_base64()
        )
    };
    // A cannot reach B; it trusts C.
    let a = start(
        backend,
        topology,
        "a.test",
        pa,
        &[("b.test", url(closed)), ("c.test", url(pc))],
        &[trusted(&c_key)],
    )
    .await;
    let a_key = key_of(&a);
    let (status, body) = a.get("/_matrix/key/v2/query/b.test", None).await;
    assert_eq!(status, 200, "{body}");
    notary_answer(&body, "b.test", &b_key, "a.test", &a_key);
    // What A kept and serves again carries B's signature and A's, not C's.
    assert!(
        body["server_keys"][0]["signatures"].get("c.test").is_none(),
        "{body}"
    );

    // A server that trusts C under a key C does not sign with refuses C's answers.
    let pd = reserve_port();
    let d = start(
        backend,
        topology,
        "d.test",
        pd,
        &[("b.test", url(closed)), ("c.test", url(pc))],
        &[trusted(&a_key)],
    )
    .await;
    let (status, body) = d.get("/_matrix/key/v2/query/b.test", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["server_keys"], json!([]), "{body}");
    for s in [a, b, c, d] {
        s.stop().await;
    }
}

/// A federation client of `origin` (loopback allowed), as a node would build it.
fn client_of(
    key: SigningKey,
    origin: &str,
    destinations: &[(&str, String)],
    ca_file: &str,
    verify_tls: bool,
) -> FederationClient {
    FederationClient::new(ClientSettings {
        server_name: origin.try_into().unwrap(),
        key: Arc::new(key),
        denylist: Arc::new(IpDenylist::default()),
        verify_tls,
        ca_file: ca_file.to_owned(),
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(30),
        max_response_bytes: 1 << 20,
        test_destinations: destinations
            .iter()
            .map(|(n, u)| ((*n).to_owned(), u.clone()))
            .collect(),
    })
    .unwrap()
}

/// `Authorization` of a request from `origin` to `destination` signed with `key`, under
/// the key ID `key_id`.
fn x_matrix(
    origin: &str,
    destination: &str,
    key: &SigningKey,
    key_id: &str,
    method: &str,
    uri: &str,
) -> String {
    let request = http::Request::builder()
        .method(method)
        .uri(uri)
        .body(Vec::<u8>::new())
        .unwrap();
    let signed = XMatrix::sign_http_request(
        &request,
        XMatrixSigningInput::new(
            origin.try_into().unwrap(),
            destination.try_into().unwrap(),
            key.key_pair(),
        ),
    )
    .unwrap();
    XMatrix::new(
        origin.try_into().unwrap(),
        destination.try_into().unwrap(),
        key_id.try_into().unwrap(),
        signed.sig,
    )
    .to_string()
}

async fn signed_requests_are_checked(backend: Backend, topology: Topology) {
    let (pa, pb) = (reserve_port(), reserve_port());
    let closed = reserve_port();
    // A rotated its key once: it still publishes the old one, for events only.
    let old_dir = tempfile::tempdir().unwrap();
    let old_key = SigningKey::load_or_generate(old_dir.path()).unwrap();
    let old_setting = format!(
        "federation.old_signing_keys={{\"ed25519:old\" = {{ key = \"{}\", expired_ts = 1000 }}}}",
        old_key.public_key_base64()
    );
    let a = start(
        backend,
        topology,
        "a.test",
        pa,
        &[("b.test", url(pb))],
        &[old_setting],
    )
    .await;
    let b = start(
        backend,
        topology,
        "b.test",
        pb,
        &[("a.test", url(pa)), ("z.test", url(closed))],
        &[],
    )
    .await;
    b.register("alice", "password").await;
    let a_key = key_of(&a);
    let path = "/_matrix/federation/v1/query/profile?user_id=%40alice%3Ab.test";

    // A's own client, with A's key: B fetches A's key from A and accepts the request.
    let client = client_of(key_of(&a), "a.test", &[("b.test", url(pb))], "", true);
    let profile = client
        .get(server("b.test"), path)
        .await
        .unwrap_or_else(|e| panic!("signed request refused: {e}"));
    assert_eq!(profile["displayname"], "alice", "{profile}");
    // `field` narrows the answer; an unknown user is 404 (signed, so past the check).
    let one = client
        .get(server("b.test"), &format!("{path}&field=avatar_url"))
        .await
        .unwrap();
    assert_eq!(one, json!({}));
    let err = client
        .get(
            server("b.test"),
            "/_matrix/federation/v1/query/profile?user_id=%40nobody%3Ab.test",
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");

    // Refusals: each a 401 M_UNAUTHORIZED.
    let other = SigningKey::load_or_generate(tempfile::tempdir().unwrap().path()).unwrap();
    let a_id = a_key.key_id().to_string();
    let cases: Vec<(&str, Option<String>, &str)> = vec![
        ("unsigned", None, "Missing X-Matrix"),
        (
            "wrong signature",
            Some(x_matrix("a.test", "b.test", &other, &a_id, "GET", path)),
            "Invalid X-Matrix signature",
        ),
        (
            "wrong destination",
            Some(x_matrix("a.test", "c.test", &a_key, &a_id, "GET", path)),
            "not for this server",
        ),
        (
            "signature over another URI",
            Some(x_matrix(
                "a.test",
                "b.test",
                &a_key,
                &a_id,
                "GET",
                "/_matrix/federation/v1/query/profile?user_id=%40bob%3Ab.test",
            )),
            "Invalid X-Matrix signature",
        ),
        (
            "unknown key",
            Some(x_matrix(
                "a.test",
                "b.test",
                &a_key,
                "ed25519:nope",
                "GET",
                path,
            )),
            "Unknown key ed25519:nope of a.test",
        ),
        (
            "unknown origin",
            Some(x_matrix("z.test", "b.test", &a_key, &a_id, "GET", path)),
            "of z.test",
        ),
        (
            "old key",
            Some(x_matrix(
                "a.test",
                "b.test",
                &old_key,
                "ed25519:old",
                "GET",
                path,
            )),
            "no longer valid for requests",
        ),
        ("garbage", Some("X-Matrix garbage".to_owned()), "Malformed"),
        (
            "missing sig",
            Some(format!(
                "X-Matrix origin=a.test,destination=b.test,key=\"{a_id}\""
            )),
            "Malformed",
        ),
        (
            "another scheme",
            Some("Bearer sometoken".to_owned()),
            "not of the X-Matrix scheme",
        ),
    ];
    for (case, header, reason) in cases {
        let mut req = b.client.get(format!("{}{path}", b.base));
        if let Some(h) = &header {
            req = req.insert_header(("Authorization", h.as_str()));
        }
        let mut resp = req.send().await.unwrap();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert_eq!(resp.status().as_u16(), 401, "{case}: {body}");
        assert_eq!(body["errcode"], "M_UNAUTHORIZED", "{case}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| e.contains(reason)),
            "{case}: {body}"
        );
    }
    // The valid header still works after all that.
    let header = x_matrix("a.test", "b.test", &a_key, &a_id, "GET", path);
    let resp = b
        .client
        .get(format!("{}{path}", b.base))
        .insert_header(("Authorization", header))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    a.stop().await;
    b.stop().await;
}

async fn tls_listeners_serve_federation(backend: Backend, topology: Topology) {
    let dir = tempfile::tempdir().unwrap();
    let (ca, chain, key) = test_certificates(dir.path());
    let (pa, pfa, pb) = (reserve_port(), reserve_port(), reserve_port());
    // A serves HTTPS on server.listen and on a federation-only listener.
    let a = start(
        backend,
        topology,
        "a.test",
        pa,
        &[],
        &[
            format!("server.tls_cert={chain}"),
            format!("server.tls_key={key}"),
            format!("federation.listen=127.0.0.1:{pfa}"),
            "server.http_listen=127.0.0.1:0".to_owned(),
        ],
    )
    .await;
    let a_key = key_of(&a);
    // Beside HTTPS, a plain-HTTP listener serves the client API, never federation.
    let http = a.node.as_ref().unwrap().http_addr.expect("http listener");
    for (path, want) in [
        ("/_matrix/client/versions", 200),
        ("/_matrix/key/v2/server", 404),
        ("/_matrix/federation/v1/version", 404),
    ] {
        let res = a
            .client
            .get(format!("http://{http}{path}"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), want, "{path}");
    }
    // B reaches A's federation listener over HTTPS, trusting the test CA, and so serves A's
    // keys as a notary.
    let b = start(
        backend,
        topology,
        "b.test",
        pb,
        &[("a.test", format!("https://localhost:{pfa}"))],
        &[format!("federation.ca_file={ca}")],
    )
    .await;
    let (status, body) = b.get("/_matrix/key/v2/query/a.test", None).await;
    assert_eq!(status, 200, "{body}");
    notary_answer(&body, "a.test", &a_key, "b.test", &key_of(&b));

    // The client listener is HTTPS too, and serves the client API and federation.
    let on_client = [("a.test", format!("https://localhost:{pa}"))];
    let verified = client_of(key_of(&b), "b.test", &on_client, &ca, true);
    let version = verified
        .get(server("a.test"), "/_matrix/federation/v1/version")
        .await
        .unwrap();
    assert_eq!(version["server"]["name"], "myelin");
    let status = |c: FederationClient, path: &'static str| async move {
        c.request(http::Method::GET, server("a.test"), path, None, false, None)
            .await
            .map(|r| r.status)
    };
    assert_eq!(
        status(verified.clone(), "/_matrix/client/versions")
            .await
            .unwrap(),
        200
    );
    // Certificates are verified: without the CA the connection is refused; with
    // verification off (tests only) it is not.
    let unverified = client_of(key_of(&b), "b.test", &on_client, "", true);
    let refused = status(unverified, "/_matrix/client/versions").await;
    assert!(
        matches!(&refused, Err(FederationError::Unreachable { detail, .. }) if detail.contains("ertificate")),
        "{refused:?}"
    );
    let unchecked = client_of(key_of(&b), "b.test", &on_client, "", false);
    assert_eq!(
        status(unchecked, "/_matrix/client/versions").await.unwrap(),
        200
    );
    // The federation listener serves the federation API only.
    let on_federation = [("a.test", format!("https://localhost:{pfa}"))];
    let federation_only = client_of(key_of(&b), "b.test", &on_federation, &ca, true);
    assert_eq!(
        status(federation_only.clone(), "/_matrix/key/v2/server")
            .await
            .unwrap(),
        200
    );
    assert_eq!(
        status(federation_only, "/_matrix/client/versions")
            .await
            .unwrap(),
        404
    );
    a.stop().await;
    b.stop().await;
}

/// A request from `origin` to `to` signed with `key` (its JSON body signed too); status and
/// JSON answer.
async fn signed(
    to: &TestServer,
    origin: &str,
    key: &SigningKey,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let bytes = body
        .map(|b| serde_json::to_vec(&b).unwrap())
        .unwrap_or_default();
    let request = http::Request::builder()
        .method(method)
        .uri(uri)
        .body(bytes.clone())
        .unwrap();
    let sig = XMatrix::sign_http_request(
        &request,
        XMatrixSigningInput::new(
            origin.try_into().unwrap(),
            "a.test".try_into().unwrap(),
            key.key_pair(),
        ),
    )
    .unwrap()
    .sig;
    let header = XMatrix::new(
        origin.try_into().unwrap(),
        "a.test".try_into().unwrap(),
        key.key_id().to_string().as_str().try_into().unwrap(),
        sig,
    )
    .to_string();
    let req = to
        .client
        .request(method.parse().unwrap(), format!("{}{uri}", to.base))
        .insert_header(("Authorization", header));
    let mut resp = if bytes.is_empty() {
        req.send().await
    } else {
        req.insert_header(("Content-Type", "application/json"))
            .send_body(bytes)
            .await
    }
    .unwrap_or_else(|e| panic!("{method} {uri}: {e}"));
    let bytes = resp.body().limit(16 << 20).await.unwrap();
    (
        resp.status().as_u16(),
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

/// The internal listener of a test server (`components.internal_listen` in `Local`, the
/// component node in `Bridged`) and the deployment's secret.
fn internal_of(s: &TestServer) -> (String, String) {
    let internal = [&s.userapi_node, &s.node]
        .into_iter()
        .find_map(|n| n.as_ref().and_then(|n| n.internal_addr))
        .expect("an internal listener");
    let secret = common::INTERNAL_SECRET.split_once('=').unwrap().1;
    (format!("http://{internal}"), secret.to_owned())
}

/// Sends a roomserver message on the internal listener; its `Ok` answer.
async fn roomserver(s: &TestServer, message: &str, body: Value) -> Value {
    let (base, secret) = internal_of(s);
    let mut res = s
        .client
        .post(format!("{base}/_myelin/internal/roomserver/{message}"))
        .insert_header(("Authorization", format!("Bearer {secret}")))
        .send_json(&body)
        .await
        .unwrap();
    let v: Value = res.json().limit(16 << 20).await.unwrap();
    assert!(v.get("Ok").is_some(), "{message}: {v}");
    v["Ok"].clone()
}

/// Extra settings that give a `Local` test server an internal listener.
fn with_internal(topology: Topology) -> Vec<String> {
    match topology {
        Topology::Local => vec![
            "components.internal_listen=127.0.0.1:0".to_owned(),
            common::INTERNAL_SECRET.to_owned(),
        ],
        Topology::Bridged => Vec::new(),
    }
}

const C: &str = "/_matrix/client/v3";
const F: &str = "/_matrix/federation/v1";

/// Sends a message as `token`; its event ID.
async fn say(s: &TestServer, token: &str, room: &str, body: &str) -> String {
    let txn = format!("t{}", rand_suffix());
    let (st, v) = s
        .put(
            &format!("{C}/rooms/{room}/send/m.room.message/{txn}"),
            Some(token),
            json!({"msgtype": "m.text", "body": body}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    v["event_id"].as_str().unwrap().to_owned()
}

/// Sets a state event as `token`; its event ID.
async fn set_state(s: &TestServer, token: &str, room: &str, kind: &str, content: Value) -> String {
    let (st, v) = s
        .put(
            &format!("{C}/rooms/{room}/state/{kind}/"),
            Some(token),
            content,
        )
        .await;
    assert_eq!(st, 200, "{v}");
    v["event_id"].as_str().unwrap().to_owned()
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::SeqCst)
}

/// What a PDU says, for comparing answers: its body (messages), else its type and the
/// history visibility it sets.
fn said(pdu: &Value) -> String {
    match pdu["content"]["body"].as_str() {
        Some(body) => body.to_owned(),
        None => match pdu["content"]["history_visibility"].as_str() {
            Some(v) => format!("hv:{v}"),
            None => pdu["type"].as_str().unwrap_or("?").to_owned(),
        },
    }
}

/// The read side of the federation API, as b.test reads a.test: `/event`, `/state`,
/// `/state_ids`, `/event_auth`, `/backfill`, `/get_missing_events`, with the history
/// visibility for servers (events b.test may not see come redacted), the "in the room"
/// check (403 until Bob of b.test joins, world-readable or not), unknown rooms
/// and events (404) and the room's server ACL (403 when it denies b.test).
async fn the_dag_is_served_to_other_servers(backend: Backend, topology: Topology) {
    let (pa, pb) = (reserve_port(), reserve_port());
    let a = start(
        backend,
        topology,
        "a.test",
        pa,
        &[("b.test", url(pb))],
        &with_internal(topology),
    )
    .await;
    let b = start(backend, topology, "b.test", pb, &[("a.test", url(pa))], &[]).await;
    let b_key = key_of(&b);
    let (alice, tok, _) = a.register("alice", "pw").await;
    let room = common::create(
        &a,
        &tok,
        json!({"preset": "public_chat", "room_version": "11", "initial_state": [
            {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "joined"}}
        ]}),
    )
    .await;
    let hv = |v: &str| json!({ "history_visibility": v });
    let m1 = say(&a, &tok, &room, "one").await;
    // Bob of b.test is invited (through the roomserver: inviting a remote user needs
    // federation's invite, which is not this test's).
    roomserver(
        &a,
        "PerformRoomEvent",
        json!({"room_id": room, "room_version": null, "sender": alice,
            "event_type": "m.room.member", "state_key": "@bob:b.test",
            "content": {"membership": "invite"}, "txn": null, "redacts": null}),
    )
    .await;
    set_state(&a, &tok, &room, "m.room.history_visibility", hv("invited")).await;
    let m2 = say(&a, &tok, &room, "two").await;
    set_state(&a, &tok, &room, "m.room.history_visibility", hv("joined")).await;
    let m3 = say(&a, &tok, &room, "three").await;
    set_state(&a, &tok, &room, "m.room.history_visibility", hv("shared")).await;
    let m4 = say(&a, &tok, &room, "four").await;
    let get = |path: String| {
        let (a, b_key) = (&a, &b_key);
        async move { signed(a, "b.test", b_key, "GET", &path, None).await }
    };
    let event = |id: &str| format!("{F}/event/{}", common::enc(id));
    // Not in the room yet (no joined user, not world-readable): 403 for every read.
    let r = common::enc(&room);
    for path in [
        event(&m4),
        format!("{F}/state/{r}?event_id={}", common::enc(&m4)),
        format!("{F}/state_ids/{r}?event_id={}", common::enc(&m4)),
        format!("{F}/event_auth/{r}/{}", common::enc(&m4)),
        format!("{F}/backfill/{r}?v={}&limit=5", common::enc(&m4)),
        format!("{F}/timestamp_to_event/{r}?ts=1&dir=f"),
    ] {
        common::assert_error(&get(path).await, 403, "M_FORBIDDEN");
    }
    let gme = |body: Value| {
        let (a, b_key, r) = (&a, &b_key, &r);
        async move {
            signed(
                a,
                "b.test",
                b_key,
                "POST",
                &format!("{F}/get_missing_events/{r}"),
                Some(body),
            )
            .await
        }
    };
    common::assert_error(
        &gme(json!({"earliest_events": [], "latest_events": [m4]})).await,
        403,
        "M_FORBIDDEN",
    );
    let hv_wr = set_state(
        &a,
        &tok,
        &room,
        "m.room.history_visibility",
        hv("world_readable"),
    )
    .await;
    let m5 = say(&a, &tok, &room, "five").await;
    // World-readable, and still nobody of b.test joined: 403 for every read, as Synapse
    // (`assert_host_in_room`) and the spec ("the requesting host is not in the room").
    for path in [
        event(&m5),
        format!("{F}/state/{r}?event_id={}", common::enc(&m5)),
        format!("{F}/state_ids/{r}?event_id={}", common::enc(&m5)),
        format!("{F}/event_auth/{r}/{}", common::enc(&m5)),
        format!("{F}/backfill/{r}?v={}&limit=5", common::enc(&m5)),
        format!("{F}/timestamp_to_event/{r}?ts=1&dir=f"),
    ] {
        let refused = get(path.clone()).await;
        common::assert_error(&refused, 403, "M_FORBIDDEN");
        assert!(
            refused.1["error"].as_str().unwrap().contains("not in room"),
            "{path}: {}",
            refused.1
        );
    }
    common::assert_error(
        &gme(json!({"earliest_events": [], "latest_events": [m5]})).await,
        403,
        "M_FORBIDDEN",
    );
    // Bob joins from b.test (after m5: what he may see of m1..m5 is as it was).
    let (_, bob_tok, _) = b.register("bob", "pw").await;
    let (st, v) = b
        .post(
            &format!("{C}/join/{r}?via=a.test"),
            Some(&bob_tok),
            json!({}),
        )
        .await;
    assert_eq!(st, 200, "{v}");

    // /event: transaction-shaped; the joined-only events redacted, the invited one whole
    // (Bob was invited then), shared and world-readable ones whole.
    for (id, body) in [
        (&m1, None),
        (&m2, Some("two")),
        (&m3, None),
        (&m4, Some("four")),
        (&m5, Some("five")),
    ] {
        let (st, v) = get(event(id)).await;
        assert_eq!(st, 200, "{v}");
        assert_eq!(v["origin"], "a.test", "{v}");
        assert!(v["origin_server_ts"].is_u64(), "{v}");
        let pdus = v["pdus"].as_array().unwrap();
        assert_eq!(pdus.len(), 1, "{v}");
        assert_eq!(pdus[0]["room_id"], room.as_str());
        assert_eq!(pdus[0]["type"], "m.room.message");
        match body {
            Some(body) => assert_eq!(
                pdus[0]["content"]["body"], body,
                "{backend:?} {topology:?} {v}"
            ),
            None => assert_eq!(
                pdus[0]["content"],
                json!({}),
                "{backend:?} {topology:?} {id} redacted: {v}"
            ),
        }
        // Served as stored: the signatures and hashes stay, so it still verifies.
        assert!(pdus[0]["signatures"]["a.test"].is_object(), "{v}");
    }
    common::assert_error(&get(event("$nope")).await, 404, "M_NOT_FOUND");

    // /state and /state_ids: the state before m5 (the world-readable setting, Bob's invite)
    // and its auth chain.
    let (st, state) = get(format!("{F}/state/{r}?event_id={}", common::enc(&m5))).await;
    assert_eq!(st, 200, "{state}");
    let pdus = state["pdus"].as_array().unwrap();
    let has = |kind: &str, key: &str| {
        pdus.iter()
            .find(|e| e["type"] == kind && e["state_key"] == key)
            .cloned()
            .unwrap_or_else(|| panic!("{kind} {key} in {state}"))
    };
    assert_eq!(
        has("m.room.history_visibility", "")["content"],
        hv("world_readable")
    );
    assert_eq!(
        has("m.room.member", "@bob:b.test")["content"]["membership"],
        "invite"
    );
    has("m.room.create", "");
    assert!(
        pdus.iter().all(|e| e["type"] != "m.room.message"),
        "{state}"
    );
    let chain = state["auth_chain"].as_array().unwrap();
    assert!(
        chain.iter().any(|e| e["type"] == "m.room.create"),
        "{state}"
    );
    let (st, ids) = get(format!("{F}/state_ids/{r}?event_id={}", common::enc(&m5))).await;
    assert_eq!(st, 200, "{ids}");
    let pdu_ids = ids["pdu_ids"].as_array().unwrap();
    assert_eq!(pdu_ids.len(), pdus.len(), "{ids}");
    assert!(pdu_ids.contains(&json!(hv_wr)), "{ids}");
    assert_eq!(
        ids["auth_chain_ids"].as_array().unwrap().len(),
        chain.len(),
        "{ids}"
    );
    // The state before a state event leaves the event out.
    let (_, before) = get(format!(
        "{F}/state_ids/{r}?event_id={}",
        common::enc(&hv_wr)
    ))
    .await;
    assert!(
        !before["pdu_ids"]
            .as_array()
            .unwrap()
            .contains(&json!(hv_wr)),
        "{before}"
    );
    for path in [
        format!("{F}/state/{r}?event_id=%24nope"),
        format!("{F}/state_ids/{r}?event_id=%24nope"),
        format!("{F}/event_auth/{r}/%24nope"),
        format!(
            "{F}/state/{}?event_id={}",
            common::enc("!nope:a.test"),
            common::enc(&m5)
        ),
        format!(
            "{F}/backfill/{}?v={}&limit=5",
            common::enc("!nope:a.test"),
            common::enc(&m5)
        ),
    ] {
        common::assert_error(&get(path).await, 404, "M_NOT_FOUND");
    }

    // /timestamp_to_event: the nearest event either way of a time, 404 past the ends.
    let ts_of = |v: &Value| v["pdus"][0]["origin_server_ts"].as_i64().unwrap();
    let (t4, t5) = (
        ts_of(&get(event(&m4)).await.1),
        ts_of(&get(event(&m5)).await.1),
    );
    let (st, v) = get(format!("{F}/timestamp_to_event/{r}?ts={t4}&dir=f")).await;
    assert_eq!(st, 200, "{v}");
    // m4, or an event sent in the same millisecond just before it.
    assert_eq!(v["origin_server_ts"].as_i64(), Some(t4), "{v}");
    assert!(v["event_id"].is_string(), "{v}");
    let (_, v) = get(format!(
        "{F}/timestamp_to_event/{r}?ts={}&dir=b",
        t5 + 100_000
    ))
    .await;
    assert!(v["origin_server_ts"].as_i64().unwrap() >= t5, "{v}");
    common::assert_error(
        &get(format!(
            "{F}/timestamp_to_event/{r}?ts={}&dir=f",
            t5 + 10_000_000
        ))
        .await,
        404,
        "M_NOT_FOUND",
    );
    common::assert_error(
        &get(format!("{F}/timestamp_to_event/{r}?ts=1&dir=b")).await,
        404,
        "M_NOT_FOUND",
    );

    // Bad requests: 400 with an errcode, nothing served.
    for path in [
        format!("{F}/state/{r}"),
        format!("{F}/backfill/{r}?v={}", common::enc(&m5)),
        format!("{F}/backfill/{r}?v={}&limit=many", common::enc(&m5)),
        format!("{F}/event_auth/{r}/not-an-event-id"),
    ] {
        let (st, v) = get(path.clone()).await;
        assert_eq!(st, 400, "{path}: {v}");
        assert!(
            v["errcode"].as_str().is_some_and(|c| c.starts_with("M_")),
            "{path}: {v}"
        );
    }
    for body in [
        json!({"latest_events": "nope", "earliest_events": []}),
        json!({"earliest_events": []}),
        json!({"latest_events": [m5], "earliest_events": [], "limit": -1}),
    ] {
        let (st, v) = gme(body.clone()).await;
        assert_eq!(st, 400, "{body}: {v}");
        assert!(v["errcode"].is_string(), "{body}: {v}");
    }

    // /event_auth: the create event, the power levels and Alice's join.
    let (st, auth) = get(format!("{F}/event_auth/{r}/{}", common::enc(&m5))).await;
    assert_eq!(st, 200, "{auth}");
    let mut kinds: Vec<String> = auth["auth_chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{} {}",
                e["type"].as_str().unwrap(),
                e["state_key"].as_str().unwrap()
            )
        })
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "m.room.create ".to_owned(),
            format!("m.room.member {alice}"),
            "m.room.power_levels ".to_owned(),
        ]
    );

    // /backfill: from m5, deepest first, at most `limit`, the events given included.
    let backfill = |from: &str, limit: u32| {
        get(format!(
            "{F}/backfill/{r}?v={}&limit={limit}",
            common::enc(from)
        ))
    };
    let (st, v) = backfill(&m5, 3).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["origin"], "a.test");
    let got: Vec<String> = v["pdus"].as_array().unwrap().iter().map(said).collect();
    assert_eq!(got, ["five", "hv:world_readable", "four"], "{v}");
    // A large limit: the whole room down to its create event (capped at 100), by depth,
    // the joined-only messages redacted.
    let (_, v) = backfill(&m5, 1000).await;
    let all = v["pdus"].as_array().unwrap();
    assert!(all.len() > 10 && all.len() <= 100, "{v}");
    assert_eq!(all.last().unwrap()["type"], "m.room.create", "{v}");
    let depths: Vec<u64> = all.iter().map(|e| e["depth"].as_u64().unwrap()).collect();
    assert!(depths.windows(2).all(|w| w[0] > w[1]), "{depths:?}");
    let messages: Vec<String> = all
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .map(|e| {
            e["content"]["body"]
                .as_str()
                .unwrap_or("(redacted)")
                .to_owned()
        })
        .collect();
    assert_eq!(
        messages,
        ["five", "four", "(redacted)", "two", "(redacted)"]
    );
    let (_, none) = get(format!("{F}/backfill/{r}?v=%24nope&limit=5")).await;
    assert_eq!(none["pdus"], json!([]), "{none}");
    // Several starting points: one walk, deepest first.
    let (_, v) = get(format!(
        "{F}/backfill/{r}?v={}&v={}&limit=4",
        common::enc(&m2),
        common::enc(&m4)
    ))
    .await;
    let got: Vec<String> = v["pdus"].as_array().unwrap().iter().map(said).collect();
    assert_eq!(
        got,
        ["four", "hv:shared", "m.room.message", "hv:joined"],
        "{v}"
    );
    // Unsigned: 401.
    let (st, _) = a.get(&event(&m5), None).await;
    assert_eq!(st, 401);
    let (st, none) = backfill(&m5, 0).await;
    assert_eq!((st, &none["pdus"]), (200, &json!([])), "{none}");

    // /get_missing_events: between m2 and m5, oldest first; the limit keeps the nearest.
    let (st, v) = gme(json!({"earliest_events": [m2], "latest_events": [m5]})).await;
    assert_eq!(st, 200, "{v}");
    let got: Vec<String> = v["events"].as_array().unwrap().iter().map(said).collect();
    assert_eq!(
        got,
        [
            "hv:joined",
            "m.room.message",
            "hv:shared",
            "four",
            "hv:world_readable"
        ],
        "{v}"
    );
    assert_eq!(v["events"][1]["content"], json!({}), "m3 redacted: {v}");
    let (_, v) = gme(json!({"earliest_events": [m2], "latest_events": [m5], "limit": 2})).await;
    let got: Vec<String> = v["events"].as_array().unwrap().iter().map(said).collect();
    assert_eq!(got, ["four", "hv:world_readable"], "{v}");
    let (_, four) = get(event(&m4)).await;
    let depth = four["pdus"][0]["depth"].as_u64().unwrap();
    let (_, v) =
        gme(json!({"earliest_events": [m1], "latest_events": [m5], "min_depth": depth})).await;
    let got: Vec<String> = v["events"].as_array().unwrap().iter().map(said).collect();
    assert_eq!(got, ["four", "hv:world_readable"], "{v}");
    // At most 20 (as Synapse), however many are asked for.
    for _ in 0..22 {
        say(&a, &tok, &room, "more").await;
    }
    let (_, last) = backfill(&m5, 1).await;
    assert_eq!(last["pdus"].as_array().unwrap().len(), 1);
    let (_, head) = get(format!(
        "{F}/backfill/{r}?v={}&limit=1",
        common::enc(&say(&a, &tok, &room, "head").await)
    ))
    .await;
    assert_eq!(said(&head["pdus"][0]), "head");
    let head_id = {
        let (_, s) = a
            .get(
                &format!("{C}/rooms/{room}/messages?dir=b&limit=1"),
                Some(&tok),
            )
            .await;
        s["chunk"][0]["event_id"].as_str().unwrap().to_owned()
    };
    let (_, v) =
        gme(json!({"earliest_events": [m5], "latest_events": [head_id], "limit": 50})).await;
    assert_eq!(v["events"].as_array().unwrap().len(), 20, "{v}");

    // An account erased here: its events are served redacted to other servers (once the
    // syncapi has the erasure from the userapi's stream).
    let (_, carol_tok, _) = a.register("carol", "pw").await;
    let (st, _) = a
        .post(
            &format!("{C}/rooms/{room}/join"),
            Some(&carol_tok),
            json!({}),
        )
        .await;
    assert_eq!(st, 200);
    let carols = say(&a, &carol_tok, &room, "carol's words").await;
    let (_, v) = get(event(&carols)).await;
    assert_eq!(v["pdus"][0]["content"]["body"], "carol's words", "{v}");
    let deactivate = format!("{C}/account/deactivate");
    let (st, v) = a
        .post(&deactivate, Some(&carol_tok), json!({"erase": true}))
        .await;
    assert_eq!(st, 401, "{v}");
    let (st, v) = a
        .post(
            &deactivate,
            Some(&carol_tok),
            json!({"erase": true, "auth": {"type": "m.login.password",
                "session": v["session"], "password": "pw",
                "identifier": {"type": "m.id.user", "user": "carol"}}}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let mut erased = Value::Null;
    for _ in 0..100 {
        erased = get(event(&carols)).await.1;
        if erased["pdus"][0]["content"] == json!({}) {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(erased["pdus"][0]["content"], json!({}), "{erased}");
    assert_eq!(erased["pdus"][0]["sender"], "@carol:a.test");
    let (_, v) = backfill(&carols, 1).await;
    assert_eq!(v["pdus"][0]["content"], json!({}), "{v}");
    // Alice's events stay whole.
    assert_eq!(
        get(event(&m5)).await.1["pdus"][0]["content"]["body"],
        "five"
    );

    // A room b.test has nobody in and cannot read: 403.
    let private = common::create(&a, &tok, json!({"preset": "private_chat"})).await;
    let p1 = say(&a, &tok, &private, "private").await;
    common::assert_error(&get(event(&p1)).await, 403, "M_FORBIDDEN");
    common::assert_error(
        &get(format!(
            "{F}/backfill/{}?v={}&limit=5",
            common::enc(&private),
            common::enc(&p1)
        ))
        .await,
        403,
        "M_FORBIDDEN",
    );

    // The server ACL: denying b.test closes every read of the room to it, deny winning over
    // allow; allowing it again opens them.
    set_state(
        &a,
        &tok,
        &room,
        "m.room.server_acl",
        json!({"allow": ["*"], "deny": ["b.test"]}),
    )
    .await;
    for path in [
        event(&m5),
        format!("{F}/state/{r}?event_id={}", common::enc(&m5)),
        format!("{F}/state_ids/{r}?event_id={}", common::enc(&m5)),
        format!("{F}/event_auth/{r}/{}", common::enc(&m5)),
        format!("{F}/backfill/{r}?v={}&limit=5", common::enc(&m5)),
        format!("{F}/timestamp_to_event/{r}?ts=1&dir=f"),
    ] {
        let refused = get(path).await;
        common::assert_error(&refused, 403, "M_FORBIDDEN");
        assert!(
            refused.1["error"].as_str().unwrap().contains("banned"),
            "{}",
            refused.1
        );
    }
    common::assert_error(
        &gme(json!({"earliest_events": [], "latest_events": [m5]})).await,
        403,
        "M_FORBIDDEN",
    );
    set_state(
        &a,
        &tok,
        &room,
        "m.room.server_acl",
        json!({"allow": ["a.test", "b.*"]}),
    )
    .await;
    assert_eq!(get(event(&m5)).await.0, 200);
    set_state(
        &a,
        &tok,
        &room,
        "m.room.server_acl",
        json!({"allow": ["a.test"]}),
    )
    .await;
    common::assert_error(&get(event(&m5)).await, 403, "M_FORBIDDEN");
    a.stop().await;
    b.stop().await;
}

/// `/query/directory` (our aliases only), `/publicRooms` GET and POST (paging, search,
/// third-party networks) for another server, and `/openid/userinfo` on the federation-only
/// listener (valid, unknown and missing tokens).
async fn directory_and_openid_for_other_servers(backend: Backend, topology: Topology) {
    let (pa, pfa, pb) = (reserve_port(), reserve_port(), reserve_port());
    let a = start(
        backend,
        topology,
        "a.test",
        pa,
        &[("b.test", url(pb))],
        &[format!("federation.listen=127.0.0.1:{pfa}")],
    )
    .await;
    let b = start(backend, topology, "b.test", pb, &[("a.test", url(pa))], &[]).await;
    let b_key = key_of(&b);
    let (alice, tok, _) = a.register("alice", "pw").await;
    let mut rooms = Vec::new();
    for (name, alias) in [("Alpha", "alpha"), ("Beta", "beta"), ("Gamma", "gamma")] {
        // Gamma is a space.
        let creation = if name == "Gamma" {
            json!({"type": "m.space"})
        } else {
            json!({})
        };
        rooms.push(
            common::create(
                &a,
                &tok,
                json!({"preset": "public_chat", "visibility": "public", "name": name,
                    "room_alias_name": alias, "creation_content": creation}),
            )
            .await,
        );
    }
    let get = |path: String| {
        let (a, b_key) = (&a, &b_key);
        async move { signed(a, "b.test", b_key, "GET", &path, None).await }
    };
    let post = |body: Value| {
        let (a, b_key) = (&a, &b_key);
        async move {
            signed(
                a,
                "b.test",
                b_key,
                "POST",
                &format!("{F}/publicRooms"),
                Some(body),
            )
            .await
        }
    };

    // /query/directory.
    let (st, v) = get(format!(
        "{F}/query/directory?room_alias={}",
        common::enc("#beta:a.test")
    ))
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["room_id"], rooms[1].as_str());
    assert_eq!(v["servers"], json!(["a.test"]), "{v}");
    common::assert_error(
        &get(format!(
            "{F}/query/directory?room_alias={}",
            common::enc("#nope:a.test")
        ))
        .await,
        404,
        "M_NOT_FOUND",
    );
    common::assert_error(
        &get(format!(
            "{F}/query/directory?room_alias={}",
            common::enc("#beta:b.test")
        ))
        .await,
        400,
        "M_INVALID_PARAM",
    );
    // Signed requests only.
    let (st, _) = a
        .get(
            &format!(
                "{F}/query/directory?room_alias={}",
                common::enc("#beta:a.test")
            ),
            None,
        )
        .await;
    assert_eq!(st, 401);

    // /publicRooms GET: paged.
    let names = |v: &Value| -> Vec<String> {
        v["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["name"].as_str().unwrap().to_owned())
            .collect()
    };
    let (st, page1) = get(format!("{F}/publicRooms?limit=2")).await;
    assert_eq!(st, 200, "{page1}");
    assert_eq!(names(&page1).len(), 2, "{page1}");
    assert_eq!(page1["total_room_count_estimate"], 3);
    let next = page1["next_batch"].as_str().expect("next_batch").to_owned();
    let (_, page2) = get(format!("{F}/publicRooms?limit=2&since={next}")).await;
    assert_eq!(names(&page2).len(), 1, "{page2}");
    assert!(page2.get("next_batch").is_none(), "{page2}");
    assert!(page2["prev_batch"].is_string(), "{page2}");
    let mut all = names(&page1);
    all.extend(names(&page2));
    all.sort();
    assert_eq!(all, ["Alpha", "Beta", "Gamma"]);
    // limit=0 is no limit (as Synapse).
    let (_, v) = get(format!("{F}/publicRooms?limit=0")).await;
    assert_eq!(names(&v).len(), 3, "{v}");
    // POST: search, paging, networks.
    let (st, v) = post(json!({"filter": {"generic_search_term": "bet"}})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(names(&v), ["Beta"]);
    let (_, v) = post(json!({"filter": {"room_types": ["m.space"]}})).await;
    assert_eq!(names(&v), ["Gamma"], "{v}");
    let (_, v) = post(json!({"filter": {"room_types": [null]}})).await;
    let mut plain = names(&v);
    plain.sort();
    assert_eq!(plain, ["Alpha", "Beta"], "{v}");
    let (_, v) = post(json!({"filter": {"room_types": []}})).await;
    assert_eq!(names(&v).len(), 3, "{v}");
    let (_, v) = post(json!({"limit": 1})).await;
    assert_eq!(names(&v).len(), 1);
    assert!(v["next_batch"].is_string(), "{v}");
    let (_, v) = post(json!({"include_all_networks": true})).await;
    assert_eq!(names(&v).len(), 3, "{v}");
    let (st, v) = post(json!({"third_party_instance_id": "irc|libera"})).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["chunk"], json!([]));
    let (st, _) = post(json!({"third_party_instance_id": "irc"})).await;
    assert_eq!(st, 400);
    let (st, _) = get(format!("{F}/publicRooms?since=bogus")).await;
    assert_eq!(st, 400);

    // /openid/userinfo, on the federation-only listener as well as the client one.
    let (st, v) = a
        .post(
            &format!("{C}/user/{}/openid/request_token", common::enc(&alice)),
            Some(&tok),
            json!({}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let token = v["access_token"].as_str().unwrap().to_owned();
    let fed_addr = a
        .node
        .as_ref()
        .unwrap()
        .federation_addr
        .expect("federation listener");
    for base in [format!("http://{fed_addr}"), a.base.clone()] {
        let ask = |query: String| {
            let (client, base) = (&a.client, &base);
            async move {
                let mut resp = client
                    .get(format!("{base}{F}/openid/userinfo{query}"))
                    .send()
                    .await
                    .unwrap();
                let body: Value = resp.json().await.unwrap_or(Value::Null);
                (resp.status().as_u16(), body)
            }
        };
        let (st, v) = ask(format!("?access_token={token}")).await;
        assert_eq!(st, 200, "{base}: {v}");
        assert_eq!(v["sub"], alice.as_str());
        common::assert_error(
            &ask("?access_token=bogus".into()).await,
            401,
            "M_UNKNOWN_TOKEN",
        );
        common::assert_error(&ask(String::new()).await, 401, "M_MISSING_TOKEN");
    }
    a.stop().await;
    b.stop().await;
}

/// A server with a user joined to the room (a join of `@bob:b.test` built and signed by
/// b.test's key, fed to a.test's roomserver as federation's join will) reads the room without
/// it being world-readable, and sees whole the events of `joined` history from when Bob was
/// joined, redacted the ones from before; a third server with nobody in the room gets 403;
/// `/query/directory` lists b.test among the room's servers.
async fn a_joined_server_reads_what_its_users_saw(backend: Backend, topology: Topology) {
    let (pa, pb, pc) = (reserve_port(), reserve_port(), reserve_port());
    let a = start(
        backend,
        topology,
        "a.test",
        pa,
        &[("b.test", url(pb)), ("c.test", url(pc))],
        &with_internal(topology),
    )
    .await;
    let b = start(backend, topology, "b.test", pb, &[("a.test", url(pa))], &[]).await;
    let c = start(backend, topology, "c.test", pc, &[("a.test", url(pa))], &[]).await;
    let (b_key, c_key) = (key_of(&b), key_of(&c));
    let (_, tok, _) = a.register("alice", "pw").await;
    let room = common::create(
        &a,
        &tok,
        json!({"preset": "public_chat", "room_version": "11", "room_alias_name": "joined",
            "initial_state": [{"type": "m.room.history_visibility", "state_key": "",
                "content": {"history_visibility": "joined"}}]}),
    )
    .await;
    let before = say(&a, &tok, &room, "before bob").await;
    // Bob's join, from b.test.
    let (_, state) = a.get(&format!("{C}/rooms/{room}/state"), Some(&tok)).await;
    let id_of = |kind: &str| -> ruma::OwnedEventId {
        state
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["type"] == kind)
            .unwrap()["event_id"]
            .as_str()
            .unwrap()
            .try_into()
            .unwrap()
    };
    let (_, last) = a
        .get(
            &format!("{C}/rooms/{room}/messages?dir=b&limit=1"),
            Some(&tok),
        )
        .await;
    assert_eq!(last["chunk"][0]["event_id"], before.as_str());
    let join = myelin::pdu::PduBuilder {
        room_version: ruma::RoomVersionId::V11,
        room_id: Some(room.as_str().try_into().unwrap()),
        sender: "@bob:b.test".try_into().unwrap(),
        event_type: "m.room.member".into(),
        state_key: Some("@bob:b.test".into()),
        content: json!({"membership": "join"}),
        redacts: None,
        prev_events: vec![before.as_str().try_into().unwrap()],
        auth_events: vec![
            id_of("m.room.create"),
            id_of("m.room.power_levels"),
            id_of("m.room.join_rules"),
        ],
        reference_hashes: Default::default(),
        depth: 50u32.into(),
        origin_server_ts: ruma::MilliSecondsSinceUnixEpoch::now(),
    }
    .build(&b_key, "b.test".try_into().unwrap())
    .unwrap();
    let outcome = roomserver(
        &a,
        "InputRoomEvent",
        json!({"room_id": room, "event": join.json}),
    )
    .await;
    assert_eq!(
        outcome["Accepted"]["event_id"],
        join.event_id.as_str(),
        "{outcome}"
    );
    let after = say(&a, &tok, &room, "after bob").await;
    let event = |id: &str| format!("{F}/event/{}", common::enc(id));
    let (st, v) = signed(&a, "b.test", &b_key, "GET", &event(&after), None).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["pdus"][0]["content"]["body"], "after bob", "{v}");
    let (st, v) = signed(&a, "b.test", &b_key, "GET", &event(&before), None).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["pdus"][0]["content"], json!({}), "before Bob joined: {v}");
    // Bob's own join is seen (the state after it has him joined).
    let (_, v) = signed(
        &a,
        "b.test",
        &b_key,
        "GET",
        &event(join.event_id.as_str()),
        None,
    )
    .await;
    assert_eq!(v["pdus"][0]["content"]["membership"], "join", "{v}");
    let r = common::enc(&room);
    let (st, v) = signed(
        &a,
        "b.test",
        &b_key,
        "GET",
        &format!("{F}/state_ids/{r}?event_id={}", common::enc(&after)),
        None,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert!(
        v["pdu_ids"]
            .as_array()
            .unwrap()
            .contains(&json!(join.event_id.as_str())),
        "{v}"
    );
    // c.test has nobody in the room.
    let refused = signed(&a, "c.test", &c_key, "GET", &event(&after), None).await;
    common::assert_error(&refused, 403, "M_FORBIDDEN");
    let (st, v) = signed(
        &a,
        "c.test",
        &c_key,
        "GET",
        &format!(
            "{F}/query/directory?room_alias={}",
            common::enc("#joined:a.test")
        ),
        None,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["servers"], json!(["a.test", "b.test"]), "{v}");
    for s in [a, b, c] {
        s.stop().await;
    }
}

/// Two servers that reach each other: (a, b).
async fn pair(backend: Backend, topology: Topology) -> (TestServer, TestServer) {
    let (pa, pb) = (reserve_port(), reserve_port());
    let a = start(backend, topology, "a.test", pa, &[("b.test", url(pb))], &[]).await;
    let b = start(backend, topology, "b.test", pb, &[("a.test", url(pa))], &[]).await;
    (a, b)
}

/// `user`'s membership of a room as `s` holds it (by `token`'s reading of the state); null
/// while `s` has no member event of `user` (404: not arrived yet, when polled with `until`).
async fn membership_on(s: &TestServer, token: &str, room: &str, user: &str) -> Value {
    let (status, body) = s
        .get(
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.member/{}",
                enc(room),
                enc(user)
            ),
            Some(token),
        )
        .await;
    if status == 404 && body["errcode"] == "M_NOT_FOUND" {
        return Value::Null;
    }
    assert_eq!(status, 200, "{body}");
    body["membership"].clone()
}

/// The joined members of a room as `s` lists them.
async fn joined_members(s: &TestServer, token: &str, room: &str) -> Vec<String> {
    let (status, body) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{}/joined_members", enc(room)),
            Some(token),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut users: Vec<String> = body["joined"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    users.sort();
    users
}

async fn sync(s: &TestServer, token: &str) -> Value {
    let (status, body) = s
        .get("/_matrix/client/v3/sync?timeout=0", Some(token))
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Whether `s`'s timeline of `room` (a full sync as `token`) has a message with `body`.
async fn sees_message(s: &TestServer, token: &str, room: &str, body: &str) -> bool {
    let synced = sync(s, token).await;
    synced["rooms"]["join"][room]["timeline"]["events"]
        .as_array()
        .is_some_and(|t| t.iter().any(|e| e["content"]["body"] == body))
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

/// Two myelin servers in one room: messages, typing and a leave travel both ways through
/// the outgoing queues and incoming transactions.
async fn two_servers_talk_both_ways(backend: Backend, topology: Topology) {
    let (a, b) = pair(backend, topology).await;
    let (_, alice_token, _) = a.register("alice", "password").await;
    let (bob, bob_token, _) = b.register("bob", "password").await;
    let room = common::create(&a, &alice_token, json!({"preset": "public_chat"})).await;
    let (status, body) = b
        .post(
            &format!("/_matrix/client/v3/join/{}?via=a.test", enc(&room)),
            Some(&bob_token),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    say(&a, &alice_token, &room, "hello from a").await;
    until("b sees a's message", || {
        sees_message(&b, &bob_token, &room, "hello from a")
    })
    .await;
    say(&b, &bob_token, &room, "hello from b").await;
    until("a sees b's message", || {
        sees_message(&a, &alice_token, &room, "hello from b")
    })
    .await;
    // b's typing reaches a.
    let (st, v) = b
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/typing/{}",
                enc(&room),
                enc(&bob)
            ),
            Some(&bob_token),
            json!({"typing": true, "timeout": 20000}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    until("a sees b typing", || async {
        let synced = sync(&a, &alice_token).await;
        synced["rooms"]["join"][&room]["ephemeral"]["events"]
            .as_array()
            .is_some_and(|e| {
                e.iter()
                    .any(|e| e["type"] == "m.typing" && e["content"]["user_ids"] == json!([bob]))
            })
    })
    .await;
    // b leaves: a hears of it.
    let (status, body) = b
        .post(
            &format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)),
            Some(&bob_token),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    until("a sees b leave", || async {
        membership_on(&a, &alice_token, &room, &bob).await == "leave"
    })
    .await;
    a.stop().await;
    b.stop().await;
}

/// Profiles of another server's users, asked of that server through the client API.
async fn remote_profiles_are_asked_of_their_server(backend: Backend, topology: Topology) {
    let (pa, pb) = (reserve_port(), reserve_port());
    let a = start(backend, topology, "a.test", pa, &[("b.test", url(pb))], &[]).await;
    let down = [("a.test", url(pa)), ("down.test", url(reserve_port()))];
    let b = start(backend, topology, "b.test", pb, &down, &[]).await;
    let (alice, alice_token, _) = a.register("alice", "password").await;
    let (_, bob_token, _) = b.register("bob", "password").await;
    let (status, body) = a
        .put(
            &format!("/_matrix/client/v3/profile/{}/displayname", enc(&alice)),
            Some(&alice_token),
            json!({"displayname": "Alice of A"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let profile = |path: String| {
        let (b, token) = (&b, bob_token.clone());
        async move { b.get(&path, Some(&token)).await }
    };
    let (status, body) = profile(format!("/_matrix/client/v3/profile/{}", enc(&alice))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["displayname"], "Alice of A", "{body}");
    assert!(body.get("avatar_url").is_none(), "{body}");
    let (status, body) = profile(format!(
        "/_matrix/client/v3/profile/{}/displayname",
        enc(&alice)
    ))
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["displayname"], "Alice of A", "{body}");
    // A user a.test does not have: its 404, relayed.
    let missing = profile(format!(
        "/_matrix/client/v3/profile/{}",
        enc("@nobody:a.test")
    ))
    .await;
    common::assert_error(&missing, 404, "M_NOT_FOUND");
    // A server that does not answer: 502.
    let (status, body) = profile(format!(
        "/_matrix/client/v3/profile/{}",
        enc("@someone:down.test")
    ))
    .await;
    assert_eq!(status, 502, "{body}");
    a.stop().await;
    b.stop().await;
}

/// Three servers: c joins a's room after b. a sends c's join on to b (on c's behalf, as
/// only the resident server can), so b knows c is in the room and sends it its messages; c
/// learned of b from the state a gave it, and sends to b directly.
async fn a_join_through_one_server_reaches_the_others(backend: Backend, topology: Topology) {
    let (pa, pb, pc) = (reserve_port(), reserve_port(), reserve_port());
    let others = |me: &str| -> Vec<(&'static str, String)> {
        [
            ("a.test", url(pa)),
            ("b.test", url(pb)),
            ("c.test", url(pc)),
        ]
        .into_iter()
        .filter(|(n, _)| *n != me)
        .collect()
    };
    let a = start(backend, topology, "a.test", pa, &others("a.test"), &[]).await;
    let b = start(backend, topology, "b.test", pb, &others("b.test"), &[]).await;
    let c = start(backend, topology, "c.test", pc, &others("c.test"), &[]).await;
    let (_, alice_token, _) = a.register("alice", "password").await;
    let (_, bob_token, _) = b.register("bob", "password").await;
    let (carol, carol_token, _) = c.register("carol", "password").await;
    let room = common::create(&a, &alice_token, json!({"preset": "public_chat"})).await;
    for (s, token) in [(&b, &bob_token), (&c, &carol_token)] {
        let (status, body) = s
            .post(
                &format!("/_matrix/client/v3/join/{}?via=a.test", enc(&room)),
                Some(token),
                json!({}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    until("b hears of c's join from a", || async {
        membership_on(&b, &bob_token, &room, &carol).await == "join"
    })
    .await;
    say(&b, &bob_token, &room, "hello from b").await;
    until("c sees b's message", || {
        sees_message(&c, &carol_token, &room, "hello from b")
    })
    .await;
    say(&c, &carol_token, &room, "hello from c").await;
    until("b sees c's message", || {
        sees_message(&b, &bob_token, &room, "hello from c")
    })
    .await;
    a.stop().await;
    b.stop().await;
    c.stop().await;
}

async fn remote_user_joins_by_room_id_with_via(backend: Backend, topology: Topology) {
    let (a, b) = pair(backend, topology).await;
    let (alice, alice_token, _) = a.register("alice", "password").await;
    let (bob, bob_token, _) = b.register("bob", "password").await;
    let room = common::create(
        &a,
        &alice_token,
        json!({"preset": "public_chat", "name": "Over there", "topic": "federation"}),
    )
    .await;
    // Without a server to ask, b does not know the room (v12 room IDs name no server).
    let path = format!("/_matrix/client/v3/join/{}", enc(&room));
    let refused = b.post(&path, Some(&bob_token), json!({})).await;
    common::assert_error(&refused, 404, "M_NOT_FOUND");
    let (status, body) = b
        .post(&format!("{path}?via=a.test"), Some(&bob_token), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["room_id"], room);

    // B's sync shows the room with its whole state and the join in its timeline.
    let synced = sync(&b, &bob_token).await;
    let joined = &synced["rooms"]["join"][&room];
    let mut events: Vec<&Value> = joined["state"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    events.extend(joined["timeline"]["events"].as_array().unwrap());
    let has = |t: &str, k: &str| events.iter().any(|e| e["type"] == t && e["state_key"] == k);
    for (t, k) in [
        ("m.room.create", ""),
        ("m.room.power_levels", ""),
        ("m.room.join_rules", ""),
        ("m.room.name", ""),
        ("m.room.topic", ""),
        ("m.room.member", alice.as_str()),
    ] {
        assert!(has(t, k), "{t} {k} missing: {joined}");
    }
    let timeline = joined["timeline"]["events"].as_array().unwrap();
    let last = timeline.last().unwrap();
    assert_eq!(last["type"], "m.room.member", "{joined}");
    assert_eq!(last["state_key"], bob, "{joined}");
    assert_eq!(last["content"]["membership"], "join", "{joined}");
    assert_eq!(last["content"]["displayname"], "bob", "{joined}");
    // Both servers list both members.
    let both = {
        let mut v = vec![alice.clone(), bob.clone()];
        v.sort();
        v
    };
    assert_eq!(joined_members(&a, &alice_token, &room).await, both);
    assert_eq!(joined_members(&b, &bob_token, &room).await, both);
    let (status, body) = b
        .get("/_matrix/client/v3/joined_rooms", Some(&bob_token))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["joined_rooms"], json!([room]));
    // B holds the room now: a second join is answered here.
    let (status, body) = b.post(&path, Some(&bob_token), json!({})).await;
    assert_eq!(status, 200, "{body}");

    // Leaving the room: B's copy follows (A hears of it through B's outgoing queue; see
    // `two_servers_talk_both_ways`).
    let (status, body) = b
        .post(
            &format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)),
            Some(&bob_token),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(membership_on(&b, &bob_token, &room, &bob).await, "leave");
    let (_, body) = b
        .get("/_matrix/client/v3/joined_rooms", Some(&bob_token))
        .await;
    assert_eq!(body["joined_rooms"], json!([]));
    // B no longer follows the room: it lets nobody in through its stale copy.
    let as_a = client_of(
        key_of(&a),
        "a.test",
        &[("b.test", b.base.clone())],
        "",
        true,
    );
    let raw = as_a
        .request(
            http::Method::GET,
            server("b.test"),
            &format!(
                "/_matrix/federation/v1/make_join/{}/{}?ver=12",
                enc(&room),
                enc("@carol:a.test")
            ),
            None,
            true,
            None,
        )
        .await
        .unwrap();
    assert_eq!(raw.status, 404, "{:?}", raw.body);
    // Joining again goes through the servers the room had (B no longer follows it).
    let (status, body) = b
        .post(
            &format!("/_matrix/client/v3/rooms/{}/join", enc(&room)),
            Some(&bob_token),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(membership_on(&b, &bob_token, &room, &bob).await, "join");
    let (_, body) = b
        .get("/_matrix/client/v3/joined_rooms", Some(&bob_token))
        .await;
    assert_eq!(body["joined_rooms"], json!([room]));
    assert_eq!(joined_members(&b, &bob_token, &room).await, both);
    // Another server's alias is asked of that server: A has none of that name.
    let missing = b
        .get(
            &format!("/_matrix/client/v3/directory/room/{}", enc("#nope:a.test")),
            Some(&bob_token),
        )
        .await;
    common::assert_error(&missing, 404, "M_NOT_FOUND");
    // One it has: looked up, then joined by alias (through the servers the lookup gives).
    let hall = common::create(
        &a,
        &alice_token,
        json!({"preset": "public_chat", "room_alias_name": "hall"}),
    )
    .await;
    let (status, body) = b
        .get(
            &format!("/_matrix/client/v3/directory/room/{}", enc("#hall:a.test")),
            Some(&bob_token),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["room_id"], hall, "{body}");
    assert_eq!(body["servers"], json!(["a.test"]), "{body}");
    let (carol, carol_token, _) = b.register("carol", "password").await;
    let (status, body) = b
        .post(
            &format!("/_matrix/client/v3/join/{}", enc("#hall:a.test")),
            Some(&carol_token),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["room_id"], hall, "{body}");
    let mut members = vec![alice.clone(), carol];
    members.sort();
    assert_eq!(joined_members(&a, &alice_token, &hall).await, members);
    a.stop().await;
    b.stop().await;
}

/// Rooms of older versions are joined the same way (event format v1 in versions 1 and 2:
/// references with their hashes, event IDs chosen by the sender), through the server their
/// room ID names.
async fn remote_joins_of_every_event_format(backend: Backend, topology: Topology) {
    let (a, b) = pair(backend, topology).await;
    let (alice, alice_token, _) = a.register("alice", "password").await;
    let (bob, bob_token, _) = b.register("bob", "password").await;
    let mut both = vec![alice.clone(), bob.clone()];
    both.sort();
    for version in ["1", "2", "3", "6", "11"] {
        let room = common::create(
            &a,
            &alice_token,
            json!({"preset": "public_chat", "room_version": version}),
        )
        .await;
        let (status, body) = b
            .post(
                &format!("/_matrix/client/v3/rooms/{}/join", enc(&room)),
                Some(&bob_token),
                json!({}),
            )
            .await;
        assert_eq!(status, 200, "version {version}: {body}");
        assert_eq!(
            joined_members(&a, &alice_token, &room).await,
            both,
            "{version}"
        );
        assert_eq!(
            joined_members(&b, &bob_token, &room).await,
            both,
            "{version}"
        );
        let (status, body) = b
            .get(
                &format!(
                    "/_matrix/client/v3/rooms/{}/state/m.room.create",
                    enc(&room)
                ),
                Some(&bob_token),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["room_version"], version, "{body}");
    }
    a.stop().await;
    b.stop().await;
}

async fn remote_invite_accepted(backend: Backend, topology: Topology) {
    let (a, b) = pair(backend, topology).await;
    let (alice, alice_token, _) = a.register("alice", "password").await;
    let (bob, bob_token, _) = b.register("bob", "password").await;
    let room = common::create(
        &a,
        &alice_token,
        json!({"preset": "private_chat", "name": "Invitation only"}),
    )
    .await;
    // A private room: no join without the invite.
    let path = format!("/_matrix/client/v3/join/{}?via=a.test", enc(&room));
    let refused = b.post(&path, Some(&bob_token), json!({})).await;
    common::assert_error(&refused, 403, "M_FORBIDDEN");
    let (status, body) = a
        .post(
            &format!("/_matrix/client/v3/rooms/{}/invite", enc(&room)),
            Some(&alice_token),
            json!({"user_id": bob}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(membership_on(&a, &alice_token, &room, &bob).await, "invite");

    // B's sync shows the invite with the room's stripped state.
    let synced = sync(&b, &bob_token).await;
    let invite = &synced["rooms"]["invite"][&room]["invite_state"]["events"];
    let events = invite.as_array().unwrap_or_else(|| panic!("{synced}"));
    let find = |t: &str| events.iter().find(|e| e["type"] == t);
    assert_eq!(
        find("m.room.name").unwrap()["content"]["name"],
        "Invitation only"
    );
    assert!(find("m.room.create").is_some(), "{invite}");
    assert!(find("m.room.join_rules").is_some(), "{invite}");
    let own = events
        .iter()
        .find(|e| e["type"] == "m.room.member" && e["state_key"] == bob)
        .unwrap();
    assert_eq!(own["content"]["membership"], "invite");
    assert_eq!(own["sender"], alice);
    assert!(
        events.iter().all(|e| e.get("signatures").is_none()),
        "stripped: {invite}"
    );

    // Accepting is a join through the inviter's server (no via needed).
    let (status, body) = b
        .post(
            &format!("/_matrix/client/v3/rooms/{}/join", enc(&room)),
            Some(&bob_token),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let synced = sync(&b, &bob_token).await;
    assert!(synced["rooms"]["join"][&room].is_object(), "{synced}");
    assert!(synced["rooms"]["invite"].get(&room).is_none(), "{synced}");
    assert_eq!(membership_on(&a, &alice_token, &room, &bob).await, "join");

    // createRoom's invites of other servers' users go out once the room exists.
    let direct = common::create(
        &a,
        &alice_token,
        json!({"preset": "trusted_private_chat", "is_direct": true, "invite": [bob]}),
    )
    .await;
    let synced = sync(&b, &bob_token).await;
    let events = &synced["rooms"]["invite"][&direct]["invite_state"]["events"];
    let own = events
        .as_array()
        .and_then(|l| l.iter().find(|e| e["state_key"] == bob))
        .unwrap_or_else(|| panic!("{synced}"));
    assert_eq!(own["content"]["membership"], "invite", "{own}");
    assert_eq!(own["content"]["is_direct"], true, "{own}");
    assert_eq!(
        membership_on(&a, &alice_token, &direct, &bob).await,
        "invite"
    );
    a.stop().await;
    b.stop().await;
}

async fn remote_invite_rejected(backend: Backend, topology: Topology) {
    let (a, b) = pair(backend, topology).await;
    let (_, alice_token, _) = a.register("alice", "password").await;
    let (bob, bob_token, _) = b.register("bob", "password").await;
    let room = common::create(&a, &alice_token, json!({"preset": "private_chat"})).await;
    let (status, body) = a
        .post(
            &format!("/_matrix/client/v3/rooms/{}/invite", enc(&room)),
            Some(&alice_token),
            json!({"user_id": bob}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let since = sync(&b, &bob_token).await;
    assert!(since["rooms"]["invite"][&room].is_object(), "{since}");
    let (status, body) = b
        .post(
            &format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)),
            Some(&bob_token),
            json!({"reason": "no thanks"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // A has the rejection (send_leave), and B's sync moves the room to `leave`.
    assert_eq!(membership_on(&a, &alice_token, &room, &bob).await, "leave");
    let (status, synced) = b
        .get(
            &format!(
                "/_matrix/client/v3/sync?timeout=0&since={}",
                since["next_batch"].as_str().unwrap()
            ),
            Some(&bob_token),
        )
        .await;
    assert_eq!(status, 200);
    assert!(synced["rooms"]["leave"][&room].is_object(), "{synced}");
    assert!(synced["rooms"]["invite"].get(&room).is_none(), "{synced}");
    let initial = sync(&b, &bob_token).await;
    assert!(initial["rooms"]["invite"].get(&room).is_none(), "{initial}");
    // Nothing is left to reject.
    let again = b
        .post(
            &format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)),
            Some(&bob_token),
            json!({}),
        )
        .await;
    common::assert_error(&again, 404, "M_NOT_FOUND");

    // An invite the inviting server no longer lets the user leave (A banned bob since, and
    // B does not know) is still cleared here, by a leave made here.
    let room2 = common::create(&a, &alice_token, json!({"preset": "private_chat"})).await;
    let (status, body) = a
        .post(
            &format!("/_matrix/client/v3/rooms/{}/invite", enc(&room2)),
            Some(&alice_token),
            json!({"user_id": bob}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = a
        .post(
            &format!("/_matrix/client/v3/rooms/{}/ban", enc(&room2)),
            Some(&alice_token),
            json!({"user_id": bob}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let since = sync(&b, &bob_token).await;
    assert!(since["rooms"]["invite"][&room2].is_object(), "{since}");
    let (status, body) = b
        .post(
            &format!("/_matrix/client/v3/rooms/{}/leave", enc(&room2)),
            Some(&bob_token),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(membership_on(&a, &alice_token, &room2, &bob).await, "ban");
    let (status, synced) = b
        .get(
            &format!(
                "/_matrix/client/v3/sync?timeout=0&since={}",
                since["next_batch"].as_str().unwrap()
            ),
            Some(&bob_token),
        )
        .await;
    assert_eq!(status, 200);
    let left = &synced["rooms"]["leave"][&room2]["timeline"]["events"];
    let leave = left
        .as_array()
        .and_then(|l| l.last())
        .unwrap_or_else(|| panic!("{synced}"));
    assert_eq!(leave["content"]["membership"], "leave", "{synced}");
    assert_eq!(leave["sender"], bob, "{synced}");
    let synced = sync(&b, &bob_token).await;
    assert!(synced["rooms"]["invite"].get(&room2).is_none(), "{synced}");
    a.stop().await;
    b.stop().await;
}

/// A `b.test` request to `a`, signed with B's key: (status, body).
async fn call_as_b(
    client: &FederationClient,
    method: http::Method,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let raw = client
        .request(method, server("a.test"), path, body, true, None)
        .await
        .unwrap();
    (
        raw.status,
        serde_json::from_slice(&raw.body).unwrap_or(Value::Null),
    )
}

/// A join template from `a` for `user`, filled in and signed by `key` as `origin`.
fn signed_join(made: &Value, origin: &str, key: &SigningKey, content: Value) -> myelin::pdu::Pdu {
    let t = &made["event"];
    let ids = |k: &str| -> Vec<ruma::OwnedEventId> {
        t[k].as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().try_into().unwrap())
            .collect()
    };
    myelin::pdu::PduBuilder {
        room_version: made["room_version"].as_str().unwrap().try_into().unwrap(),
        room_id: Some(t["room_id"].as_str().unwrap().try_into().unwrap()),
        sender: t["sender"].as_str().unwrap().try_into().unwrap(),
        event_type: ruma::events::TimelineEventType::RoomMember,
        state_key: Some(t["state_key"].as_str().unwrap().to_owned()),
        content,
        redacts: None,
        prev_events: ids("prev_events"),
        auth_events: ids("auth_events"),
        reference_hashes: Default::default(),
        depth: ruma::UInt::try_from(t["depth"].as_u64().unwrap()).unwrap(),
        origin_server_ts: ruma::MilliSecondsSinceUnixEpoch::now(),
    }
    .build(key, server(origin))
    .unwrap()
}

async fn membership_requests_are_checked(backend: Backend, topology: Topology) {
    let (a, b) = pair(backend, topology).await;
    let (_, alice_token, _) = a.register("alice", "password").await;
    let room = common::create(&a, &alice_token, json!({"preset": "public_chat"})).await;
    let other_room = common::create(&a, &alice_token, json!({"preset": "public_chat"})).await;
    let private = common::create(&a, &alice_token, json!({"preset": "private_chat"})).await;
    let b_key = key_of(&b);
    let client = client_of(
        key_of(&b),
        "b.test",
        &[("a.test", a.base.clone())],
        "",
        true,
    );
    let make_join = |room: &str, user: &str, ver: &str| {
        format!(
            "/_matrix/federation/v1/make_join/{}/{}{ver}",
            enc(room),
            enc(user)
        )
    };
    let get = |path: String| {
        let client = client.clone();
        async move { call_as_b(&client, http::Method::GET, &path, None).await }
    };
    // make_join: the user must be the origin's, the room known, the version offered, the
    // join allowed.
    common::assert_error(
        &get(make_join(&room, "@carol:c.test", "?ver=12")).await,
        403,
        "M_FORBIDDEN",
    );
    common::assert_error(
        &get(make_join("!nowhere:a.test", "@bob:b.test", "?ver=12")).await,
        404,
        "M_NOT_FOUND",
    );
    let old = get(make_join(&room, "@bob:b.test", "?ver=1&ver=2")).await;
    common::assert_error(&old, 400, "M_INCOMPATIBLE_ROOM_VERSION");
    assert!(old.1["room_version"].is_string(), "{}", old.1);
    common::assert_error(
        &get(make_join(&room, "@bob:b.test", "")).await,
        400,
        "M_INCOMPATIBLE_ROOM_VERSION",
    );
    common::assert_error(
        &get(make_join(&private, "@bob:b.test", "?ver=12&ver=11")).await,
        403,
        "M_FORBIDDEN",
    );
    let (status, made) = get(make_join(&room, "@bob:b.test", "?ver=11&ver=12")).await;
    assert_eq!(status, 200, "{made}");
    assert_eq!(made["event"]["content"]["membership"], "join");
    assert_eq!(made["event"]["state_key"], "@bob:b.test");

    // send_join: each bad event refused with M_INVALID_PARAM, nothing stored.
    let send_join = |room: &str, id: &str| {
        format!("/_matrix/federation/v2/send_join/{}/{}", enc(room), enc(id))
    };
    let put = |path: String, body: Value| {
        let client = client.clone();
        async move { call_as_b(&client, http::Method::PUT, &path, Some(&body)).await }
    };
    let good = signed_join(&made, "b.test", &b_key, json!({"membership": "join"}));
    let good_json = serde_json::to_value(&good.json).unwrap();
    let other = SigningKey::load_or_generate(tempfile::tempdir().unwrap().path()).unwrap();
    let forged = signed_join(&made, "b.test", &other, json!({"membership": "join"}));
    let leave = signed_join(&made, "b.test", &b_key, json!({"membership": "leave"}));
    let cases = [
        (
            "another room",
            send_join(&other_room, good.event_id.as_str()),
            good_json.clone(),
        ),
        (
            "another event ID",
            send_join(&room, "$nope"),
            good_json.clone(),
        ),
        (
            "bad signature",
            send_join(&room, forged.event_id.as_str()),
            serde_json::to_value(&forged.json).unwrap(),
        ),
        (
            "not a join",
            send_join(&room, leave.event_id.as_str()),
            serde_json::to_value(&leave.json).unwrap(),
        ),
    ];
    for (case, path, body) in cases {
        let got = put(path, body).await;
        assert_eq!(got.0, 400, "{case}: {}", got.1);
        assert_eq!(got.1["errcode"], "M_INVALID_PARAM", "{case}: {}", got.1);
    }
    let unknown = put(
        send_join("!nowhere:a.test", good.event_id.as_str()),
        good_json.clone(),
    )
    .await;
    common::assert_error(&unknown, 404, "M_NOT_FOUND");
    assert_eq!(joined_members(&a, &alice_token, &room).await.len(), 1);
    // The good one is accepted: the state before it and the auth chain come back.
    let (status, answer) = put(send_join(&room, good.event_id.as_str()), good_json).await;
    assert_eq!(status, 200, "{answer}");
    let state = answer["state"].as_array().unwrap();
    assert!(
        state.iter().any(|e| e["type"] == "m.room.create"),
        "{answer}"
    );
    assert!(
        !state.iter().any(|e| e["state_key"] == "@bob:b.test"),
        "before the join"
    );
    assert!(
        !answer["auth_chain"].as_array().unwrap().is_empty(),
        "{answer}"
    );
    assert_eq!(answer["servers_in_room"], json!(["a.test"]), "{answer}");
    assert_eq!(joined_members(&a, &alice_token, &room).await.len(), 2);
    // With omit_members: no member events in the state; B is in the room now.
    let (status, made) = get(make_join(&room, "@carol:b.test", "?ver=12&ver=11")).await;
    assert_eq!(status, 200, "{made}");
    let carol = signed_join(&made, "b.test", &b_key, json!({"membership": "join"}));
    let (status, answer) = put(
        format!(
            "{}?omit_members=true",
            send_join(&room, carol.event_id.as_str())
        ),
        serde_json::to_value(&carol.json).unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["members_omitted"], true, "{answer}");
    let state = answer["state"].as_array().unwrap();
    assert!(
        state.iter().any(|e| e["type"] == "m.room.power_levels"),
        "{answer}"
    );
    assert!(
        state.iter().all(|e| e["type"] != "m.room.member"),
        "{answer}"
    );
    assert_eq!(
        answer["servers_in_room"],
        json!(["a.test", "b.test"]),
        "{answer}"
    );

    // make_leave and send_leave v2, checked the same way.
    let make_leave = |user: &str| {
        format!(
            "/_matrix/federation/v1/make_leave/{}/{}",
            enc(&room),
            enc(user)
        )
    };
    common::assert_error(&get(make_leave("@carol:c.test")).await, 403, "M_FORBIDDEN");
    common::assert_error(&get(make_leave("@dave:b.test")).await, 403, "M_FORBIDDEN");
    let (status, made) = get(make_leave("@bob:b.test")).await;
    assert_eq!(status, 200, "{made}");
    assert_eq!(made["event"]["content"]["membership"], "leave");
    let send_leave = |id: &str| {
        format!(
            "/_matrix/federation/v2/send_leave/{}/{}",
            enc(&room),
            enc(id)
        )
    };
    let not_leave = signed_join(&made, "b.test", &b_key, json!({"membership": "join"}));
    common::assert_error(
        &put(
            send_leave(not_leave.event_id.as_str()),
            serde_json::to_value(&not_leave.json).unwrap(),
        )
        .await,
        400,
        "M_INVALID_PARAM",
    );
    let bob_leave = signed_join(&made, "b.test", &b_key, json!({"membership": "leave"}));
    let (status, answer) = put(
        send_leave(bob_leave.event_id.as_str()),
        serde_json::to_value(&bob_leave.json).unwrap(),
    )
    .await;
    assert_eq!((status, answer), (200, json!({})));
    assert_eq!(
        joined_members(&a, &alice_token, &room).await,
        ["@alice:a.test", "@carol:b.test"]
    );

    // invite: a version we lack, a sender not of the origin, an invitee not of a.
    let alice = "@alice:a.test";
    let invite_path = |id: &str| {
        format!(
            "/_matrix/federation/v2/invite/{}/{}",
            enc("!r:b.test"),
            enc(id)
        )
    };
    let invite = |sender: &str, invitee: &str, version: &str| {
        json!({
            "room_version": version,
            "event": {
                "type": "m.room.member", "room_id": "!r:b.test", "sender": sender,
                "state_key": invitee, "content": {"membership": "invite"},
                "prev_events": [], "auth_events": [], "depth": 3, "origin_server_ts": 1,
            },
            "invite_room_state": [],
        })
    };
    common::assert_error(
        &put(invite_path("$x"), invite("@bob:b.test", alice, "99")).await,
        400,
        "M_INCOMPATIBLE_ROOM_VERSION",
    );
    common::assert_error(
        &put(invite_path("$x"), invite("@carol:c.test", alice, "12")).await,
        403,
        "M_FORBIDDEN",
    );
    let elsewhere = invite("@bob:b.test", "@carol:c.test", "12");
    let object: ruma::CanonicalJsonObject =
        serde_json::from_value(elsewhere["event"].clone()).unwrap();
    let id = myelin::pdu::event_id_of(&object, "12").unwrap();
    common::assert_error(
        &put(invite_path(id.as_str()), elsewhere).await,
        403,
        "M_FORBIDDEN",
    );
    // An invite signed by B (accepted and signed by A) and one signed with another key.
    let invite_of = |key: &SigningKey| {
        let hash = |c: char| {
            ruma::OwnedEventId::try_from(format!("${}", c.to_string().repeat(43))).unwrap()
        };
        let pdu = myelin::pdu::PduBuilder {
            room_version: "12".try_into().unwrap(),
            room_id: Some("!r:b.test".try_into().unwrap()),
            sender: "@bob:b.test".try_into().unwrap(),
            event_type: ruma::events::TimelineEventType::RoomMember,
            state_key: Some(alice.to_owned()),
            content: json!({"membership": "invite"}),
            redacts: None,
            prev_events: vec![hash('P')],
            auth_events: vec![hash('A')],
            reference_hashes: Default::default(),
            depth: 3u32.into(),
            origin_server_ts: ruma::MilliSecondsSinceUnixEpoch::now(),
        }
        .build(key, server("b.test"))
        .unwrap();
        let body = json!({
            "room_version": "12",
            "event": pdu.json,
            "invite_room_state": [{"type": "m.room.name", "state_key": "", "sender": "@bob:b.test", "content": {"name": "B's"}}],
        });
        (invite_path(pdu.event_id.as_str()), body)
    };
    let (path, body) = invite_of(&other);
    common::assert_error(&put(path, body).await, 400, "M_INVALID_PARAM");
    let (path, body) = invite_of(&b_key);
    let (status, answer) = put(path, body).await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer["event"]["signatures"]["a.test"].is_object(),
        "{answer}"
    );
    assert!(
        answer["event"]["signatures"]["b.test"].is_object(),
        "{answer}"
    );
    let synced = sync(&a, &alice_token).await;
    let invited = &synced["rooms"]["invite"]["!r:b.test"]["invite_state"]["events"];
    assert!(
        invited
            .as_array()
            .is_some_and(|l| l.iter().any(|e| e["content"]["name"] == "B's")),
        "{synced}"
    );
    // A room whose server ACL denies B: its membership endpoints refuse B first.
    let (status, body) = a
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.server_acl/",
                enc(&other_room)
            ),
            Some(&alice_token),
            json!({"allow": ["*"], "deny": ["b.test"], "allow_ip_literals": true}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    common::assert_error(
        &get(make_join(&other_room, "@bob:b.test", "?ver=12&ver=11")).await,
        403,
        "M_FORBIDDEN",
    );
    common::assert_error(
        &put(send_join(&other_room, good.event_id.as_str()), json!({})).await,
        403,
        "M_FORBIDDEN",
    );
    a.stop().await;
    b.stop().await;
}

// ---------------------------------------------------------------------------------------
// Knocking over federation, and restricted rooms whose joins a resident server vouches for.
// ---------------------------------------------------------------------------------------

/// A room of `s` created by `token` whose join rule is `join_rule` (more `createRoom` keys
/// in `extra`).
async fn room_with_join_rule(
    s: &TestServer,
    token: &str,
    join_rule: Value,
    extra: Value,
) -> String {
    let mut body = json!({
        "preset": "private_chat",
        "initial_state": [{"type": "m.room.join_rules", "state_key": "", "content": join_rule}],
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    common::create(s, token, body).await
}

async fn knock_on(s: &TestServer, token: &str, room: &str, via: &str) -> (u16, Value) {
    s.post(
        &format!("/_matrix/client/v3/knock/{}?via={via}", enc(room)),
        Some(token),
        json!({"reason": "let me in"}),
    )
    .await
}

/// Our user knocks on another server's room, sees it under `rooms.knock`, is let in by an
/// invite from the room's admin and joins.
async fn remote_knock_accepted(backend: Backend, topology: Topology) {
    let (a, b) = pair(backend, topology).await;
    let (_, alice_token, _) = a.register("alice", "password").await;
    let (bob, bob_token, _) = b.register("bob", "password").await;
    let room = room_with_join_rule(
        &a,
        &alice_token,
        json!({"join_rule": "knock"}),
        json!({"name": "Knock first"}),
    )
    .await;
    let (status, body) = knock_on(&b, &bob_token, &room, "a.test").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["room_id"], room);

    // The room's admin sees the knock, with its reason.
    assert_eq!(membership_on(&a, &alice_token, &room, &bob).await, "knock");
    let (status, member) = a
        .get(
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.member/{}",
                enc(&room),
                enc(&bob)
            ),
            Some(&alice_token),
        )
        .await;
    assert_eq!(status, 200, "{member}");
    assert_eq!(member["reason"], "let me in", "{member}");

    // B's sync shows the room under `knock`, with the state A sent back, stripped.
    let since = sync(&b, &bob_token).await;
    let events = since["rooms"]["knock"][&room]["knock_state"]["events"]
        .as_array()
        .unwrap_or_else(|| panic!("{since}"))
        .clone();
    let find = |t: &str| events.iter().find(|e| e["type"] == t).cloned();
    assert_eq!(
        find("m.room.name").unwrap()["content"]["name"],
        "Knock first"
    );
    assert!(find("m.room.create").is_some(), "{events:?}");
    assert_eq!(
        find("m.room.join_rules").unwrap()["content"]["join_rule"],
        "knock"
    );
    let own = events
        .iter()
        .find(|e| e["type"] == "m.room.member" && e["state_key"] == bob)
        .unwrap_or_else(|| panic!("{events:?}"));
    assert_eq!(own["content"]["membership"], "knock");
    assert!(events.iter().all(|e| e.get("signatures").is_none()));
    assert!(since["rooms"]["join"].get(&room).is_none(), "{since}");

    // Alice lets bob in: the invite reaches B and replaces the knock.
    let (status, body) = a
        .post(
            &format!("/_matrix/client/v3/rooms/{}/invite", enc(&room)),
            Some(&alice_token),
            json!({"user_id": bob}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, synced) = b
        .get(
            &format!(
                "/_matrix/client/v3/sync?timeout=0&since={}",
                since["next_batch"].as_str().unwrap()
            ),
            Some(&bob_token),
        )
        .await;
    assert_eq!(status, 200);
    assert!(synced["rooms"]["invite"][&room].is_object(), "{synced}");
    let initial = sync(&b, &bob_token).await;
    assert!(initial["rooms"]["knock"].get(&room).is_none(), "{initial}");
    assert!(initial["rooms"]["invite"][&room].is_object(), "{initial}");

    // Bob accepts: a join through the inviter's server.
    let (status, body) = b
        .post(
            &format!("/_matrix/client/v3/rooms/{}/join", enc(&room)),
            Some(&bob_token),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(membership_on(&a, &alice_token, &room, &bob).await, "join");
    let synced = sync(&b, &bob_token).await;
    assert!(synced["rooms"]["join"][&room].is_object(), "{synced}");
    assert!(synced["rooms"]["knock"].get(&room).is_none(), "{synced}");
    assert!(synced["rooms"]["invite"].get(&room).is_none(), "{synced}");
    say(&a, &alice_token, &room, "welcome").await;
    until("bob sees alice's welcome", || {
        sees_message(&b, &bob_token, &room, "welcome")
    })
    .await;
    a.stop().await;
    b.stop().await;
}

/// Knocks the room refuses (its join rule, its version) reach the client as the room's
/// server answered; a knock is rescinded through the room's server.
async fn remote_knock_refused_and_rescinded(backend: Backend, topology: Topology) {
    let (a, b) = pair(backend, topology).await;
    let (_, alice_token, _) = a.register("alice", "password").await;
    let (bob, bob_token, _) = b.register("bob", "password").await;
    let invite_only =
        room_with_join_rule(&a, &alice_token, json!({"join_rule": "invite"}), json!({})).await;
    common::assert_error(
        &knock_on(&b, &bob_token, &invite_only, "a.test").await,
        403,
        "M_FORBIDDEN",
    );
    let old = common::create(
        &a,
        &alice_token,
        json!({"preset": "private_chat", "room_version": "6"}),
    )
    .await;
    let refused = knock_on(&b, &bob_token, &old, "a.test").await;
    common::assert_error(&refused, 400, "M_INCOMPATIBLE_ROOM_VERSION");
    let synced = sync(&b, &bob_token).await;
    assert!(
        synced["rooms"]["knock"].get(&invite_only).is_none(),
        "{synced}"
    );
    assert!(synced["rooms"]["knock"].get(&old).is_none(), "{synced}");

    let room =
        room_with_join_rule(&a, &alice_token, json!({"join_rule": "knock"}), json!({})).await;
    let (status, body) = knock_on(&b, &bob_token, &room, "a.test").await;
    assert_eq!(status, 200, "{body}");
    let since = sync(&b, &bob_token).await;
    assert!(since["rooms"]["knock"][&room].is_object(), "{since}");
    let (status, body) = b
        .post(
            &format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)),
            Some(&bob_token),
            json!({"reason": "never mind"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(membership_on(&a, &alice_token, &room, &bob).await, "leave");
    let (status, synced) = b
        .get(
            &format!(
                "/_matrix/client/v3/sync?timeout=0&since={}",
                since["next_batch"].as_str().unwrap()
            ),
            Some(&bob_token),
        )
        .await;
    assert_eq!(status, 200);
    assert!(synced["rooms"]["leave"][&room].is_object(), "{synced}");
    assert!(synced["rooms"]["knock"].get(&room).is_none(), "{synced}");
    let initial = sync(&b, &bob_token).await;
    assert!(initial["rooms"]["knock"].get(&room).is_none(), "{initial}");
    // Nothing is left to rescind.
    common::assert_error(
        &b.post(
            &format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)),
            Some(&bob_token),
            json!({}),
        )
        .await,
        404,
        "M_NOT_FOUND",
    );
    // Bob may knock again, and is seen knocking again.
    let (status, body) = knock_on(&b, &bob_token, &room, "a.test").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(membership_on(&a, &alice_token, &room, &bob).await, "knock");
    let synced = sync(&b, &bob_token).await;
    assert!(synced["rooms"]["knock"][&room].is_object(), "{synced}");
    // With the room's server gone, rescinding still clears the knock here.
    a.stop().await;
    let (status, body) = b
        .post(
            &format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)),
            Some(&bob_token),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let synced = sync(&b, &bob_token).await;
    assert!(synced["rooms"]["knock"].get(&room).is_none(), "{synced}");
    b.stop().await;
}

/// `make_knock` and `send_knock` as another server calls them, each malformed request
/// refused with the spec's error.
async fn knock_requests_are_checked(backend: Backend, topology: Topology) {
    let (a, b) = pair(backend, topology).await;
    let (_, alice_token, _) = a.register("alice", "password").await;
    let room = room_with_join_rule(
        &a,
        &alice_token,
        json!({"join_rule": "knock"}),
        json!({"room_version": "10"}),
    )
    .await;
    let other_room = room_with_join_rule(
        &a,
        &alice_token,
        json!({"join_rule": "knock"}),
        json!({"room_version": "10"}),
    )
    .await;
    let public = common::create(&a, &alice_token, json!({"preset": "public_chat"})).await;
    let old = common::create(
        &a,
        &alice_token,
        json!({"preset": "private_chat", "room_version": "6"}),
    )
    .await;
    let b_key = key_of(&b);
    let client = client_of(
        key_of(&b),
        "b.test",
        &[("a.test", a.base.clone())],
        "",
        true,
    );
    let make_knock = |room: &str, user: &str, ver: &str| {
        format!(
            "/_matrix/federation/v1/make_knock/{}/{}{ver}",
            enc(room),
            enc(user)
        )
    };
    let get = |path: String| {
        let client = client.clone();
        async move { call_as_b(&client, http::Method::GET, &path, None).await }
    };
    common::assert_error(
        &get(make_knock(&room, "@carol:c.test", "?ver=10")).await,
        403,
        "M_FORBIDDEN",
    );
    common::assert_error(
        &get(make_knock(&room, "@bob:b.test", "")).await,
        400,
        "M_MISSING_PARAM",
    );
    common::assert_error(
        &get(make_knock("!nowhere:a.test", "@bob:b.test", "?ver=10")).await,
        404,
        "M_NOT_FOUND",
    );
    let unoffered = get(make_knock(&room, "@bob:b.test", "?ver=9&ver=11")).await;
    common::assert_error(&unoffered, 400, "M_INCOMPATIBLE_ROOM_VERSION");
    assert_eq!(unoffered.1["room_version"], "10", "{}", unoffered.1);
    let no_knocking = get(make_knock(&old, "@bob:b.test", "?ver=6&ver=10")).await;
    common::assert_error(&no_knocking, 400, "M_INCOMPATIBLE_ROOM_VERSION");
    assert_eq!(no_knocking.1["room_version"], "6", "{}", no_knocking.1);
    common::assert_error(
        &get(make_knock(&public, "@bob:b.test", "?ver=10&ver=11&ver=12")).await,
        403,
        "M_FORBIDDEN",
    );
    let (status, made) = get(make_knock(&room, "@bob:b.test", "?ver=10&ver=11")).await;
    assert_eq!(status, 200, "{made}");
    assert_eq!(made["room_version"], "10");
    assert_eq!(made["event"]["content"]["membership"], "knock");
    assert_eq!(made["event"]["state_key"], "@bob:b.test");

    let send_knock = |room: &str, id: &str| {
        format!(
            "/_matrix/federation/v1/send_knock/{}/{}",
            enc(room),
            enc(id)
        )
    };
    let put = |path: String, body: Value| {
        let client = client.clone();
        async move { call_as_b(&client, http::Method::PUT, &path, Some(&body)).await }
    };
    let good = signed_join(&made, "b.test", &b_key, json!({"membership": "knock"}));
    let good_json = serde_json::to_value(&good.json).unwrap();
    let other = SigningKey::load_or_generate(tempfile::tempdir().unwrap().path()).unwrap();
    let forged = signed_join(&made, "b.test", &other, json!({"membership": "knock"}));
    let join = signed_join(&made, "b.test", &b_key, json!({"membership": "join"}));
    let mut carols = made.clone();
    carols["event"]["sender"] = json!("@carol:c.test");
    carols["event"]["state_key"] = json!("@carol:c.test");
    let carol = signed_join(&carols, "c.test", &other, json!({"membership": "knock"}));
    let cases = [
        (
            "another room",
            send_knock(&other_room, good.event_id.as_str()),
            good_json.clone(),
        ),
        (
            "another event ID",
            send_knock(&room, "$nope"),
            good_json.clone(),
        ),
        (
            "bad signature",
            send_knock(&room, forged.event_id.as_str()),
            serde_json::to_value(&forged.json).unwrap(),
        ),
        (
            "not a knock",
            send_knock(&room, join.event_id.as_str()),
            serde_json::to_value(&join.json).unwrap(),
        ),
        (
            "another server's user",
            send_knock(&room, carol.event_id.as_str()),
            serde_json::to_value(&carol.json).unwrap(),
        ),
    ];
    for (case, path, body) in cases {
        let got = put(path, body).await;
        assert_eq!(got.0, 400, "{case}: {}", got.1);
        assert_eq!(got.1["errcode"], "M_INVALID_PARAM", "{case}: {}", got.1);
    }
    common::assert_error(
        &put(
            send_knock("!nowhere:a.test", good.event_id.as_str()),
            good_json.clone(),
        )
        .await,
        404,
        "M_NOT_FOUND",
    );
    let (status, body) = a
        .get(
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.member/{}",
                enc(&room),
                enc("@bob:b.test")
            ),
            Some(&alice_token),
        )
        .await;
    assert_eq!(status, 404, "nothing stored: {body}");
    // A knock on a room whose join rule is not knock (built on a join template, as
    // make_knock gives none): refused by the auth rules.
    let (status, made_public) = get(format!(
        "/_matrix/federation/v1/make_join/{}/{}?ver=12&ver=11&ver=10",
        enc(&public),
        enc("@dave:b.test")
    ))
    .await;
    assert_eq!(status, 200, "{made_public}");
    let misplaced = signed_join(
        &made_public,
        "b.test",
        &b_key,
        json!({"membership": "knock"}),
    );
    common::assert_error(
        &put(
            send_knock(&public, misplaced.event_id.as_str()),
            serde_json::to_value(&misplaced.json).unwrap(),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );

    // The good one: accepted, answered with the room's state as full PDUs.
    let (status, answer) = put(send_knock(&room, good.event_id.as_str()), good_json).await;
    assert_eq!(status, 200, "{answer}");
    let state = answer["knock_room_state"].as_array().unwrap();
    let create = state
        .iter()
        .find(|e| e["type"] == "m.room.create")
        .unwrap_or_else(|| panic!("{answer}"));
    assert!(create["signatures"]["a.test"].is_object(), "{answer}");
    assert!(
        state.iter().any(|e| e["type"] == "m.room.join_rules"),
        "{answer}"
    );
    assert_eq!(
        membership_on(&a, &alice_token, &room, "@bob:b.test").await,
        "knock"
    );
    a.stop().await;
    b.stop().await;
}

/// The state event IDs of a room as `s` serves them to `token`, sorted.
async fn state_ids(s: &TestServer, token: &str, room: &str) -> Vec<String> {
    let (status, body) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{}/state", enc(room)),
            Some(token),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut ids: Vec<String> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect();
    ids.sort();
    ids
}

/// A restricted room (version 10) of A, open to the members of another room of A: a user of
/// B who is in that room joins through A (which vouches and signs), one who is not is
/// refused, and A's own users join the same way without federation.
async fn restricted_rooms_are_joined_through_a_resident_server(
    backend: Backend,
    topology: Topology,
) {
    let (a, b) = pair(backend, topology).await;
    let (alice, alice_token, _) = a.register("alice", "password").await;
    let (dave, dave_token, _) = a.register("dave", "password").await;
    let (bob, bob_token, _) = b.register("bob", "password").await;
    let (_, carol_token, _) = b.register("carol", "password").await;
    let space = common::create(&a, &alice_token, json!({"preset": "public_chat"})).await;
    let restricted = json!({
        "join_rule": "restricted",
        "allow": [{"type": "m.room_membership", "room_id": space}],
    });
    let room = room_with_join_rule(
        &a,
        &alice_token,
        restricted.clone(),
        json!({"room_version": "10"}),
    )
    .await;
    let (status, body) = join_via_a(&b, &bob_token, &space).await;
    assert_eq!(status, 200, "{body}");

    // Carol is in no allowed room: refused, over federation and locally alike.
    common::assert_error(
        &join_via_a(&b, &carol_token, &room).await,
        403,
        "M_FORBIDDEN",
    );
    common::assert_error(
        &join_via_a(&a, &dave_token, &room).await,
        403,
        "M_FORBIDDEN",
    );

    // Bob is in the space: A vouches (alice, the one who may invite) and signs the join.
    let (status, body) = join_via_a(&b, &bob_token, &room).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(membership_on(&a, &alice_token, &room, &bob).await, "join");
    let (status, member) = b
        .get(
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.member/{}",
                enc(&room),
                enc(&bob)
            ),
            Some(&bob_token),
        )
        .await;
    assert_eq!(status, 200, "{member}");
    assert_eq!(
        member["join_authorised_via_users_server"], alice,
        "{member}"
    );
    // B keeps the event as A returned it, with A's signature besides its own.
    let (status, full) = b
        .get(
            &format!("/_matrix/client/v3/rooms/{}/state", enc(&room)),
            Some(&bob_token),
        )
        .await;
    assert_eq!(status, 200, "{full}");
    let join_id = full
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "m.room.member" && e["state_key"] == bob)
        .unwrap()["event_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let as_a = client_of(
        key_of(&a),
        "a.test",
        &[("b.test", b.base.clone())],
        "",
        true,
    );
    let raw = as_a
        .request(
            http::Method::GET,
            server("b.test"),
            &format!("/_matrix/federation/v1/event/{}", enc(&join_id)),
            None,
            true,
            None,
        )
        .await
        .unwrap();
    let served: Value = serde_json::from_slice(&raw.body).unwrap();
    assert_eq!(raw.status, 200, "{served}");
    let signatures = &served["pdus"][0]["signatures"];
    assert!(signatures["a.test"].is_object(), "{served}");
    assert!(signatures["b.test"].is_object(), "{served}");
    // Both servers hold the same state.
    assert_eq!(
        state_ids(&a, &alice_token, &room).await,
        state_ids(&b, &bob_token, &room).await
    );
    say(&b, &bob_token, &room, "in through the space").await;
    until("alice sees bob's message", || {
        sees_message(&a, &alice_token, &room, "in through the space")
    })
    .await;

    // Dave joins the space, then the room: alice vouches for him too, locally.
    let (status, body) = join_via_a(&a, &dave_token, &space).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = join_via_a(&a, &dave_token, &room).await;
    assert_eq!(status, 200, "{body}");
    let (status, member) = a
        .get(
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.member/{}",
                enc(&room),
                enc(&dave)
            ),
            Some(&alice_token),
        )
        .await;
    assert_eq!(status, 200, "{member}");
    assert_eq!(member["membership"], "join");
    assert_eq!(
        member["join_authorised_via_users_server"], alice,
        "{member}"
    );
    until("B sees dave joined", || {
        let (b, bob_token, room) = (&b, &bob_token, &room);
        let dave = dave.clone();
        async move { joined_members(b, bob_token, room).await.contains(&dave) }
    })
    .await;
    assert_eq!(
        state_ids(&a, &alice_token, &room).await,
        state_ids(&b, &bob_token, &room).await
    );
    a.stop().await;
    b.stop().await;
}

/// A restricted room where none of A's members may invite any more, but B's may: A's own
/// user who is in the allowed room joins through B, which vouches for the join.
async fn restricted_join_vouched_for_by_another_server(backend: Backend, topology: Topology) {
    let (a, b) = pair(backend, topology).await;
    let (alice, alice_token, _) = a.register("alice", "password").await;
    let (_, erin_token, _) = a.register("erin", "password").await;
    let (dave, dave_token, _) = a.register("dave", "password").await;
    let (bob, bob_token, _) = b.register("bob", "password").await;
    let space = common::create(&a, &alice_token, json!({"preset": "public_chat"})).await;
    let room = room_with_join_rule(
        &a,
        &alice_token,
        json!({"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": space}]}),
        json!({"room_version": "10", "power_level_content_override": {
            "invite": 50, "users": {alice.as_str(): 100, bob.as_str(): 100}}}),
    )
    .await;
    for (s, token) in [(&a, &erin_token), (&b, &bob_token)] {
        for r in [&space, &room] {
            let (status, body) = join_via_a(s, token, r).await;
            assert_eq!(status, 200, "{body}");
        }
    }
    // Alice leaves: erin (who may not invite) is A's only member.
    let (status, body) = a
        .post(
            &format!("/_matrix/client/v3/rooms/{}/leave", enc(&room)),
            Some(&alice_token),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = join_via_a(&a, &dave_token, &space).await;
    assert_eq!(status, 200, "{body}");
    until("B sees dave in the space", || {
        let (b, bob_token, space, dave) = (&b, &bob_token, &space, dave.clone());
        async move { joined_members(b, bob_token, space).await.contains(&dave) }
    })
    .await;
    let (status, body) = join_via_a(&a, &dave_token, &room).await;
    assert_eq!(status, 200, "{body}");
    let (status, member) = a
        .get(
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.member/{}",
                enc(&room),
                enc(&dave)
            ),
            Some(&erin_token),
        )
        .await;
    assert_eq!(status, 200, "{member}");
    assert_eq!(member["membership"], "join");
    assert_eq!(member["join_authorised_via_users_server"], bob, "{member}");
    assert_eq!(membership_on(&b, &bob_token, &room, &dave).await, "join");
    assert_eq!(
        state_ids(&a, &erin_token, &room).await,
        state_ids(&b, &bob_token, &room).await
    );
    a.stop().await;
    b.stop().await;
}

/// `make_join` and `send_join` of restricted rooms as another server calls them.
async fn restricted_join_requests_are_checked(backend: Backend, topology: Topology) {
    let (a, b) = pair(backend, topology).await;
    let (_, alice_token, _) = a.register("alice", "password").await;
    let (_, bob_token, _) = b.register("bob", "password").await;
    let space = common::create(&a, &alice_token, json!({"preset": "public_chat"})).await;
    let allow = |room: &str| json!({"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": room}]});
    let room = room_with_join_rule(
        &a,
        &alice_token,
        allow(&space),
        json!({"room_version": "10"}),
    )
    .await;
    // Open to the members of a room A is not in: A cannot tell.
    let elsewhere = room_with_join_rule(
        &a,
        &alice_token,
        allow("!elsewhere:c.test"),
        json!({"room_version": "10"}),
    )
    .await;
    // Nobody of A may invite.
    let closed = room_with_join_rule(
        &a,
        &alice_token,
        allow(&space),
        json!({"room_version": "10", "power_level_content_override": {"invite": 101}}),
    )
    .await;
    let (status, body) = b
        .post(
            &format!("/_matrix/client/v3/join/{}?via=a.test", enc(&space)),
            Some(&bob_token),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let b_key = key_of(&b);
    let client = client_of(
        key_of(&b),
        "b.test",
        &[("a.test", a.base.clone())],
        "",
        true,
    );
    let make_join = |room: &str, user: &str| {
        format!(
            "/_matrix/federation/v1/make_join/{}/{}?ver=10",
            enc(room),
            enc(user)
        )
    };
    let get = |path: String| {
        let client = client.clone();
        async move { call_as_b(&client, http::Method::GET, &path, None).await }
    };
    common::assert_error(
        &get(make_join(&room, "@carol:b.test")).await,
        403,
        "M_FORBIDDEN",
    );
    // The room's version is answered first.
    let unoffered = get(format!(
        "/_matrix/federation/v1/make_join/{}/{}?ver=11",
        enc(&room),
        enc("@carol:b.test")
    ))
    .await;
    common::assert_error(&unoffered, 400, "M_INCOMPATIBLE_ROOM_VERSION");
    common::assert_error(
        &get(make_join(&elsewhere, "@bob:b.test")).await,
        400,
        "M_UNABLE_TO_AUTHORISE_JOIN",
    );
    common::assert_error(
        &get(make_join(&closed, "@bob:b.test")).await,
        400,
        "M_UNABLE_TO_GRANT_JOIN",
    );
    // A's own user, in the space, in the same two rooms: nobody here can vouch, and no
    // other server is in them to ask.
    let (_, dave_token, _) = a.register("dave", "password").await;
    let (status, body) = join_via_a(&a, &dave_token, &space).await;
    assert_eq!(status, 200, "{body}");
    common::assert_error(
        &join_via_a(&a, &dave_token, &elsewhere).await,
        403,
        "M_FORBIDDEN",
    );
    common::assert_error(
        &join_via_a(&a, &dave_token, &closed).await,
        403,
        "M_FORBIDDEN",
    );
    let (status, made) = get(make_join(&room, "@bob:b.test")).await;
    assert_eq!(status, 200, "{made}");
    let via = made["event"]["content"]["join_authorised_via_users_server"]
        .as_str()
        .unwrap_or_else(|| panic!("{made}"))
        .to_owned();
    assert!(via.starts_with("@alice:"), "{made}");

    let send_join = |room: &str, id: &str| {
        format!("/_matrix/federation/v2/send_join/{}/{}", enc(room), enc(id))
    };
    let put = |path: String, body: Value| {
        let client = client.clone();
        async move { call_as_b(&client, http::Method::PUT, &path, Some(&body)).await }
    };
    // A voucher of another server: not A's to sign.
    let foreign = signed_join(
        &made,
        "b.test",
        &b_key,
        json!({"membership": "join", "join_authorised_via_users_server": "@bob:b.test"}),
    );
    common::assert_error(
        &put(
            send_join(&room, foreign.event_id.as_str()),
            serde_json::to_value(&foreign.json).unwrap(),
        )
        .await,
        400,
        "M_INVALID_PARAM",
    );
    // Carol (in no allowed room) names alice anyway: refused.
    let mut carols = made.clone();
    carols["event"]["sender"] = json!("@carol:b.test");
    carols["event"]["state_key"] = json!("@carol:b.test");
    let carol = signed_join(
        &carols,
        "b.test",
        &b_key,
        json!({"membership": "join", "join_authorised_via_users_server": via}),
    );
    common::assert_error(
        &put(
            send_join(&room, carol.event_id.as_str()),
            serde_json::to_value(&carol.json).unwrap(),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );
    // Without the voucher: the auth rules refuse it.
    let bare = signed_join(&made, "b.test", &b_key, json!({"membership": "join"}));
    common::assert_error(
        &put(
            send_join(&room, bare.event_id.as_str()),
            serde_json::to_value(&bare.json).unwrap(),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );
    // Bob's, as the template says: accepted, and answered signed by A.
    let good = signed_join(
        &made,
        "b.test",
        &b_key,
        json!({"membership": "join", "join_authorised_via_users_server": via}),
    );
    let (status, answer) = put(
        send_join(&room, good.event_id.as_str()),
        serde_json::to_value(&good.json).unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer["event"]["signatures"]["a.test"].is_object(),
        "{answer}"
    );
    assert!(
        answer["event"]["signatures"]["b.test"].is_object(),
        "{answer}"
    );
    assert_eq!(
        membership_on(&a, &alice_token, &room, "@bob:b.test").await,
        "join"
    );
    a.stop().await;
    b.stop().await;
}

scenarios!(
    published_keys_are_self_signed,
    keys_are_fetched_directly_and_served_as_notary,
    keys_are_fetched_through_a_notary,
    signed_requests_are_checked,
    tls_listeners_serve_federation,
    the_dag_is_served_to_other_servers,
    directory_and_openid_for_other_servers,
    a_joined_server_reads_what_its_users_saw,
    remote_user_joins_by_room_id_with_via,
    remote_joins_of_every_event_format,
    remote_invite_accepted,
    remote_invite_rejected,
    membership_requests_are_checked,
    events_are_queued_and_sent_to_remote_servers,
    a_dead_destination_is_caught_up,
    incoming_transactions_are_checked,
    two_servers_talk_both_ways,
    a_join_through_one_server_reaches_the_others,
    remote_profiles_are_asked_of_their_server,
    remote_knock_accepted,
    remote_knock_refused_and_rescinded,
    knock_requests_are_checked,
    restricted_rooms_are_joined_through_a_resident_server,
    restricted_join_requests_are_checked,
    restricted_join_vouched_for_by_another_server,
    kicks_and_bans_across_servers,
    receipts_presence_and_typing_between_servers,
    presence_is_told_when_servers_come_to_share_a_room,
    another_servers_public_rooms_are_listed,
    a_fork_made_on_purpose_is_resolved_alike,
    a_fork_with_a_demotion_is_resolved_alike,
    a_signed_request_ends_the_backoff,
    a_fork_with_a_kick_is_resolved_alike,
);

// ---------------------------------------------------------------------------------------
// Transactions: a fake remote server `b.test` (`common::remote::Fake`: keys, `/send`,
// `/get_missing_events`) and a real `a.test`.
// ---------------------------------------------------------------------------------------

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
    let (st, members) = a
        .get(
            &format!(
                "/_matrix/client/v3/rooms/{}/joined_members",
                common::enc(&room)
            ),
            Some(&alice),
        )
        .await;
    assert_eq!(st, 200, "{members}");
    assert!(members["joined"][bob].is_object(), "{members}");
    // A server new to a room is told the presence of the room's users: wait for that
    // transaction, so the tests' own start after it.
    let (st, presence) = a
        .get(
            &format!(
                "/_matrix/client/v3/presence/{}/status",
                common::enc("@alice:a.test")
            ),
            Some(&alice),
        )
        .await;
    assert_eq!(st, 200, "{presence}");
    if presence["presence"] != "offline" {
        eventually("alice's presence reached b.test", || {
            edus(fake).iter().any(|e| {
                e["edu_type"] == "m.presence"
                    && e["content"]["push"][0]["user_id"] == "@alice:a.test"
            })
        })
        .await;
    }
    (alice, room)
}

/// Sends `m.room.message`s with the bodies given as alice.
async fn send_messages(
    a: &TestServer,
    token: &str,
    room: &str,
    bodies: impl Iterator<Item = String>,
) {
    for (i, body) in bodies.enumerate() {
        let (st, v) = a
            .put(
                &format!(
                    "/_matrix/client/v3/rooms/{}/send/m.room.message/{}-{i}",
                    common::enc(room),
                    common::enc(&body)
                ),
                Some(token),
                json!({"msgtype": "m.text", "body": body}),
            )
            .await;
        assert_eq!(st, 200, "{v}");
    }
}

/// Every EDU the fake received in answered transactions, in order.
fn edus(fake: &Fake) -> Vec<Value> {
    fake.state
        .txns
        .lock()
        .unwrap()
        .iter()
        .flat_map(|(_, body)| body["edus"].as_array().cloned().unwrap_or_default())
        .collect()
}

/// The bodies of the messages the fake received, in order.
fn bodies(fake: &Fake) -> Vec<String> {
    fake.pdus()
        .iter()
        .filter(|p| p["type"] == "m.room.message")
        .map(|p| p["content"]["body"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn events_are_queued_and_sent_to_remote_servers(backend: Backend, topology: Topology) {
    let (pa, pb) = (reserve_port(), reserve_port());
    let fake = Fake::start("b.test", pb).await;
    let mut a = start(
        backend,
        topology,
        "a.test",
        pa,
        &[("b.test", url(pb))],
        &[
            "federation.retry_min_interval=200ms".to_owned(),
            "federation.retry_max_interval=1s".to_owned(),
        ],
    )
    .await;
    let client = fake.client(url(pa));
    let (alice, room) = room_with_remote_member(&a, &fake, &client).await;

    // 60 messages arrive in order, in transactions of at most 50 PDUs, each once.
    let first: Vec<String> = (0..60).map(|i| format!("m{i}")).collect();
    send_messages(&a, &alice, &room, first.clone().into_iter()).await;
    eventually("60 messages arrived", || bodies(&fake).len() >= 60).await;
    assert_eq!(bodies(&fake), first);
    {
        let txns = fake.state.txns.lock().unwrap();
        for (id, body) in txns.iter() {
            let n = body["pdus"].as_array().unwrap().len();
            let edus = body["edus"].as_array().map_or(0, Vec::len);
            assert!(n <= 50 && n + edus > 0, "{id}: {n} PDUs, {edus} EDUs");
            assert_eq!(body["origin"], "a.test");
            assert!(body["origin_server_ts"].is_i64(), "{body}");
            assert!(
                n == 0 || body["pdus"][0]["signatures"]["a.test"].is_object(),
                "{body}"
            );
        }
        let ids: std::collections::BTreeSet<_> = txns.iter().map(|(id, _)| id).collect();
        assert_eq!(ids.len(), txns.len(), "transaction IDs are not reused");
    }
    // The remote member's own join was not sent back to its server.
    assert!(fake.pdus().iter().all(|p| p["sender"] != "@bob:b.test"));

    // Typing and public receipts go out as EDUs; private receipts do not.
    let (st, v) = a
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/typing/{}",
                common::enc(&room),
                common::enc("@alice:a.test")
            ),
            Some(&alice),
            json!({"typing": true, "timeout": 10000}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, sent) = a
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/read-me",
                common::enc(&room)
            ),
            Some(&alice),
            json!({"msgtype": "m.text", "body": "read me"}),
        )
        .await;
    assert_eq!(st, 200, "{sent}");
    let read = sent["event_id"].as_str().unwrap().to_owned();
    for receipt_type in ["m.read.private", "m.read"] {
        let (st, v) = a
            .post(
                &format!(
                    "/_matrix/client/v3/rooms/{}/receipt/{receipt_type}/{}",
                    common::enc(&room),
                    common::enc(&read)
                ),
                Some(&alice),
                json!({}),
            )
            .await;
        assert_eq!(st, 200, "{v}");
    }
    let (st, v) = a
        .put(
            "/_matrix/client/v3/sendToDevice/m.test/td1",
            Some(&alice),
            json!({"messages": {"@bob:b.test": {"BOBDEV": {"secret": 1}}}}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = a
        .put(
            &format!(
                "/_matrix/client/v3/presence/{}/status",
                common::enc("@alice:a.test")
            ),
            Some(&alice),
            json!({"presence": "unavailable", "status_msg": "away"}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    eventually("to-device and presence EDUs arrived", || {
        let e = edus(&fake);
        e.iter().any(|e| e["edu_type"] == "m.direct_to_device")
            && e.iter().any(|e| {
                e["edu_type"] == "m.presence" && e["content"]["push"][0]["status_msg"] == "away"
            })
    })
    .await;
    let presence = edus(&fake)
        .into_iter()
        .rev()
        .find(|e| e["edu_type"] == "m.presence")
        .unwrap();
    let push = &presence["content"]["push"][0];
    assert_eq!(
        (&push["user_id"], &push["presence"], &push["status_msg"]),
        (
            &json!("@alice:a.test"),
            &json!("unavailable"),
            &json!("away")
        ),
        "{presence}"
    );
    let to_device = edus(&fake)
        .into_iter()
        .find(|e| e["edu_type"] == "m.direct_to_device")
        .unwrap();
    assert_eq!(to_device["content"]["sender"], "@alice:a.test");
    assert_eq!(to_device["content"]["type"], "m.test");
    assert_eq!(
        to_device["content"]["messages"],
        json!({"@bob:b.test": {"BOBDEV": {"secret": 1}}})
    );
    assert!(to_device["content"]["message_id"].is_string());
    eventually("typing and receipt EDUs arrived", || {
        let e = edus(&fake);
        e.iter().any(|e| e["edu_type"] == "m.typing")
            && e.iter().any(|e| e["edu_type"] == "m.receipt")
    })
    .await;
    let all_edus = edus(&fake);
    let typing = all_edus
        .iter()
        .find(|e| e["edu_type"] == "m.typing")
        .unwrap();
    assert_eq!(
        typing["content"],
        json!({"room_id": room, "user_id": "@alice:a.test", "typing": true})
    );
    let receipts: Vec<&Value> = all_edus
        .iter()
        .filter(|e| e["edu_type"] == "m.receipt")
        .collect();
    assert_eq!(
        receipts.len(),
        1,
        "private receipts stay here: {all_edus:?}"
    );
    assert_eq!(
        receipts[0]["content"][&room]["m.read"]["@alice:a.test"]["event_ids"],
        json!([read])
    );
    let first: Vec<String> = first.into_iter().chain(["read me".to_owned()]).collect();

    // b.test goes down: the next messages wait in the queue, across a restart of a.test,
    // and arrive once it is back, the first transaction under the ID it was first tried with.
    fake.state
        .fail
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let tried_before = fake.state.attempts.lock().unwrap().len();
    let second: Vec<String> = (60..65).map(|i| format!("m{i}")).collect();
    send_messages(&a, &alice, &room, second.clone().into_iter()).await;
    eventually("a failed attempt", || {
        fake.state.attempts.lock().unwrap().len() > tried_before
    })
    .await;
    let failed_id = fake.state.attempts.lock().unwrap()[tried_before].clone();
    a.restart().await;
    let answered_before = fake.state.txns.lock().unwrap().len();
    fake.state
        .fail
        .store(false, std::sync::atomic::Ordering::SeqCst);
    eventually("66 messages arrived", || bodies(&fake).len() >= 66).await;
    actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    let all: Vec<String> = first.iter().chain(second.iter()).cloned().collect();
    assert_eq!(bodies(&fake), all, "each message once, in order");
    assert_eq!(
        fake.state.txns.lock().unwrap()[answered_before].0,
        failed_id,
        "the retried transaction keeps its ID"
    );
    // A transaction the destination refuses (400) is dropped, not retried for ever: what
    // follows it still arrives.
    fake.state
        .refuse
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let tried_before = fake.state.attempts.lock().unwrap().len();
    send_messages(&a, &alice, &room, ["refused".to_owned()].into_iter()).await;
    eventually("a refused attempt", || {
        fake.state.attempts.lock().unwrap().len() > tried_before
    })
    .await;
    fake.state
        .refuse
        .store(false, std::sync::atomic::Ordering::SeqCst);
    send_messages(
        &a,
        &alice,
        &room,
        ["after the refusal".to_owned()].into_iter(),
    )
    .await;
    eventually("the message after the refusal arrived", || {
        bodies(&fake).last().map(String::as_str) == Some("after the refusal")
    })
    .await;
    assert!(!bodies(&fake).contains(&"refused".to_owned()));
    assert_eq!(
        fake.state.attempts.lock().unwrap().len(),
        tried_before + 2,
        "the refused transaction was not sent again"
    );
    let metrics = a
        .client
        .get(format!("{}/metrics", a.metrics_base()))
        .send()
        .await
        .unwrap()
        .body()
        .await
        .unwrap();
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(
        metrics.contains("myelin_federation_transactions_total{outcome=\"sent\"}")
            && metrics.contains("myelin_federation_transactions_total{outcome=\"dropped\"}")
            && metrics.contains("myelin_federation_queue_items"),
        "{metrics}"
    );
    a.stop().await;
    fake.handle.stop(true).await;
}

/// A destination failing for `federation.catch_up_after` (0 here: from its first failure)
/// is caught up: its queue keeps the newest PDU of each room and the newest typing and
/// presence of each user, but every to-device message.
async fn a_dead_destination_is_caught_up(backend: Backend, topology: Topology) {
    let (pa, pb) = (reserve_port(), reserve_port());
    let fake = Fake::start("b.test", pb).await;
    let a = start(
        backend,
        topology,
        "a.test",
        pa,
        &[("b.test", url(pb))],
        &[
            "federation.retry_min_interval=100ms".to_owned(),
            "federation.retry_max_interval=300ms".to_owned(),
            "federation.catch_up_after=0s".to_owned(),
        ],
    )
    .await;
    let client = fake.client(url(pa));
    let (alice, room) = room_with_remote_member(&a, &fake, &client).await;
    send_messages(&a, &alice, &room, ["before".to_owned()].into_iter()).await;
    eventually("the first message arrived", || bodies(&fake).len() == 1).await;
    let edus_before = edus(&fake).len();

    // b.test goes down: c0 is in the transaction in flight when it first fails.
    fake.state
        .fail
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let tried_before = fake.state.attempts.lock().unwrap().len();
    send_messages(&a, &alice, &room, ["c0".to_owned()].into_iter()).await;
    eventually("a failed attempt", || {
        fake.state.attempts.lock().unwrap().len() > tried_before
    })
    .await;
    // Queued in catch-up: each newer message, typing or presence replaces the older one.
    send_messages(&a, &alice, &room, (1..=5).map(|i| format!("c{i}"))).await;
    for typing in [true, false] {
        let (st, v) = a
            .put(
                &format!(
                    "/_matrix/client/v3/rooms/{}/typing/{}",
                    common::enc(&room),
                    common::enc("@alice:a.test")
                ),
                Some(&alice),
                json!({"typing": typing, "timeout": 10000}),
            )
            .await;
        assert_eq!(st, 200, "{v}");
    }
    for (i, status) in ["first", "second"].into_iter().enumerate() {
        let (st, v) = a
            .put(
                &format!(
                    "/_matrix/client/v3/presence/{}/status",
                    common::enc("@alice:a.test")
                ),
                Some(&alice),
                json!({"presence": "unavailable", "status_msg": status}),
            )
            .await;
        assert_eq!(st, 200, "{v}");
        let (st, v) = a
            .put(
                &format!("/_matrix/client/v3/sendToDevice/m.test/catch-up-{i}"),
                Some(&alice),
                json!({"messages": {"@bob:b.test": {"BOBDEV": {"n": i}}}}),
            )
            .await;
        assert_eq!(st, 200, "{v}");
    }
    // Presence goes out through a consumer: wait until it is queued (the queue gauge only
    // grows while b.test is down, so one more failed attempt after the last change is
    // enough to know it was compacted too).
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    let tried = fake.state.attempts.lock().unwrap().len();
    eventually("another failed attempt", || {
        fake.state.attempts.lock().unwrap().len() > tried
    })
    .await;

    fake.state
        .fail
        .store(false, std::sync::atomic::Ordering::SeqCst);
    eventually("c5 arrived", || bodies(&fake).contains(&"c5".to_owned())).await;
    eventually("the to-device messages arrived", || {
        edus(&fake)[edus_before..]
            .iter()
            .filter(|e| e["edu_type"] == "m.direct_to_device")
            .count()
            == 2
    })
    .await;
    actix_web::rt::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        bodies(&fake),
        ["before", "c0", "c5"],
        "the transaction in flight, then the room's newest event"
    );
    let after = edus(&fake)[edus_before..].to_vec();
    let of = |kind: &str| -> Vec<Value> {
        after
            .iter()
            .filter(|e| e["edu_type"] == kind)
            .cloned()
            .collect()
    };
    let typing = of("m.typing");
    assert_eq!(typing.len(), 1, "{after:?}");
    assert_eq!(typing[0]["content"]["typing"], false, "{after:?}");
    let presence = of("m.presence");
    assert_eq!(presence.len(), 1, "{after:?}");
    assert_eq!(presence[0]["content"]["push"][0]["status_msg"], "second");
    let to_device: Vec<Value> = of("m.direct_to_device")
        .iter()
        .map(|e| e["content"]["messages"]["@bob:b.test"]["BOBDEV"]["n"].clone())
        .collect();
    assert_eq!(
        to_device,
        [json!(0), json!(1)],
        "every to-device message, in order"
    );

    // Back to normal: every message is sent again.
    send_messages(
        &a,
        &alice,
        &room,
        ["d1".to_owned(), "d2".to_owned()].into_iter(),
    )
    .await;
    eventually("d2 arrived", || bodies(&fake).contains(&"d2".to_owned())).await;
    assert_eq!(bodies(&fake), ["before", "c0", "c5", "d1", "d2"]);
    a.stop().await;
    fake.handle.stop(true).await;
}

async fn incoming_transactions_are_checked(backend: Backend, topology: Topology) {
    let (pa, pb) = (reserve_port(), reserve_port());
    let fake = Fake::start("b.test", pb).await;
    let a = start(backend, topology, "a.test", pa, &[("b.test", url(pb))], &[]).await;
    let client = fake.client(url(pa));
    let (alice, room) = room_with_remote_member(&a, &fake, &client).await;
    let bob = "@bob:b.test";
    let path = "/_matrix/federation/v1/send/t-bad";

    // A message of bob's shows in alice's /sync.
    let (version, last, depth, state) = room_tip(&a.client, &a.base, &alice, &room).await;
    let auth = auth_of(&version, &state, bob, false);
    let message = |body: &str, prev: &str, depth: u64| {
        remote_event(
            &fake,
            &version,
            &room,
            bob,
            "m.room.message",
            None,
            json!({"msgtype": "m.text", "body": body}),
            prev,
            depth,
            auth.clone(),
        )
    };
    let (hello_id, hello) = message("hello from b", &last, depth + 1);
    let answer = put_txn(&client, "t1", "b.test", vec![hello.clone()])
        .await
        .unwrap();
    assert_eq!(answer, json!({"pdus": {&hello_id: {}}}));
    let (_, sync) = a.get("/_matrix/client/v3/sync", Some(&alice)).await;
    let timeline = &sync["rooms"]["join"][&room]["timeline"]["events"];
    assert!(
        timeline
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["event_id"] == hello_id.as_str()
                && e["content"]["body"] == "hello from b"
                && e["sender"] == bob),
        "{timeline}"
    );

    // Typing and receipts of bob's reach alice; EDUs about another server's users do not.
    let edus = vec![
        json!({"edu_type": "m.typing", "content": {"room_id": room, "user_id": bob, "typing": true}}),
        json!({"edu_type": "m.typing", "content": {"room_id": room, "user_id": "@carol:c.test", "typing": true}}),
        json!({"edu_type": "m.receipt", "content": {&room: {"m.read": {
            bob: {"event_ids": [&hello_id], "data": {"ts": 1}},
            "@carol:c.test": {"event_ids": [&hello_id], "data": {"ts": 1}},
        }}}}),
        json!({"edu_type": "m.something_else", "content": {}}),
    ];
    let edu_answer = put_txn_with(&client, "t-edu", "b.test", vec![], edus)
        .await
        .unwrap();
    assert_eq!(edu_answer, json!({"pdus": {}}));
    let (_, sync) = a.get("/_matrix/client/v3/sync", Some(&alice)).await;
    let ephemeral = &sync["rooms"]["join"][&room]["ephemeral"]["events"];
    let of = |t: &str| {
        ephemeral
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["type"] == t)
            .cloned()
            .unwrap_or_else(|| panic!("no {t} in {ephemeral}"))
    };
    assert_eq!(
        of("m.typing")["content"]["user_ids"],
        json!([bob]),
        "{ephemeral}"
    );
    let read = &of("m.receipt")["content"][&hello_id]["m.read"];
    assert!(
        read[bob].is_object() && read["@carol:c.test"].is_null(),
        "{ephemeral}"
    );

    // To-device messages from bob reach alice's devices once per message ID; a sender of
    // another server is ignored.
    let to_alice = |sender: &str, id: &str, n: i64| {
        json!({"edu_type": "m.direct_to_device", "content": {
            "sender": sender, "type": "m.test", "message_id": id,
            "messages": {"@alice:a.test": {"*": {"n": n}}},
        }})
    };
    let edus = vec![
        to_alice(bob, "md1", 1),
        to_alice(bob, "md1", 2),
        to_alice("@carol:c.test", "md2", 3),
        to_alice(bob, "md3", 4),
    ];
    put_txn_with(&client, "t-td", "b.test", vec![], edus)
        .await
        .unwrap();
    let (_, sync) = a.get("/_matrix/client/v3/sync", Some(&alice)).await;
    let got: Vec<&Value> = sync["to_device"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["content"]["n"])
        .collect();
    assert_eq!(got, [&json!(1), &json!(4)], "{}", sync["to_device"]);
    assert_eq!(sync["to_device"]["events"][0]["sender"], bob);

    // Presence of bob's reaches alice, who shares a room with him.
    let presence = json!({"edu_type": "m.presence", "content": {"push": [
        {"user_id": bob, "presence": "unavailable", "status_msg": "gone fishing", "last_active_ago": 5},
    ]}});
    put_txn_with(&client, "t-presence", "b.test", vec![], vec![presence])
        .await
        .unwrap();
    let (st, v) = a
        .get(
            &format!("/_matrix/client/v3/presence/{}/status", common::enc(bob)),
            Some(&alice),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        (&v["presence"], &v["status_msg"]),
        (&json!("unavailable"), &json!("gone fishing"))
    );

    // The same transaction ID again: the stored answer, nothing processed (even with other
    // contents).
    let (other_id, other) = message("never processed", &hello_id, depth + 2);
    let again = put_txn(&client, "t1", "b.test", vec![other]).await.unwrap();
    assert_eq!(again, answer);
    let (st, _) = a
        .get(
            &format!(
                "/_matrix/client/v3/rooms/{}/event/{}",
                common::enc(&room),
                common::enc(&other_id)
            ),
            Some(&alice),
        )
        .await;
    assert_eq!(st, 404);

    // Per-PDU errors, in one transaction, none failing the others.
    let (bad_sig_id, mut bad_sig) = message("bad signature", &hello_id, depth + 2);
    let sigs = bad_sig["signatures"]["b.test"].as_object_mut().unwrap();
    for v in sigs.values_mut() {
        *v = json!("AAAA".repeat(21) + "AA");
    }
    let (bad_hash_id, mut bad_hash) = message("bad hash", &hello_id, depth + 2);
    bad_hash["content"]["body"] = json!("changed after signing");
    let eve = "@eve:b.test";
    let (unauth_id, unauth) = remote_event(
        &fake,
        &version,
        &room,
        eve,
        "m.room.message",
        None,
        json!({"msgtype": "m.text", "body": "eve is not in the room"}),
        &hello_id,
        depth + 2,
        auth_of(&version, &state, eve, false),
    );
    let mut unknown_room = hello.clone();
    unknown_room["room_id"] = json!("!nowhere:b.test");
    unknown_room["content"]["body"] = json!("nowhere");
    let answer = put_txn(
        &client,
        "t2",
        "b.test",
        vec![bad_sig, bad_hash, unauth, unknown_room],
    )
    .await
    .unwrap();
    let results = answer["pdus"].as_object().unwrap();
    // A PDU of a room unknown here is left out of the answer, as Synapse leaves it out.
    assert_eq!(results.len(), 3, "{answer}");
    assert!(
        answer["pdus"][&bad_sig_id]["error"]
            .as_str()
            .is_some_and(|e| e.contains("verify")),
        "{answer}"
    );
    // A content hash mismatch: kept, redacted.
    assert_eq!(answer["pdus"][&bad_hash_id], json!({}), "{answer}");
    let (st, ev) = a
        .get(
            &format!(
                "/_matrix/client/v3/rooms/{}/event/{}",
                common::enc(&room),
                common::enc(&bad_hash_id)
            ),
            Some(&alice),
        )
        .await;
    assert_eq!(st, 200, "{ev}");
    assert_eq!(ev["content"], json!({}), "served redacted: {ev}");
    // Refused by the auth rules: an error, and never served.
    assert!(
        answer["pdus"][&unauth_id]["error"]
            .as_str()
            .is_some_and(|e| e.contains("auth rules")),
        "{answer}"
    );
    let (st, _) = a
        .get(
            &format!(
                "/_matrix/client/v3/rooms/{}/event/{}",
                common::enc(&room),
                common::enc(&unauth_id)
            ),
            Some(&alice),
        )
        .await;
    assert_eq!(st, 404);

    // A missing prev event is fetched from the origin with /get_missing_events.
    let (_, last2, depth2, _) = room_tip(&a.client, &a.base, &alice, &room).await;
    let (gap_id, gap) = message("in the gap", &last2, depth2 + 1);
    let (after_id, after) = message("after the gap", &gap_id, depth2 + 2);
    *fake.state.missing.lock().unwrap() = vec![gap];
    let answer = put_txn(&client, "t3", "b.test", vec![after]).await.unwrap();
    assert_eq!(answer, json!({"pdus": {&after_id: {}}}));
    {
        let requests = fake.state.missing_requests.lock().unwrap();
        assert_eq!(requests.len(), 1, "{requests:?}");
        assert_eq!(requests[0]["latest_events"], json!([after_id]));
        assert_eq!(requests[0]["earliest_events"], json!([last2]));
        assert!(requests[0]["limit"].as_u64().is_some_and(|l| l <= 10));
    }
    let (_, sync) = a.get("/_matrix/client/v3/sync", Some(&alice)).await;
    let text = sync["rooms"]["join"][&room]["timeline"].to_string();
    assert!(
        text.contains("in the gap") && text.contains("after the gap"),
        "{text}"
    );
    // A prev event the origin does not provide: an error for that PDU.
    fake.state.missing.lock().unwrap().clear();
    let (lost_id, _) = message("lost", &after_id, depth2 + 3);
    let (orphan_id, orphan) = message("orphan", &lost_id, depth2 + 4);
    let answer = put_txn(&client, "t4", "b.test", vec![orphan])
        .await
        .unwrap();
    assert!(
        answer["pdus"][&orphan_id]["error"]
            .as_str()
            .is_some_and(|e| e.contains(&lost_id)),
        "{answer}"
    );

    // A room whose server ACL denies b.test takes nothing more from it.
    let (st, v) = a
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{}/state/m.room.server_acl/",
                common::enc(&room)
            ),
            Some(&alice),
            json!({"allow": ["*"], "deny": ["b.test"], "allow_ip_literals": true}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (_, last3, depth3, _) = room_tip(&a.client, &a.base, &alice, &room).await;
    let (banned_id, banned) = message("after the ACL", &last3, depth3 + 1);
    let answer = put_txn(&client, "t-acl", "b.test", vec![banned])
        .await
        .unwrap();
    assert!(
        answer["pdus"][&banned_id]["error"]
            .as_str()
            .is_some_and(|e| e.contains("banned")),
        "{answer}"
    );

    // Refused requests: unsigned, wrongly signed (401), too many PDUs, not a transaction,
    // not JSON (400).
    let (st, v) = a
        .call_raw("PUT", path, None, b"{\"pdus\": []}".to_vec())
        .await;
    assert_eq!(
        (st, v["errcode"].as_str()),
        (401, Some("M_UNAUTHORIZED")),
        "{v}"
    );
    let other = SigningKey::load_or_generate(tempfile::tempdir().unwrap().path()).unwrap();
    let forged = x_matrix(
        "b.test",
        "a.test",
        &other,
        fake.key.key_id().as_str(),
        "PUT",
        path,
    );
    let resp = a
        .client
        .put(format!("{}{path}", a.base))
        .insert_header(("Authorization", forged.clone()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let resp = a
        .client
        .put(format!("{}{path}", a.base))
        .insert_header(("Authorization", forged))
        .insert_header(("Content-Type", "application/json"))
        .send_body("{not json")
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let too_many: Vec<Value> = (0..51).map(|_| hello.clone()).collect();
    match put_txn(&client, "t5", "b.test", too_many).await {
        Err(FederationError::Refused {
            status, errcode, ..
        }) => {
            assert_eq!((status, errcode.as_str()), (400, "M_BAD_JSON"))
        }
        other => panic!("51 PDUs: {other:?}"),
    }
    let not_a_txn = client
        .json(
            http::Method::PUT,
            server("a.test"),
            "/_matrix/federation/v1/send/t6",
            Some(&json!({"pdus": "nope"})),
            true,
            None,
        )
        .await;
    assert!(
        matches!(&not_a_txn, Err(FederationError::Refused { status: 400, errcode, .. }) if errcode == "M_BAD_JSON"),
        "{not_a_txn:?}"
    );
    // Oversize: refused before the body is read or its signature checked; garbage without a
    // signature: refused as unsigned, nothing stored.
    let mut resp = a
        .client
        .put(format!("{}/_matrix/federation/v1/send/big", a.base))
        .insert_header(("Content-Type", "application/json"))
        .send_body(vec![b' '; 10 * 1024 * 1024 + 1])
        .await
        .unwrap();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    assert_eq!(
        (resp.status().as_u16(), &v["errcode"]),
        (413, &json!("M_TOO_LARGE")),
        "{v}"
    );
    let mut resp = a
        .client
        .put(format!("{}/_matrix/federation/v1/send/garbage", a.base))
        .insert_header(("Content-Type", "application/json"))
        .send_body("{not json")
        .await
        .unwrap();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    assert_eq!(
        (resp.status().as_u16(), &v["errcode"]),
        (401, &json!("M_UNAUTHORIZED")),
        "{v}"
    );
    a.stop().await;
    fake.handle.stop(true).await;
}

// ---------------------------------------------------------------------------------------
// Two real servers: kicks and bans across them, receipts, presence and typing, and a fork
// made on purpose.
// ---------------------------------------------------------------------------------------

/// An incremental sync as `token` from `since`.
async fn sync_since(s: &TestServer, token: &str, since: &str) -> Value {
    let (status, body) = s
        .get(
            &format!("{C}/sync?timeout=0&since={}", enc(since)),
            Some(token),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The `next_batch` of a sync as `token` now.
async fn position(s: &TestServer, token: &str) -> String {
    sync(s, token).await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Whether a sync from `since` shows `room` left with `user`'s member event of `membership`
/// (sent by `by`) in its timeline.
async fn sees_left(
    s: &TestServer,
    token: &str,
    since: &str,
    room: &str,
    user: &str,
    membership: &str,
    by: &str,
) -> bool {
    let synced = sync_since(s, token, since).await;
    synced["rooms"]["leave"][room]["timeline"]["events"]
        .as_array()
        .is_some_and(|t| {
            t.iter().any(|e| {
                e["type"] == "m.room.member"
                    && e["state_key"] == user
                    && e["content"]["membership"] == membership
                    && e["sender"] == by
            })
        })
}

/// Joins `room` through a.test as `token` on `s`: the answer.
async fn join_via_a(s: &TestServer, token: &str, room: &str) -> (u16, Value) {
    s.post(
        &format!("{C}/join/{}?via=a.test", enc(room)),
        Some(token),
        json!({}),
    )
    .await
}

/// Kicks and bans across servers: a.test's admin kicks b.test's user (who sees the leave in
/// `/sync` and rejoins), bans him (his server's join is refused: 403 through `make_join`,
/// asked directly too), unbans him (he rejoins); then b.test's user, given power by a.test's
/// admin, kicks a user of a.test, who sees it in her `/sync`.
async fn kicks_and_bans_across_servers(backend: Backend, topology: Topology) {
    let (a, b) = pair(backend, topology).await;
    let (alice, alice_tok, _) = a.register("alice", "pw").await;
    let (carol, carol_tok, _) = a.register("carol", "pw").await;
    let (bob, bob_tok, _) = b.register("bob", "pw").await;
    let room = common::create(&a, &alice_tok, json!({"preset": "public_chat"})).await;
    let r = enc(&room);
    let (st, v) = a
        .post(&format!("{C}/join/{r}"), Some(&carol_tok), json!({}))
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = join_via_a(&b, &bob_tok, &room).await;
    assert_eq!(st, 200, "{v}");
    until("b holds carol's join", || async {
        membership_on(&b, &bob_tok, &room, &carol).await == "join"
    })
    .await;

    // The kick: bob sees the leave (sent by alice) in his /sync, and can rejoin.
    let since = position(&b, &bob_tok).await;
    let (st, v) = a
        .post(
            &format!("{C}/rooms/{r}/kick"),
            Some(&alice_tok),
            json!({"user_id": bob, "reason": "out"}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    until("b's bob sees his kick", || {
        sees_left(&b, &bob_tok, &since, &room, &bob, "leave", &alice)
    })
    .await;
    assert_eq!(membership_on(&a, &alice_tok, &room, &bob).await, "leave");
    let since = position(&b, &bob_tok).await;
    let (st, v) = join_via_a(&b, &bob_tok, &room).await;
    assert_eq!(st, 200, "rejoin after a kick: {v}");
    until("a sees bob back", || async {
        membership_on(&a, &alice_tok, &room, &bob).await == "join"
    })
    .await;
    say(&a, &alice_tok, &room, "welcome back").await;
    until("b's bob sees messages again", || {
        sees_message(&b, &bob_tok, &room, "welcome back")
    })
    .await;
    // Incrementally too: the room is back in `join`, with his join and the message in its
    // timeline and alice's member in its state or timeline.
    let synced = sync_since(&b, &bob_tok, &since).await;
    let joined = &synced["rooms"]["join"][&room];
    let mut events: Vec<&Value> = joined["timeline"]["events"]
        .as_array()
        .map(|t| t.iter().collect())
        .unwrap_or_default();
    events.extend(joined["state"]["events"].as_array().into_iter().flatten());
    for (what, found) in [
        (
            "bob's join",
            events.iter().any(|e| {
                e["type"] == "m.room.member"
                    && e["state_key"] == bob.as_str()
                    && e["content"]["membership"] == "join"
            }),
        ),
        (
            "alice's member",
            events
                .iter()
                .any(|e| e["type"] == "m.room.member" && e["state_key"] == alice.as_str()),
        ),
        (
            "the message",
            events
                .iter()
                .any(|e| e["content"]["body"] == "welcome back"),
        ),
    ] {
        assert!(found, "{what} not in the incremental sync: {synced}");
    }

    // The ban: bob sees it, his server's join is refused by a.test's make_join.
    let since = position(&b, &bob_tok).await;
    let (st, v) = a
        .post(
            &format!("{C}/rooms/{r}/ban"),
            Some(&alice_tok),
            json!({"user_id": bob, "reason": "gone"}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    until("b's bob sees his ban", || {
        sees_left(&b, &bob_tok, &since, &room, &bob, "ban", &alice)
    })
    .await;
    let refused = join_via_a(&b, &bob_tok, &room).await;
    common::assert_error(&refused, 403, "M_FORBIDDEN");
    let version = {
        let (st, v) = a
            .get(
                &format!("{C}/rooms/{r}/state/m.room.create/"),
                Some(&alice_tok),
            )
            .await;
        assert_eq!(st, 200, "{v}");
        v["room_version"].as_str().unwrap_or("1").to_owned()
    };
    let make_join = signed(
        &a,
        "b.test",
        &key_of(&b),
        "GET",
        &format!("{F}/make_join/{r}/{}?ver={version}", enc(&bob)),
        None,
    )
    .await;
    common::assert_error(&make_join, 403, "M_FORBIDDEN");
    assert_eq!(membership_on(&a, &alice_tok, &room, &bob).await, "ban");

    // The unban: bob may join again.
    let (st, v) = a
        .post(
            &format!("{C}/rooms/{r}/unban"),
            Some(&alice_tok),
            json!({"user_id": bob}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = signed(
        &a,
        "b.test",
        &key_of(&b),
        "GET",
        &format!("{F}/make_join/{r}/{}?ver={version}", enc(&bob)),
        None,
    )
    .await;
    assert_eq!(st, 200, "make_join after the unban: {v}");
    let (st, v) = join_via_a(&b, &bob_tok, &room).await;
    assert_eq!(st, 200, "join after the unban: {v}");
    until("a sees bob joined again", || async {
        membership_on(&a, &alice_tok, &room, &bob).await == "join"
    })
    .await;

    // Alice gives bob power; bob (on b.test) kicks carol (on a.test).
    let (st, mut levels) = a
        .get(
            &format!("{C}/rooms/{r}/state/m.room.power_levels/"),
            Some(&alice_tok),
        )
        .await;
    assert_eq!(st, 200, "{levels}");
    levels["users"][&bob] = json!(100);
    set_state(&a, &alice_tok, &room, "m.room.power_levels", levels).await;
    until("b knows bob's power", || async {
        let (st, v) = b
            .get(
                &format!("{C}/rooms/{r}/state/m.room.power_levels/"),
                Some(&bob_tok),
            )
            .await;
        st == 200 && v["users"][&bob] == 100
    })
    .await;
    let since = position(&a, &carol_tok).await;
    let (st, v) = b
        .post(
            &format!("{C}/rooms/{r}/kick"),
            Some(&bob_tok),
            json!({"user_id": carol}),
        )
        .await;
    assert_eq!(st, 200, "bob kicks carol: {v}");
    until("a's carol sees bob's kick", || {
        sees_left(&a, &carol_tok, &since, &room, &carol, "leave", &bob)
    })
    .await;
    assert_eq!(membership_on(&a, &alice_tok, &room, &carol).await, "leave");
    assert_eq!(membership_on(&b, &bob_tok, &room, &carol).await, "leave");
    a.stop().await;
    b.stop().await;
}

/// Whether a sync as `token` has, in `room`'s ephemeral events, one of `kind` that `check`
/// accepts.
async fn sees_ephemeral(
    s: &TestServer,
    token: &str,
    room: &str,
    kind: &str,
    check: impl Fn(&Value) -> bool,
) -> bool {
    let synced = sync(s, token).await;
    synced["rooms"]["join"][room]["ephemeral"]["events"]
        .as_array()
        .is_some_and(|e| e.iter().any(|e| e["type"] == kind && check(&e["content"])))
}

/// Sets `user` typing (or not) in `room` on `s`.
async fn typing(s: &TestServer, token: &str, room: &str, user: &str, on: bool) {
    let (st, v) = s
        .put(
            &format!("{C}/rooms/{}/typing/{}", enc(room), enc(user)),
            Some(token),
            json!({"typing": on, "timeout": 120000}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
}

/// Receipts, presence and typing between two real servers, both ways: a read receipt shows
/// in the other server's user's `/sync` as an `m.receipt` ephemeral event, presence set on
/// one server shows in `presence.events` for a user of the other sharing a room, typing
/// starts and stops.
/// `/publicRooms?server=` lists another server's directory for a signed-in user (GET, and
/// POST with a search), asked of that server over federation; without a token it is 401,
/// and an unreachable server is 502.
async fn another_servers_public_rooms_are_listed(backend: Backend, topology: Topology) {
    let (a, b) = pair(backend, topology).await;
    let (_, alice_tok, _) = a.register("alice", "pw").await;
    let (_, bob_tok, _) = b.register("bob", "pw").await;
    for name in ["Cats", "Dogs", "Birds"] {
        let room = common::create(
            &a,
            &alice_tok,
            json!({"preset": "public_chat", "visibility": "public", "name": name}),
        )
        .await;
        assert!(room.starts_with('!'));
    }
    // Not listed: b.test's own rooms are not in a.test's answer.
    common::create(
        &b,
        &bob_tok,
        json!({"preset": "public_chat", "visibility": "public", "name": "Fish"}),
    )
    .await;
    let names = |v: &Value| -> Vec<String> {
        let mut n: Vec<String> = v["chunk"]
            .as_array()
            .map(|c| {
                c.iter()
                    .filter_map(|r| r["name"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        n.sort();
        n
    };
    let (st, v) = b
        .get(&format!("{C}/publicRooms?server=a.test"), Some(&bob_tok))
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(names(&v), ["Birds", "Cats", "Dogs"], "{v}");
    assert_eq!(v["total_room_count_estimate"], 3, "{v}");
    // Paged through a.test's tokens.
    let (st, first) = b
        .get(
            &format!("{C}/publicRooms?server=a.test&limit=2"),
            Some(&bob_tok),
        )
        .await;
    assert_eq!(st, 200, "{first}");
    assert_eq!(first["chunk"].as_array().map(Vec::len), Some(2), "{first}");
    let next = first["next_batch"].as_str().expect("next_batch").to_owned();
    let (st, second) = b
        .get(
            &format!("{C}/publicRooms?server=a.test&limit=2&since={}", enc(&next)),
            Some(&bob_tok),
        )
        .await;
    assert_eq!(st, 200, "{second}");
    let mut all = names(&first);
    all.extend(names(&second));
    all.sort();
    assert_eq!(all, ["Birds", "Cats", "Dogs"]);
    // A search goes as POST.
    let (st, v) = b
        .post(
            &format!("{C}/publicRooms?server=a.test"),
            Some(&bob_tok),
            json!({"filter": {"generic_search_term": "dog"}}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(names(&v), ["Dogs"], "{v}");
    // Our own name is our own directory.
    let (st, v) = b.get(&format!("{C}/publicRooms?server=b.test"), None).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(names(&v), ["Fish"], "{v}");
    // Another server's list needs a signed-in user; a bad token is refused as usual.
    let (st, v) = b.get(&format!("{C}/publicRooms?server=a.test"), None).await;
    assert_eq!((st, &v["errcode"]), (401, &json!("M_MISSING_TOKEN")), "{v}");
    let (st, v) = b
        .get(&format!("{C}/publicRooms?server=a.test"), Some("nonsense"))
        .await;
    assert_eq!((st, &v["errcode"]), (401, &json!("M_UNKNOWN_TOKEN")), "{v}");
    // A server that cannot be reached (loopback port 9, nothing listens).
    let (st, v) = b
        .get(
            &format!("{C}/publicRooms?server=127.0.0.1:9"),
            Some(&bob_tok),
        )
        .await;
    assert_eq!(st, 502, "{v}");
    assert!(v["error"].is_string(), "{v}");
}

/// Presence set before two servers share a room reaches the other server when they come
/// to: a joining user's presence goes to the room's servers, and the joining server gets the
/// presence of the room's users (as Synapse sends it on join). Offline users are not told.
async fn presence_is_told_when_servers_come_to_share_a_room(backend: Backend, topology: Topology) {
    let (a, b) = pair(backend, topology).await;
    let (alice, alice_tok, _) = a.register("alice", "pw").await;
    let (carol, _, _) = a.register("carol", "pw").await;
    let (bob, bob_tok, _) = b.register("bob", "pw").await;
    let room = common::create(&a, &alice_tok, json!({"preset": "public_chat"})).await;
    let (st, v) = a
        .post(
            &format!("{C}/rooms/{}/invite", enc(&room)),
            Some(&alice_tok),
            json!({"user_id": carol}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    // Set while nobody of the other server shares a room with them.
    for (s, tok, user, msg) in [
        (&a, &alice_tok, &alice, "alice before"),
        (&b, &bob_tok, &bob, "bob before"),
    ] {
        let (st, v) = s
            .put(
                &format!("{C}/presence/{}/status", enc(user)),
                Some(tok),
                json!({"presence": "unavailable", "status_msg": msg}),
            )
            .await;
        assert_eq!(st, 200, "{v}");
    }
    let (st, v) = join_via_a(&b, &bob_tok, &room).await;
    assert_eq!(st, 200, "{v}");
    for (other, other_tok, user, msg) in [
        (&b, &bob_tok, &alice, "alice before"),
        (&a, &alice_tok, &bob, "bob before"),
    ] {
        until(
            &format!("{user}'s presence reached the other server"),
            || async {
                let (st, v) = other
                    .get(
                        &format!("{C}/presence/{}/status", enc(user)),
                        Some(other_tok),
                    )
                    .await;
                st == 200 && v["presence"] == "unavailable" && v["status_msg"] == msg
            },
        )
        .await;
    }
    // carol never set a presence (offline): b.test heard nothing of her.
    let (st, v) = b
        .get(
            &format!("{C}/presence/{}/status", enc(&carol)),
            Some(&bob_tok),
        )
        .await;
    assert!(st != 200 || v["presence"] == "offline", "{st} {v}");
}

async fn receipts_presence_and_typing_between_servers(backend: Backend, topology: Topology) {
    let (a, b) = pair(backend, topology).await;
    let (alice, alice_tok, _) = a.register("alice", "pw").await;
    let (bob, bob_tok, _) = b.register("bob", "pw").await;
    let room = common::create(&a, &alice_tok, json!({"preset": "public_chat"})).await;
    let r = enc(&room);
    let (st, v) = join_via_a(&b, &bob_tok, &room).await;
    assert_eq!(st, 200, "{v}");
    let from_a = say(&a, &alice_tok, &room, "from a").await;
    until("b sees a's message", || {
        sees_message(&b, &bob_tok, &room, "from a")
    })
    .await;
    let from_b = say(&b, &bob_tok, &room, "from b").await;
    until("a sees b's message", || {
        sees_message(&a, &alice_tok, &room, "from b")
    })
    .await;

    // Read receipts, each on the other's message (bob's for the main thread).
    for (s, tok, event, reader, other, other_tok, body) in [
        (
            &b,
            &bob_tok,
            &from_a,
            &bob,
            &a,
            &alice_tok,
            json!({"thread_id": "main"}),
        ),
        (&a, &alice_tok, &from_b, &alice, &b, &bob_tok, json!({})),
    ] {
        let (st, v) = s
            .post(
                &format!("{C}/rooms/{r}/receipt/m.read/{}", enc(event)),
                Some(tok),
                body.clone(),
            )
            .await;
        assert_eq!(st, 200, "{v}");
        until(&format!("the other server sees {reader}'s receipt"), || {
            sees_ephemeral(other, other_tok, &room, "m.receipt", |c| {
                let receipt = &c[event.as_str()]["m.read"][reader.as_str()];
                receipt["ts"].is_u64() && receipt["thread_id"] == body["thread_id"]
            })
        })
        .await;
    }

    // Presence, both ways.
    for (s, tok, user, msg, other, other_tok) in [
        (&b, &bob_tok, &bob, "on b", &a, &alice_tok),
        (&a, &alice_tok, &alice, "on a", &b, &bob_tok),
    ] {
        let (st, v) = s
            .put(
                &format!("{C}/presence/{}/status", enc(user)),
                Some(tok),
                json!({"presence": "online", "status_msg": msg}),
            )
            .await;
        assert_eq!(st, 200, "{v}");
        until(&format!("the other server sees {user} online"), || async {
            let synced = sync(other, other_tok).await;
            synced["presence"]["events"].as_array().is_some_and(|e| {
                e.iter().any(|e| {
                    e["type"] == "m.presence"
                        && e["sender"] == user.as_str()
                        && e["content"]["presence"] == "online"
                        && e["content"]["status_msg"] == msg
                })
            })
        })
        .await;
        // The other server answers the presence endpoint with what it heard.
        let (st, v) = other
            .get(
                &format!("{C}/presence/{}/status", enc(user)),
                Some(other_tok),
            )
            .await;
        assert_eq!((st, &v["presence"]), (200, &json!("online")), "{v}");
    }

    // Typing, both ways, on and off.
    for (s, tok, user, other, other_tok) in [
        (&a, &alice_tok, &alice, &b, &bob_tok),
        (&b, &bob_tok, &bob, &a, &alice_tok),
    ] {
        typing(s, tok, &room, user, true).await;
        until(&format!("the other server sees {user} typing"), || {
            sees_ephemeral(other, other_tok, &room, "m.typing", |c| {
                c["user_ids"] == json!([user])
            })
        })
        .await;
        typing(s, tok, &room, user, false).await;
        // Well before the 120 s timeout: the stop itself travelled.
        until(
            &format!("the other server sees {user} stop typing"),
            || async {
                !sees_ephemeral(other, other_tok, &room, "m.typing", |c| {
                    c["user_ids"]
                        .as_array()
                        .is_some_and(|u| u.contains(&json!(user)))
                })
                .await
            },
        )
        .await;
    }
    a.stop().await;
    b.stop().await;
}

/// The room's current state as `token` reads it on `s`: (type, state key) to event ID.
async fn state_map(s: &TestServer, token: &str, room: &str) -> BTreeMap<(String, String), String> {
    let (st, v) = s
        .get(&format!("{C}/rooms/{}/state", enc(room)), Some(token))
        .await;
    assert_eq!(st, 200, "{v}");
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                (
                    e["type"].as_str().unwrap().to_owned(),
                    e["state_key"].as_str().unwrap().to_owned(),
                ),
                e["event_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The event IDs of a room's timeline as `token` pages it on `s` (`/messages`, newest
/// first, up to 200).
async fn timeline_ids(s: &TestServer, token: &str, room: &str) -> Vec<String> {
    let (st, v) = s
        .get(
            &format!("{C}/rooms/{}/messages?dir=b&limit=200", enc(room)),
            Some(token),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    v["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Two servers with short backoffs (both queues retry within a second once the other is
/// back) in a public room of a.test, where b.test's bob is an admin too and both hold a
/// first message.
struct ForkRoom {
    a: TestServer,
    b: TestServer,
    alice_tok: String,
    bob: String,
    bob_tok: String,
    room: String,
    /// The power levels content both start from.
    levels: Value,
    /// The first message, which both servers hold.
    before: String,
}

async fn fork_room(backend: Backend, topology: Topology) -> ForkRoom {
    let (pa, pb) = (reserve_port(), reserve_port());
    let retry = [
        "federation.retry_min_interval=300ms".to_owned(),
        "federation.retry_max_interval=1s".to_owned(),
    ];
    let a = start(
        backend,
        topology,
        "a.test",
        pa,
        &[("b.test", url(pb))],
        &retry,
    )
    .await;
    let b = start(
        backend,
        topology,
        "b.test",
        pb,
        &[("a.test", url(pa))],
        &retry,
    )
    .await;
    let (_, alice_tok, _) = a.register("alice", "pw").await;
    let (bob, bob_tok, _) = b.register("bob", "pw").await;
    let room = common::create(&a, &alice_tok, json!({"preset": "public_chat"})).await;
    let (st, v) = join_via_a(&b, &bob_tok, &room).await;
    assert_eq!(st, 200, "{v}");
    let (_, mut levels) = a
        .get(
            &format!("{C}/rooms/{}/state/m.room.power_levels/", enc(&room)),
            Some(&alice_tok),
        )
        .await;
    levels["users"][&bob] = json!(100);
    set_state(&a, &alice_tok, &room, "m.room.power_levels", levels.clone()).await;
    let before = say(&a, &alice_tok, &room, "before the fork").await;
    until("b has the shared start", || {
        sees_message(&b, &bob_tok, &room, "before the fork")
    })
    .await;
    ForkRoom {
        a,
        b,
        alice_tok,
        bob,
        bob_tok,
        room,
        levels,
        before,
    }
}

/// Asserts that the event `id` (read by b.test from a.test) follows none of `others`.
async fn follows_none_of(a: &TestServer, b: &TestServer, id: &str, others: &[&String]) {
    let (st, v) = signed(
        a,
        "b.test",
        &key_of(b),
        "GET",
        &format!("{F}/event/{}", enc(id)),
        None,
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let prevs = &v["pdus"][0]["prev_events"];
    assert!(
        prevs.as_array().is_some_and(
            |p| !p.is_empty() && !p.iter().any(|p| others.iter().any(|id| p == id.as_str()))
        ),
        "{id} follows the other branch: {v}"
    );
}

/// A fork made on purpose: while b.test is down, a.test's admin changes the topic and the
/// power levels and says something; then a.test is down while b.test's user (an admin too)
/// does the same from b.test's view of the room. Both come back: each receives the other's
/// branch, and both end with the same current state and every event of both branches.
async fn a_fork_made_on_purpose_is_resolved_alike(backend: Backend, topology: Topology) {
    let ForkRoom {
        mut a,
        mut b,
        alice_tok,
        bob: _,
        bob_tok,
        room,
        levels,
        before,
    } = fork_room(backend, topology).await;

    // a's branch, while b is down.
    b.halt().await;
    let a_topic = set_state(
        &a,
        &alice_tok,
        &room,
        "m.room.topic",
        json!({"topic": "a's"}),
    )
    .await;
    let mut a_levels = levels.clone();
    a_levels["state_default"] = json!(60);
    let a_pl = set_state(&a, &alice_tok, &room, "m.room.power_levels", a_levels).await;
    let a_msg = say(&a, &alice_tok, &room, "a alone").await;
    // b's branch, while a is down.
    a.halt().await;
    b.resume().await;
    let b_topic = set_state(&b, &bob_tok, &room, "m.room.topic", json!({"topic": "b's"})).await;
    let mut b_levels = levels.clone();
    b_levels["events"]["m.room.name"] = json!(70);
    let b_pl = set_state(&b, &bob_tok, &room, "m.room.power_levels", b_levels).await;
    let b_msg = say(&b, &bob_tok, &room, "b alone").await;
    a.resume().await;

    let mine = [&a_topic, &a_pl, &a_msg, &b_topic, &b_pl, &b_msg, &before];
    until("both servers hold both branches", || async {
        let (ta, tb) = (
            timeline_ids(&a, &alice_tok, &room).await,
            timeline_ids(&b, &bob_tok, &room).await,
        );
        mine.iter().all(|id| ta.contains(id) && tb.contains(id))
    })
    .await;
    // b's branch was made without a's: its first event follows the shared start only.
    follows_none_of(&a, &b, &b_topic, &[&a_topic, &a_pl, &a_msg]).await;
    until("both servers resolve the same current state", || async {
        state_map(&a, &alice_tok, &room).await == state_map(&b, &bob_tok, &room).await
    })
    .await;
    let state = state_map(&a, &alice_tok, &room).await;
    let topic = &state[&("m.room.topic".to_owned(), String::new())];
    assert!(topic == &a_topic || topic == &b_topic, "{state:?}");
    let pl = &state[&("m.room.power_levels".to_owned(), String::new())];
    assert!(pl == &a_pl || pl == &b_pl, "{state:?}");

    // The next event joins the branches, and both servers still agree.
    let after = say(&a, &alice_tok, &room, "after the merge").await;
    until("b sees the message after the merge", || {
        sees_message(&b, &bob_tok, &room, "after the merge")
    })
    .await;
    let (_, v) = signed(
        &a,
        "b.test",
        &key_of(&b),
        "GET",
        &format!("{F}/event/{}", enc(&after)),
        None,
    )
    .await;
    assert_eq!(
        v["pdus"][0]["prev_events"].as_array().map(Vec::len),
        Some(2),
        "{v}"
    );
    assert_eq!(
        state_map(&a, &alice_tok, &room).await,
        state_map(&b, &bob_tok, &room).await
    );
    let (ta, tb) = (
        timeline_ids(&a, &alice_tok, &room).await,
        timeline_ids(&b, &bob_tok, &room).await,
    );
    let (mut sa, mut sb) = (ta.clone(), tb.clone());
    sa.sort();
    sb.sort();
    assert_eq!(sa, sb, "the same events on both servers");
    sa.dedup();
    assert_eq!(sa.len(), ta.len(), "each event once: {ta:?}");
    a.stop().await;
    b.stop().await;
}

/// A fork where one branch takes the other's power away: while b.test is down, a.test's
/// admin demotes bob; while a.test is down, bob (still an admin in b.test's view) sets the
/// topic and the power levels and says something. Once both have both branches they agree
/// (as Synapse's state resolution v2 has it): alice's power levels stand, bob's state events
/// are not in the current state (checked against the resolved power levels, they fail),
/// his message is in both timelines, and b.test now refuses bob's state events.
async fn a_fork_with_a_demotion_is_resolved_alike(backend: Backend, topology: Topology) {
    let ForkRoom {
        mut a,
        mut b,
        alice_tok,
        bob,
        bob_tok,
        room,
        levels,
        before,
    } = fork_room(backend, topology).await;
    b.halt().await;
    let mut demoted = levels.clone();
    demoted["users"][&bob] = json!(0);
    let a_pl = set_state(&a, &alice_tok, &room, "m.room.power_levels", demoted).await;
    let a_msg = say(&a, &alice_tok, &room, "bob is demoted").await;
    a.halt().await;
    b.resume().await;
    let b_topic = set_state(
        &b,
        &bob_tok,
        &room,
        "m.room.topic",
        json!({"topic": "bob's"}),
    )
    .await;
    let mut b_levels = levels.clone();
    b_levels["events"]["m.room.name"] = json!(70);
    let b_pl = set_state(&b, &bob_tok, &room, "m.room.power_levels", b_levels).await;
    let b_msg = say(&b, &bob_tok, &room, "bob alone").await;
    a.resume().await;

    until("both servers hold both messages", || async {
        let (ta, tb) = (
            timeline_ids(&a, &alice_tok, &room).await,
            timeline_ids(&b, &bob_tok, &room).await,
        );
        [&a_pl, &a_msg, &b_msg, &before]
            .iter()
            .all(|id| ta.contains(id) && tb.contains(id))
    })
    .await;
    follows_none_of(&a, &b, &b_topic, &[&a_pl, &a_msg]).await;
    until("both servers resolve the same current state", || async {
        state_map(&a, &alice_tok, &room).await == state_map(&b, &bob_tok, &room).await
    })
    .await;
    let state = state_map(&b, &bob_tok, &room).await;
    assert_eq!(
        state.get(&("m.room.power_levels".to_owned(), String::new())),
        Some(&a_pl),
        "{state:?} (bob's power levels {b_pl})"
    );
    assert_ne!(
        state.get(&("m.room.topic".to_owned(), String::new())),
        Some(&b_topic),
        "{state:?}"
    );
    let refused = b
        .put(
            &format!("{C}/rooms/{}/state/m.room.topic/", enc(&room)),
            Some(&bob_tok),
            json!({"topic": "again"}),
        )
        .await;
    common::assert_error(&refused, 403, "M_FORBIDDEN");
    // The next event joins the branches, and both servers still agree.
    say(&a, &alice_tok, &room, "after the merge").await;
    until("b sees the message after the merge", || {
        sees_message(&b, &bob_tok, &room, "after the merge")
    })
    .await;
    assert_eq!(
        state_map(&a, &alice_tok, &room).await,
        state_map(&b, &bob_tok, &room).await
    );
    a.stop().await;
    b.stop().await;
}

/// Any signed request of a server ends our backoff from it, not only its transactions (as
/// Synapse marks an origin up on any authenticated request): b.test (the fake) fails, a.test
/// backs off (the default 10 minutes), b.test comes back and nothing is sent to it until it
/// asks a.test for a profile; then the queue goes at once. A request whose signature fails
/// ends nothing.
async fn a_signed_request_ends_the_backoff(backend: Backend, topology: Topology) {
    use std::sync::atomic::Ordering;
    let (pa, pb) = (reserve_port(), reserve_port());
    let fake = Fake::start("b.test", pb).await;
    let a = start(backend, topology, "a.test", pa, &[("b.test", url(pb))], &[]).await;
    let client = fake.client(a.base.clone());
    let (alice, room) = room_with_remote_member(&a, &fake, &client).await;
    let tried_before = fake.state.attempts.lock().unwrap().len();
    fake.state.fail.store(true, Ordering::SeqCst);
    send_messages(&a, &alice, &room, ["while down".to_owned()].into_iter()).await;
    eventually("a failed attempt", || {
        fake.state.attempts.lock().unwrap().len() > tried_before
    })
    .await;
    fake.state.fail.store(false, Ordering::SeqCst);
    let attempts = fake.state.attempts.lock().unwrap().len();
    // An unsigned and a wrongly signed request: still backing off.
    let path = "/_matrix/federation/v1/query/profile?user_id=%40alice%3Aa.test";
    assert_eq!(a.get(path, None).await.0, 401);
    let other = SigningKey::load_or_generate(tempfile::tempdir().unwrap().path()).unwrap();
    let forged = x_matrix(
        "b.test",
        "a.test",
        &other,
        fake.key.key_id().as_str(),
        "GET",
        path,
    );
    let resp = a
        .client
        .get(format!("{}{path}", a.base))
        .insert_header(("Authorization", forged))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    actix_web::rt::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        fake.state.attempts.lock().unwrap().len(),
        attempts,
        "a.test retried before b.test reached it"
    );
    assert!(bodies(&fake).is_empty(), "{:?}", bodies(&fake));
    // A signed profile query (not a transaction): the queue goes now.
    let profile = client
        .get(server("a.test"), path)
        .await
        .unwrap_or_else(|e| panic!("profile: {e}"));
    assert_eq!(profile["displayname"], "alice", "{profile}");
    eventually("the queued message reached b.test", || {
        bodies(&fake) == ["while down"]
    })
    .await;
    a.stop().await;
    fake.handle.stop(true).await;
}

/// A fork where one branch kicks the other branch's sender: while b.test is down, a.test's
/// admin kicks bob (a moderator); while a.test is down, bob (still in the room in b.test's
/// view) talks and sets the topic. Once both have both branches they agree (the current
/// state as a.test's alice and b.test's dave, who stays, read it): bob is out on both, his
/// topic is not the room's, his messages are not relayed to a.test's users (they fail
/// against a.test's current state: soft-failed, as the spec says), and b.test refuses him
/// further events.
async fn a_fork_with_a_kick_is_resolved_alike(backend: Backend, topology: Topology) {
    let ForkRoom {
        mut a,
        mut b,
        alice_tok,
        bob,
        bob_tok,
        room,
        mut levels,
        before,
    } = fork_room(backend, topology).await;
    let r = enc(&room);
    let (_, dave_tok, _) = b.register("dave", "pw").await;
    let (st, v) = join_via_a(&b, &dave_tok, &room).await;
    assert_eq!(st, 200, "{v}");
    levels["users"][&bob] = json!(50);
    set_state(&a, &alice_tok, &room, "m.room.power_levels", levels).await;
    until("b knows bob is a moderator", || async {
        let (st, v) = b
            .get(
                &format!("{C}/rooms/{r}/state/m.room.power_levels/"),
                Some(&bob_tok),
            )
            .await;
        st == 200 && v["users"][&bob] == 50
    })
    .await;
    b.halt().await;
    let (st, v) = a
        .post(
            &format!("{C}/rooms/{r}/kick"),
            Some(&alice_tok),
            json!({"user_id": bob}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let a_msg = say(&a, &alice_tok, &room, "bob is out").await;
    a.halt().await;
    b.resume().await;
    let b_msg = say(&b, &bob_tok, &room, "bob still talks").await;
    let b_topic = set_state(
        &b,
        &bob_tok,
        &room,
        "m.room.topic",
        json!({"topic": "bob's"}),
    )
    .await;
    a.resume().await;

    until("b hears of the kick", || async {
        membership_on(&b, &dave_tok, &room, &bob).await == "leave"
    })
    .await;
    until("both servers resolve the same current state", || async {
        state_map(&a, &alice_tok, &room).await == state_map(&b, &dave_tok, &room).await
    })
    .await;
    let state = state_map(&a, &alice_tok, &room).await;
    assert_eq!(membership_on(&a, &alice_tok, &room, &bob).await, "leave");
    assert_ne!(
        state.get(&("m.room.topic".to_owned(), String::new())),
        Some(&b_topic),
        "{state:?}"
    );
    let refused = b
        .put(
            &format!("{C}/rooms/{r}/send/m.room.message/after-kick"),
            Some(&bob_tok),
            json!({"msgtype": "m.text", "body": "let me in"}),
        )
        .await;
    common::assert_error(&refused, 403, "M_FORBIDDEN");
    // The room goes on, and both still agree.
    let after = say(&a, &alice_tok, &room, "after the merge").await;
    until("dave sees the message after the merge", || {
        sees_message(&b, &dave_tok, &room, "after the merge")
    })
    .await;
    // a.test's timeline (its syncapi takes the roomserver's stream in order: once the last
    // message is in, all before it were taken): alice's branch, not bob's events after his
    // kick.
    until("a's timeline has the message after the merge", || async {
        timeline_ids(&a, &alice_tok, &room).await.contains(&after)
    })
    .await;
    let ta = timeline_ids(&a, &alice_tok, &room).await;
    assert!(ta.contains(&a_msg) && ta.contains(&before), "{ta:?}");
    assert!(
        !ta.contains(&b_msg) && !ta.contains(&b_topic),
        "bob's events after his kick relayed to a.test's users: {ta:?}"
    );
    assert!(
        !sees_message(&a, &alice_tok, &room, "bob still talks").await,
        "in a.test's /sync"
    );
    assert_eq!(
        state_map(&a, &alice_tok, &room).await,
        state_map(&b, &dave_tok, &room).await
    );
    a.stop().await;
    b.stop().await;
}
