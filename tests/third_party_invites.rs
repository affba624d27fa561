//! Third-party invites end to end over HTTP, against a fake identity server run in-process
//! (actix-web on loopback, plain http, listed in `identity.insecure_http_servers`) with a
//! real ed25519 key: invites of bound and unbound addresses, createRoom's `invite_3pid`, the
//! identity server's `/3pid/onbind` redeeming an invite and the user's join, a forged
//! signature refused, and bad input. On both databases, local and bridged.

mod common;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use common::{assert_error, create, Backend, TestServer, Topology};
use ruma::serde::{base64::Standard, Base64};
use ruma::signatures::Ed25519KeyPair;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const C: &str = "/_matrix/client/v3";
const ONBIND: &str = "/_matrix/federation/v1/3pid/onbind";
const PEPPER: &str = "matrixrocks";
const IS_TOKEN: &str = "is-access-token";

/// The fake identity server's memory.
#[derive(Default)]
struct IsState {
    /// (medium, address) → user ID.
    bindings: HashMap<(String, String), String>,
    /// Every store-invite body, in order.
    stored: Vec<Value>,
    /// Bodies of lookups, to check the hashing.
    lookups: Vec<Value>,
}

/// A fake identity server: hash_details, lookup (sha256) and store-invite, signing with
/// its own key.
struct FakeIs {
    addr: String,
    state: Arc<Mutex<IsState>>,
    key: Arc<Ed25519KeyPair>,
    handle: actix_web::dev::ServerHandle,
}

fn new_key() -> Ed25519KeyPair {
    Ed25519KeyPair::from_der(&Ed25519KeyPair::generate(), "0".into()).expect("key")
}

fn public_key(key: &Ed25519KeyPair) -> String {
    Base64::<Standard, _>::new(key.public_key().to_vec()).encode()
}

fn authorized(req: &HttpRequest) -> bool {
    req.headers()
        .get("Authorization")
        .and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {IS_TOKEN}"))
}

fn unauthorized() -> HttpResponse {
    HttpResponse::Unauthorized().json(json!({"errcode": "M_UNAUTHORIZED", "error": "bad token"}))
}

impl FakeIs {
    async fn start() -> FakeIs {
        let state = Arc::new(Mutex::new(IsState::default()));
        let key = Arc::new(new_key());
        let (s, k) = (state.clone(), key.clone());
        let server = HttpServer::new(move || {
            let (s1, s2, s3, k) = (s.clone(), s.clone(), s.clone(), k.clone());
            let _ = s1;
            App::new()
                .route(
                    "/_matrix/identity/v2/hash_details",
                    web::get().to(|req: HttpRequest| async move {
                        if !authorized(&req) {
                            return unauthorized();
                        }
                        HttpResponse::Ok().json(
                            json!({"algorithms": ["none", "sha256"], "lookup_pepper": PEPPER}),
                        )
                    }),
                )
                .route(
                    "/_matrix/identity/v2/lookup",
                    web::post().to(move |req: HttpRequest, body: web::Json<Value>| {
                        let s = s2.clone();
                        async move {
                            if !authorized(&req) {
                                return unauthorized();
                            }
                            let mut st = s.lock().unwrap();
                            st.lookups.push(body.0.clone());
                            let mut mappings = serde_json::Map::new();
                            for ((medium, address), mxid) in &st.bindings {
                                let hash =
                                    myelin::identity::hash_address(address, medium, PEPPER);
                                if body["addresses"]
                                    .as_array()
                                    .unwrap()
                                    .iter()
                                    .any(|a| a == &json!(hash))
                                {
                                    mappings.insert(hash, json!(mxid));
                                }
                            }
                            HttpResponse::Ok().json(json!({ "mappings": mappings }))
                        }
                    }),
                )
                .route(
                    "/_matrix/identity/v2/store-invite",
                    web::post().to(move |req: HttpRequest, body: web::Json<Value>| {
                        let (s, k) = (s3.clone(), k.clone());
                        async move {
                            if !authorized(&req) {
                                return unauthorized();
                            }
                            let mut st = s.lock().unwrap();
                            st.stored.push(body.0.clone());
                            let token = format!("tok{}", st.stored.len());
                            let host = req.connection_info().host().to_owned();
                            HttpResponse::Ok().json(json!({
                                "token": token,
                                "public_keys": [{
                                    "public_key": public_key(&k),
                                    "key_validity_url": format!("http://{host}/_matrix/identity/v2/pubkey/isvalid"),
                                }],
                                "display_name": "c...@e...",
                            }))
                        }
                    }),
                )
        })
        .workers(1)
        .disable_signals()
        .bind("127.0.0.1:0")
        .expect("bind fake identity server");
        let addr = server.addrs()[0].to_string();
        let server = server.run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        FakeIs {
            addr,
            state,
            key,
            handle,
        }
    }

