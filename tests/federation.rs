//! Federation's foundation between real nodes on loopback: server keys (published, fetched
//! directly and through a notary, served as a notary), `X-Matrix` request signatures (accepted
//! and refused), `/version`, and the HTTPS listeners (a test CA made with openssl). Each server is a `TestServer` (both databases, local and
//! bridged) named `<x>.test`, reached by the others through `federation.test_destinations` on a
//! port reserved before any of them starts, with `server.ip_range_denylist = []`.

mod common;

use common::certs::test_certificates;
use common::{Backend, TestServer, Topology};
use myelin::federation::client::{ClientSettings, FederationClient, FederationError};
use myelin::federation::keys;
use myelin::net::IpDenylist;
use myelin::signing_key::SigningKey;
use ruma::api::federation::authentication::{XMatrix, XMatrixSigningInput};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// A free loopback port (bound and released: the node binds it a moment later).
fn reserve_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

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

scenarios!(
    published_keys_are_self_signed,
    keys_are_fetched_directly_and_served_as_notary,
    keys_are_fetched_through_a_notary,
    signed_requests_are_checked,
    tls_listeners_serve_federation,
);