    fn bind(&self, address: &str, mxid: &str) {
        self.state
            .lock()
            .unwrap()
            .bindings
            .insert(("email".into(), address.into()), mxid.into());
    }

    fn stored(&self) -> Vec<Value> {
        self.state.lock().unwrap().stored.clone()
    }

    async fn stop(self) {
        self.handle.stop(false).await;
    }
}

/// A `signed` object for `/3pid/onbind`, signed by `key` as the identity server signs it.
fn signed(key: &Ed25519KeyPair, token: &str, mxid: &str) -> Value {
    let mut object: ruma::CanonicalJsonObject =
        serde_json::from_value(json!({"mxid": mxid, "token": token})).unwrap();
    ruma::signatures::sign_json("id.test", key, &mut object).expect("sign");
    serde_json::to_value(object).unwrap()
}

fn onbind_body(address: &str, mxid: &str, room: &str, sender: &str, signed: Value) -> Value {
    json!({
        "medium": "email", "address": address, "mxid": mxid,
        "invites": [{
            "medium": "email", "address": address, "mxid": mxid,
            "room_id": room, "sender": sender, "signed": signed,
        }],
    })
}

/// A free loopback port with nothing listening on it.
fn dead_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn start(b: Backend, t: Topology, is: &FakeIs, dead: u16) -> TestServer {
    let list = format!(
        "identity.insecure_http_servers=[\"{}\", \"127.0.0.1:{dead}\"]",
        is.addr
    );
    TestServer::start(b, t, &[&list]).await
}

fn invite_3pid(is: &str, address: &str) -> Value {
    json!({"id_server": is, "id_access_token": IS_TOKEN, "medium": "email", "address": address})
}

async fn state_event(s: &TestServer, tok: &str, room: &str, kind: &str, key: &str) -> (u16, Value) {
    s.get(
        &format!("{C}/rooms/{room}/state/{kind}/{key}?format=event"),
        Some(tok),
    )
    .await
}

async fn invites_of_bound_and_unbound_addresses(b: Backend, t: Topology) {
    let is = FakeIs::start().await;
    let s = start(b, t, &is, dead_port()).await;
    let (alice, tok, _) = s.register("alice", "pw").await;
    let (bob, bob_tok, _) = s.register("bob", "pw").await;
    is.bind("bob@example.org", &bob);
    let room = create(&s, &tok, json!({"name": "Hall", "preset": "private_chat"})).await;

    // Bound: a plain invite of bob, looked up with the spec's hashing.
    let (st, v) = s
        .post(
            &format!("{C}/rooms/{room}/invite"),
            Some(&tok),
            invite_3pid(&is.addr, "bob@example.org"),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (_, member) = state_event(&s, &tok, &room, "m.room.member", &bob).await;
    assert_eq!(member["content"]["membership"], "invite", "{member}");
    assert_eq!(member["sender"], alice.as_str());
    let lookup = is.state.lock().unwrap().lookups[0].clone();
    assert_eq!(lookup["algorithm"], "sha256");
    assert_eq!(lookup["pepper"], PEPPER);
    assert_eq!(
        lookup["addresses"][0],
        myelin::identity::hash_address("bob@example.org", "email", PEPPER)
    );
    assert!(is.stored().is_empty(), "a bound address stores no invite");
    let (st, _) = s
        .post(&format!("{C}/rooms/{room}/join"), Some(&bob_tok), json!({}))
        .await;
    assert_eq!(st, 200);

    // Unbound: the identity server stores the invite and the room gets the token and key.
    let (st, v) = s
        .post(
            &format!("{C}/rooms/{room}/invite"),
            Some(&tok),
            invite_3pid(&is.addr, "carol@example.org"),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let stored = is.stored();
    assert_eq!(stored.len(), 1);
    let sent = &stored[0];
    for (k, want) in [
        ("medium", json!("email")),
        ("address", json!("carol@example.org")),
        ("room_id", json!(room)),
        ("sender", json!(alice)),
        ("room_name", json!("Hall")),
        ("room_join_rules", json!("invite")),
        ("room_alias", json!("")),
        ("room_avatar_url", json!("")),
        ("sender_display_name", json!("alice")),
        ("sender_avatar_url", json!("")),
    ] {
        assert_eq!(sent[k], want, "store-invite {k} in {sent}");
    }
    assert!(sent.get("room_type").is_none(), "no room type: {sent}");
    let (st, ev) = state_event(&s, &tok, &room, "m.room.third_party_invite", "tok1").await;
    assert_eq!(st, 200, "{ev}");
    assert_eq!(ev["sender"], alice.as_str());
    let c = &ev["content"];
    assert_eq!(c["display_name"], "c...@e...");
    assert_eq!(c["public_key"], public_key(&is.key));
    assert_eq!(
        c["key_validity_url"],
        format!("http://{}/_matrix/identity/v2/pubkey/isvalid", is.addr)
    );
    assert_eq!(c["public_keys"][0]["public_key"], public_key(&is.key));
    s.stop().await;
    is.stop().await;
}

async fn onbind_redeems_and_forgeries_are_refused(b: Backend, t: Topology) {
    let is = FakeIs::start().await;
    let s = start(b, t, &is, dead_port()).await;
    let (alice, tok, _) = s.register("alice", "pw").await;
    let room = create(&s, &tok, json!({"preset": "private_chat"})).await;
    for address in ["carol@example.org", "dave@example.org"] {
        let (st, v) = s
            .post(
                &format!("{C}/rooms/{room}/invite"),
                Some(&tok),
                invite_3pid(&is.addr, address),
            )
            .await;
        assert_eq!(st, 200, "{v}");
    }
    let (carol, carol_tok, _) = s.register("carol", "pw").await;
    let (dave, dave_tok, _) = s.register("dave", "pw").await;

    // Before any binding, carol cannot join the invite-only room.
    let (st, _) = s
        .post(
            &format!("{C}/rooms/{room}/join"),
            Some(&carol_tok),
            json!({}),
        )
        .await;
    assert_eq!(st, 403);

    // The identity server signs carol's binding: she is invited as alice invited her.
    let body = onbind_body(
        "carol@example.org",
        &carol,
        &room,
        &alice,
        signed(&is.key, "tok1", &carol),
    );
    let (st, v) = s.put(ONBIND, None, body).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v, json!({}));
    let (_, member) = state_event(&s, &tok, &room, "m.room.member", &carol).await;
    assert_eq!(member["content"]["membership"], "invite", "{member}");
    assert_eq!(member["sender"], alice.as_str());
    let tpi = &member["content"]["third_party_invite"];
    assert_eq!(tpi["display_name"], "c...@e...");
    assert_eq!(tpi["signed"]["token"], "tok1");
    assert_eq!(tpi["signed"]["mxid"], carol.as_str());
    assert!(tpi["signed"]["signatures"]["id.test"]["ed25519:0"].is_string());
    // She sees the invite and joins.
    let (st, sync) = s.get(&format!("{C}/sync"), Some(&carol_tok)).await;
    assert_eq!(st, 200);
    assert!(sync["rooms"]["invite"].get(&room).is_some(), "{sync}");
    let (st, v) = s
        .post(
            &format!("{C}/rooms/{room}/join"),
            Some(&carol_tok),
            json!({}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (_, member) = state_event(&s, &tok, &room, "m.room.member", &carol).await;
    assert_eq!(member["content"]["membership"], "join");
    // Telling again (the identity server retries) changes nothing: she stays joined.
    let body = onbind_body(
        "carol@example.org",
        &carol,
        &room,
        &alice,
        signed(&is.key, "tok1", &carol),
    );
    assert_eq!(s.put(ONBIND, None, body).await.0, 200);
    let (_, member) = state_event(&s, &tok, &room, "m.room.member", &carol).await;
    assert_eq!(member["content"]["membership"], "join");

    // Signed by another key: refused by the auth rules, dave is not invited.
    let forged = onbind_body(
        "dave@example.org",
        &dave,
        &room,
        &alice,
        signed(&new_key(), "tok2", &dave),
    );
    assert_error(&s.put(ONBIND, None, forged).await, 403, "M_FORBIDDEN");
    // The right key, but a signature over another user: the mxid must be the invitee.
    let mut tampered = signed(&is.key, "tok2", &carol);
    tampered["mxid"] = json!(dave);
    let body = onbind_body("dave@example.org", &dave, &room, &alice, tampered);
    assert_error(&s.put(ONBIND, None, body).await, 403, "M_FORBIDDEN");
    // A token the room never saw.
    let body = onbind_body(
        "dave@example.org",
        &dave,
        &room,
        &alice,
        signed(&is.key, "nope", &dave),
    );
    assert_error(&s.put(ONBIND, None, body).await, 403, "M_FORBIDDEN");
    let (st, _) = state_event(&s, &tok, &room, "m.room.member", &dave).await;
    assert_eq!(st, 404, "dave was not invited");
    let (st, _) = s
        .post(
            &format!("{C}/rooms/{room}/join"),
            Some(&dave_tok),
            json!({}),
        )
        .await;
    assert_eq!(st, 403);

    // Bad bodies: no token in signed, no invites at all, not JSON.
    let body = onbind_body(
        "dave@example.org",
        &dave,
        &room,
        &alice,
        json!({"mxid": dave, "signatures": {}}),
    );
    assert_error(&s.put(ONBIND, None, body).await, 400, "M_BAD_JSON");
    let body = json!({"medium": "email", "address": "dave@example.org", "mxid": dave});
    assert_error(&s.put(ONBIND, None, body).await, 400, "M_BAD_JSON");
    let (st, _) = s.call_raw("PUT", ONBIND, None, b"{".to_vec()).await;
    assert_eq!(st, 400);
    // A room not known here needs federation: skipped, not an error.
    let body = onbind_body(
        "dave@example.org",
        &dave,
        "!elsewhere:other.example",
        &alice,
        signed(&is.key, "tok2", &dave),
    );
    assert_eq!(s.put(ONBIND, None, body).await.0, 200);

    // Finally the genuine signature for dave, sent the way Sydent sends it (POST).
    let body = onbind_body(
        "dave@example.org",
        &dave,
        &room,
        &alice,
        signed(&is.key, "tok2", &dave),
    );
    let (st, v) = s.post(ONBIND, None, body).await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = s
        .post(
            &format!("{C}/rooms/{room}/join"),
            Some(&dave_tok),
            json!({}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    s.stop().await;
    is.stop().await;
}

async fn create_room_with_invite_3pid(b: Backend, t: Topology) {
    let is = FakeIs::start().await;
    let s = start(b, t, &is, dead_port()).await;
    let (alice, tok, _) = s.register("alice", "pw").await;
    let (bob, _, _) = s.register("bob", "pw").await;
    is.bind("bob@example.org", &bob);
    let room = create(
        &s,
        &tok,
        json!({
            "name": "Space", "creation_content": {"type": "m.space"},
            "invite_3pid": [invite_3pid(&is.addr, "bob@example.org"), invite_3pid(&is.addr, "erin@example.org")],
        }),
    )
    .await;
    let (_, member) = state_event(&s, &tok, &room, "m.room.member", &bob).await;
    assert_eq!(member["content"]["membership"], "invite", "{member}");
    let (st, ev) = state_event(&s, &tok, &room, "m.room.third_party_invite", "tok1").await;
    assert_eq!(st, 200, "{ev}");
    assert_eq!(ev["sender"], alice.as_str());
    let stored = is.stored();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["address"], "erin@example.org");
    assert_eq!(stored[0]["room_type"], "m.space");
    assert_eq!(stored[0]["room_name"], "Space");
    s.stop().await;
    is.stop().await;
}

async fn bad_input_and_unreachable_servers(b: Backend, t: Topology) {
    let is = FakeIs::start().await;
    let dead = dead_port();
    let s = start(b, t, &is, dead).await;
    let (_, tok, _) = s.register("alice", "pw").await;
    let (_, eve_tok, _) = s.register("eve", "pw").await;
    let room = create(&s, &tok, json!({})).await;
    let invite = format!("{C}/rooms/{room}/invite");

    // No id_server: neither a user nor a complete third-party invitation.
    let body = json!({"id_access_token": IS_TOKEN, "medium": "email", "address": "x@example.org"});
    assert_error(&s.post(&invite, Some(&tok), body).await, 400, "M_BAD_JSON");
    // Nothing at all.
    assert_error(
        &s.post(&invite, Some(&tok), json!({})).await,
        400,
        "M_BAD_JSON",
    );
    // An unknown medium, an empty address, an empty token, an id_server with a path.
    let mut body = invite_3pid(&is.addr, "x@example.org");
    body["medium"] = json!("carrier-pigeon");
    assert_error(
        &s.post(&invite, Some(&tok), body).await,
        400,
        "M_INVALID_PARAM",
    );
    let body = invite_3pid(&is.addr, " ");
    assert_error(
        &s.post(&invite, Some(&tok), body).await,
        400,
        "M_INVALID_PARAM",
    );
    let mut body = invite_3pid(&is.addr, "x@example.org");
    body["id_access_token"] = json!("");
    assert_error(
        &s.post(&invite, Some(&tok), body).await,
        400,
        "M_MISSING_PARAM",
    );
    let body = invite_3pid("id.example.org/evil", "x@example.org");
    assert_error(
        &s.post(&invite, Some(&tok), body).await,
        400,
        "M_INVALID_PARAM",
    );
    // A loopback identity server that is not listed as insecure is never called.
    let body = invite_3pid("127.0.0.1:9", "x@example.org");
    assert_error(
        &s.post(&invite, Some(&tok), body).await,
        400,
        "M_INVALID_PARAM",
    );
    let body = invite_3pid("[::1]:8090", "x@example.org");
    assert_error(
        &s.post(&invite, Some(&tok), body).await,
        400,
        "M_INVALID_PARAM",
    );
    // A listed server that is down: 502, saying which.
    let down = format!("127.0.0.1:{dead}");
    let got = s
        .post(&invite, Some(&tok), invite_3pid(&down, "x@example.org"))
        .await;
    assert_error(&got, 502, "M_UNKNOWN");
    assert!(
        got.1["error"].as_str().unwrap().contains(&down),
        "{}",
        got.1
    );
    // The identity server refuses the token.
    let mut body = invite_3pid(&is.addr, "x@example.org");
    body["id_access_token"] = json!("wrong");
    assert_error(&s.post(&invite, Some(&tok), body).await, 403, "M_FORBIDDEN");
    // A user not in the room may not invite, and the identity server hears nothing of it.
    let got = s
        .post(
            &invite,
            Some(&eve_tok),
            invite_3pid(&is.addr, "x@example.org"),
        )
        .await;
    assert_error(&got, 403, "M_FORBIDDEN");
    // An unknown room.
    let got = s
        .post(
            &format!("{C}/rooms/!nowhere:test.local/invite"),
            Some(&tok),
            invite_3pid(&is.addr, "x@example.org"),
        )
        .await;
    assert_error(&got, 404, "M_NOT_FOUND");
    assert!(is.stored().is_empty());
    assert!(is.state.lock().unwrap().lookups.is_empty());

    // createRoom checks its invite_3pid before making the room.
    let (_, before) = s.get(&format!("{C}/joined_rooms"), Some(&tok)).await;
    let mut bad = invite_3pid(&is.addr, "x@example.org");
    bad["medium"] = json!("fax");
    let got = s
        .post(
            &format!("{C}/createRoom"),
            Some(&tok),
            json!({"invite_3pid": [bad]}),
        )
        .await;
    assert_error(&got, 400, "M_INVALID_PARAM");
    let got = s
        .post(
            &format!("{C}/createRoom"),
            Some(&tok),
            json!({"invite_3pid": [{"medium": "email", "address": "x@example.org"}]}),
        )
        .await;
    assert_error(&got, 400, "M_BAD_JSON");
    let (_, after) = s.get(&format!("{C}/joined_rooms"), Some(&tok)).await;
    assert_eq!(before, after, "no room was made");
    s.stop().await;
    is.stop().await;
}

/// A createRoom whose third-party invite fails once the room exists (the identity server is
/// down): 502, and nothing of the room remains: the creator is not in it, the invitee's
/// invitation is withdrawn, it is not listed, and its alias is free again.
async fn create_room_failing_after_the_room_exists_leaves_nothing(b: Backend, t: Topology) {
    let is = FakeIs::start().await;
    let dead = dead_port();
    let s = start(b, t, &is, dead).await;
    let (_, tok, _) = s.register("alice", "pw").await;
    let (bob, bob_tok, _) = s.register("bob", "pw").await;
    let down = format!("127.0.0.1:{dead}");
    let got = s
        .post(
            &format!("{C}/createRoom"),
            Some(&tok),
            json!({
                "room_alias_name": "undone", "visibility": "public", "preset": "public_chat",
                "invite": [bob], "invite_3pid": [invite_3pid(&down, "x@example.org")],
            }),
        )
        .await;
    assert_error(&got, 502, "M_UNKNOWN");
    let (st, joined) = s.get(&format!("{C}/joined_rooms"), Some(&tok)).await;
    assert_eq!(st, 200);
    assert_eq!(joined["joined_rooms"], json!([]), "{b:?} {t:?}");
    let alias = format!("{C}/directory/room/%23undone:test.local");
    assert_error(&s.get(&alias, None).await, 404, "M_NOT_FOUND");
    let (_, public) = s.get(&format!("{C}/publicRooms"), Some(&tok)).await;
    assert_eq!(public["chunk"], json!([]), "{public}");
    // Bob was invited by the room's own events; the invitation is withdrawn.
    let (st, sync) = s.get(&format!("{C}/sync"), Some(&bob_tok)).await;
    assert_eq!(st, 200);
    let invites = sync["rooms"]["invite"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    assert!(invites.is_empty(), "{b:?} {t:?}: {sync}");
    // The alias can be taken again.
    let room = create(&s, &tok, json!({"room_alias_name": "undone"})).await;
    let (st, found) = s.get(&alias, None).await;
    assert_eq!((st, found["room_id"].as_str()), (200, Some(room.as_str())));
    s.stop().await;
    is.stop().await;
}

scenarios!(
    invites_of_bound_and_unbound_addresses,
    onbind_redeems_and_forgeries_are_refused,
    create_room_with_invite_3pid,
    create_room_failing_after_the_room_exists_leaves_nothing,
    bad_input_and_unreachable_servers
);
