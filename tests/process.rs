//! The `myelin` binary as an operator runs it: the shipped config.toml with environment
//! overrides, on both databases; acknowledged writes survive `kill -9` (events queued for
//! another server too, and a federated room's stream to a server killed and restarted);
//! bad config is refused with the key named.

mod common;

use common::{Backend, TestDb};
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

fn free_port() -> u16 {
    common::reserve_port()
}

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn spawn(db: &TestDb) -> Server {
    spawn_with(db, free_port(), &[]).await
}

/// The server on `port`, with `sets` as `--set` flags after the test's own.
async fn spawn_with(db: &TestDb, port: u16, sets: &[String]) -> Server {
    let child = Command::new(env!("CARGO_BIN_EXE_myelin"))
        .args([
            "--config",
            concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml"),
        ])
        .args([
            "--set",
            "auth.argon2_memory_kib=64",
            "--set",
            "auth.argon2_iterations=1",
        ])
        .args(["--set", "rate_limit.enabled=false"])
        .args(sets.iter().flat_map(|s| ["--set", s.as_str()]))
        .env("MYELIN_LISTEN", format!("127.0.0.1:{port}"))
        .env(
            "MYELIN_METRICS_LISTEN",
            format!("127.0.0.1:{}", free_port()),
        )
        .env("MYELIN_DATA_DIR", db.dir.path())
        .env("MYELIN_DATABASE", &db.url)
        .env("MYELIN_SERVER_NAME", "proc.test")
        .env("MYELIN_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn myelin");
    let base = format!("http://127.0.0.1:{port}");
    // Owned by the guard at once, so every path (a panic included) kills and reaps it.
    let server = Server {
        child,
        base: base.clone(),
    };
    let client = awc::Client::default();
    // Bounded wait for the listener: 200 tries, 50 ms apart.
    for _ in 0..200 {
        if let Ok(r) = client
            .get(format!("{base}/_matrix/client/versions"))
            .send()
            .await
        {
            if r.status().is_success() {
                return server;
            }
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("myelin did not start on {base}");
}

async fn call(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: serde_json::Value,
) -> (u16, serde_json::Value) {
    let client = awc::Client::default();
    let mut req = client.request(method.parse().unwrap(), format!("{base}{path}"));
    if let Some(t) = token {
        req = req.insert_header(("Authorization", format!("Bearer {t}")));
    }
    let mut resp = req.send_json(&body).await.expect("request");
    let bytes = resp.body().await.expect("body");
    (
        resp.status().as_u16(),
        serde_json::from_slice(&bytes).unwrap_or_default(),
    )
}

async fn acknowledged_writes_survive_kill_9(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = spawn(&db).await;
    let mut users = Vec::new();
    for i in 0..5 {
        let (st, v) = call(&server.base, "POST", "/_matrix/client/v3/register", None,
            json!({"username": format!("user{i}"), "password": "pw", "auth": {"type": "m.login.dummy"}})).await;
        assert_eq!(st, 200, "{v}");
        let token = v["access_token"].as_str().unwrap().to_owned();
        let (st, _) = call(
            &server.base,
            "PUT",
            &format!("/_matrix/client/v3/profile/@user{i}:proc.test/displayname"),
            Some(&token),
            json!({"displayname": format!("User {i}")}),
        )
        .await;
        assert_eq!(st, 200);
        users.push(token);
    }
    // SIGKILL: no shutdown path runs.
    drop(server);
    let server = spawn(&db).await;
    for (i, token) in users.iter().enumerate() {
        let (st, v) = call(
            &server.base,
            "GET",
            "/_matrix/client/v3/account/whoami",
            Some(token),
            json!({}),
        )
        .await;
        assert_eq!(
            (st, v["user_id"].as_str()),
            (200, Some(format!("@user{i}:proc.test").as_str())),
            "{backend:?}"
        );
        let (st, v) = call(
            &server.base,
            "GET",
            &format!("/_matrix/client/v3/profile/@user{i}:proc.test/displayname"),
            None,
            json!({}),
        )
        .await;
        assert_eq!(
            (st, v["displayname"].as_str()),
            (200, Some(format!("User {i}").as_str()))
        );
        let (st, _) = call(&server.base, "POST", "/_matrix/client/v3/login", None,
            json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": format!("user{i}")}, "password": "pw"})).await;
        assert_eq!(st, 200);
    }
}

#[actix_web::test]
async fn sqlite_acknowledged_writes_survive_kill_9() {
    acknowledged_writes_survive_kill_9(Backend::Sqlite).await;
}

#[actix_web::test]
async fn postgres_acknowledged_writes_survive_kill_9() {
    acknowledged_writes_survive_kill_9(Backend::Postgres).await;
}

/// Sends messages from several concurrent clients, kills the server mid-stream, and finds
/// every acknowledged event after the restart.
async fn acknowledged_events_survive_kill_9(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = spawn(&db).await;
    let (_, v) = call(
        &server.base,
        "POST",
        "/_matrix/client/v3/register",
        None,
        json!({"username": "talker", "password": "pw", "auth": {"type": "m.login.dummy"}}),
    )
    .await;
    let token = v["access_token"].as_str().unwrap().to_owned();
    let (st, v) = call(
        &server.base,
        "POST",
        "/_matrix/client/v3/createRoom",
        Some(&token),
        json!({"preset": "public_chat"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let room = v["room_id"].as_str().unwrap().to_owned();
    // 8 senders, 40 messages each; the kill lands while they are still sending.
    let acked = std::rc::Rc::new(std::cell::RefCell::new(Vec::<String>::new()));
    let base = server.base.clone();
    let senders = (0..8).map(|w| {
        let (base, token, room, acked) = (base.clone(), token.clone(), room.clone(), acked.clone());
        async move {
            for i in 0..40 {
                let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/w{w}m{i}");
                let client = awc::Client::default();
                let sent = client
                    .put(format!("{base}{path}"))
                    .insert_header(("Authorization", format!("Bearer {token}")))
                    .send_json(&json!({"msgtype": "m.text", "body": format!("{w}/{i}")}))
                    .await;
                let Ok(mut resp) = sent else { return };
                if !resp.status().is_success() {
                    return;
                }
                let Ok(body) = resp.json::<serde_json::Value>().await else {
                    return;
                };
                if let Some(id) = body["event_id"].as_str() {
                    acked.borrow_mut().push(id.to_owned());
                }
            }
        }
    });
    let killer = async {
        // Bounded: kill once 60 events are acknowledged, or after 10 s.
        for _ in 0..1000 {
            if acked.borrow().len() >= 60 {
                break;
            }
            actix_web::rt::time::sleep(Duration::from_millis(10)).await;
        }
        let mut server = server;
        let _ = server.child.kill();
        let _ = server.child.wait();
    };
    futures_util::future::join(futures_util::future::join_all(senders), killer).await;
    let acked = acked.borrow().clone();
    assert!(
        acked.len() >= 60,
        "{backend:?}: only {} events were acknowledged",
        acked.len()
    );
    let server = spawn(&db).await;
    for id in &acked {
        let (st, v) = call(
            &server.base,
            "GET",
            &format!("/_matrix/client/v3/rooms/{room}/event/{id}"),
            Some(&token),
            json!({}),
        )
        .await;
        assert_eq!(st, 200, "{backend:?}: acknowledged {id} is gone: {v}");
    }
    // And the room still takes messages: its head survived intact.
    let (st, _) = call(
        &server.base,
        "PUT",
        &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/after"),
        Some(&token),
        json!({"body": "after"}),
    )
    .await;
    assert_eq!(st, 200);
}

#[actix_web::test]
async fn sqlite_acknowledged_events_survive_kill_9() {
    acknowledged_events_survive_kill_9(Backend::Sqlite).await;
}

#[actix_web::test]
async fn postgres_acknowledged_events_survive_kill_9() {
    acknowledged_events_survive_kill_9(Backend::Postgres).await;
}

/// One incremental sync: (events of `room` in order, next_batch), or `None` once the server
/// is gone.
async fn sync_once(
    base: &str,
    token: &str,
    room: &str,
    since: &str,
) -> Option<(Vec<String>, String, bool)> {
    let filter = "%7B%22room%22%3A%7B%22timeline%22%3A%7B%22limit%22%3A1000%7D%7D%7D";
    let since = if since.is_empty() {
        String::new()
    } else {
        format!("&since={since}")
    };
    let client = awc::Client::builder()
        .timeout(Duration::from_secs(10))
        .finish();
    let mut resp = client
        .get(format!(
            "{base}/_matrix/client/v3/sync?timeout=1000&filter={filter}{since}"
        ))
        .insert_header(("Authorization", format!("Bearer {token}")))
        .send()
        .await
        .ok()?;
    if !resp.status().is_success() {
        return None;
    }
    let v: serde_json::Value = resp.json().limit(64 << 20).await.ok()?;
    let tl = &v["rooms"]["join"][room]["timeline"];
    let ids = tl["events"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|e| e["type"] == "m.room.message")
                .filter_map(|e| e["event_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let limited = tl["limited"] == true;
    Some((ids, v["next_batch"].as_str()?.to_owned(), limited))
}

/// A client follows the room through `/sync` while messages stream in; the server is
/// killed mid-stream and restarted; the client resumes with its last token and ends up with
/// every acknowledged message exactly once.
async fn sync_resumes_after_kill_9(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = spawn(&db).await;
    let base = server.base.clone();
    let (_, v) = call(
        &base,
        "POST",
        "/_matrix/client/v3/register",
        None,
        json!({"username": "talker", "password": "pw", "auth": {"type": "m.login.dummy"}}),
    )
    .await;
    let token = v["access_token"].as_str().unwrap().to_owned();
    let (_, v) = call(
        &base,
        "POST",
        "/_matrix/client/v3/register",
        None,
        json!({"username": "reader", "password": "pw", "auth": {"type": "m.login.dummy"}}),
    )
    .await;
    let reader = v["access_token"].as_str().unwrap().to_owned();
    let (_, v) = call(
        &base,
        "POST",
        "/_matrix/client/v3/createRoom",
        Some(&token),
        json!({"preset": "public_chat"}),
    )
    .await;
    let room = v["room_id"].as_str().unwrap().to_owned();
    let (st, _) = call(
        &base,
        "POST",
        &format!("/_matrix/client/v3/join/{room}"),
        Some(&reader),
        json!({}),
    )
    .await;
    assert_eq!(st, 200);
    let (_, first, _) = sync_once(&base, &reader, &room, "")
        .await
        .expect("first sync");

    let acked = std::rc::Rc::new(std::cell::RefCell::new(Vec::<String>::new()));
    let seen = std::rc::Rc::new(std::cell::RefCell::new(Vec::<String>::new()));
    let since = std::rc::Rc::new(std::cell::RefCell::new(first));
    let senders = (0..4).map(|w| {
        let (base, token, room, acked) = (base.clone(), token.clone(), room.clone(), acked.clone());
        async move {
            for i in 0..50 {
                let path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/s{w}m{i}");
                let sent = awc::Client::default()
                    .put(format!("{base}{path}"))
                    .insert_header(("Authorization", format!("Bearer {token}")))
                    .send_json(&json!({"msgtype": "m.text", "body": format!("{w}/{i}")}))
                    .await;
                let Ok(mut resp) = sent else { return };
                let Ok(body) = resp.json::<serde_json::Value>().await else {
                    return;
                };
                match body["event_id"].as_str() {
                    Some(id) => acked.borrow_mut().push(id.to_owned()),
                    None => return,
                }
            }
        }
    });
    let following = {
        let (base, reader, room, seen, since) = (
            base.clone(),
            reader.clone(),
            room.clone(),
            seen.clone(),
            since.clone(),
        );
        async move {
            // Bounded: until the server dies (or 2,000 syncs).
            for _ in 0..2000 {
                let token = since.borrow().clone();
                let Some((ids, next, limited)) = sync_once(&base, &reader, &room, &token).await
                else {
                    return;
                };
                assert!(!limited, "a 1000-event timeline is never limited here");
                seen.borrow_mut().extend(ids);
                *since.borrow_mut() = next;
            }
        }
    };
    let killer = async {
        for _ in 0..1000 {
            if acked.borrow().len() >= 60 {
                break;
            }
            actix_web::rt::time::sleep(Duration::from_millis(10)).await;
        }
        let mut server = server;
        let _ = server.child.kill();
        let _ = server.child.wait();
    };
    futures_util::future::join3(futures_util::future::join_all(senders), following, killer).await;
    let acked = acked.borrow().clone();
    assert!(
        acked.len() >= 60,
        "{backend:?}: only {} acknowledged",
        acked.len()
    );

    // Restart; the reader resumes from its last token until a sync brings nothing new.
    let server = spawn(&db).await;
    for _ in 0..100 {
        let token = since.borrow().clone();
        let (ids, next, limited) = sync_once(&server.base, &reader, &room, &token)
            .await
            .expect("sync after the restart");
        assert!(!limited);
        let done = ids.is_empty();
        seen.borrow_mut().extend(ids);
        *since.borrow_mut() = next;
        if done {
            break;
        }
    }
    let seen = seen.borrow().clone();
    let unique: std::collections::HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "{backend:?}: an event came twice");
    for id in &acked {
        assert!(
            unique.contains(id),
            "{backend:?}: acknowledged {id} never reached the reader"
        );
    }
}

#[actix_web::test]
async fn sqlite_sync_resumes_after_kill_9() {
    sync_resumes_after_kill_9(Backend::Sqlite).await;
}

#[actix_web::test]
async fn postgres_sync_resumes_after_kill_9() {
    sync_resumes_after_kill_9(Backend::Postgres).await;
}

/// Events queued for another server survive `kill -9`: while it fails, the acknowledged
/// messages wait in the durable queue; after a kill and a restart each reaches it once, in
/// order, and the transaction first tried keeps its ID.
async fn queued_events_survive_kill_9(backend: Backend) {
    use common::remote::{auth_of, eventually, put_txn, remote_event, room_tip, Fake};
    use std::sync::atomic::Ordering;
    let db = TestDb::new(backend).await;
    let (pa, pb) = (free_port(), free_port());
    let fake = Fake::start("b.test", pb).await;
    let sets = [
        "server.name=a.test".to_owned(),
        "server.ip_range_denylist=[]".to_owned(),
        format!("federation.test_destinations={{\"b.test\" = \"http://127.0.0.1:{pb}\"}}"),
        "federation.retry_min_interval=200ms".to_owned(),
        "federation.retry_max_interval=1s".to_owned(),
    ];
    let server = spawn_with(&db, pa, &sets).await;
    let base = server.base.clone();
    let (st, v) = call(
        &base,
        "POST",
        "/_matrix/client/v3/register",
        None,
        json!({"username": "alice", "password": "pw", "auth": {"type": "m.login.dummy"}}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let token = v["access_token"].as_str().unwrap().to_owned();
    let (st, v) = call(
        &base,
        "POST",
        "/_matrix/client/v3/createRoom",
        Some(&token),
        json!({"preset": "public_chat"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let room = v["room_id"].as_str().unwrap().to_owned();
    // @bob:b.test joins through /send.
    let http = awc::Client::default();
    let (version, last, depth, state) = room_tip(&http, &base, &token, &room).await;
    let bob = "@bob:b.test";
    let (join_id, join) = remote_event(
        &fake,
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
    let answer = put_txn(&fake.client(base.clone()), "join", "b.test", vec![join])
        .await
        .unwrap();
    assert_eq!(answer["pdus"][&join_id], json!({}), "{answer}");

    // b.test fails; five acknowledged messages wait for it.
    fake.state.fail.store(true, Ordering::SeqCst);
    for i in 0..5 {
        let (st, v) = call(
            &base,
            "PUT",
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/t{i}",
                common::enc(&room)
            ),
            Some(&token),
            json!({"msgtype": "m.text", "body": format!("m{i}")}),
        )
        .await;
        assert_eq!(st, 200, "{v}");
    }
    eventually("a failed attempt", || {
        !fake.state.attempts.lock().unwrap().is_empty()
    })
    .await;
    let first_try = fake.state.attempts.lock().unwrap()[0].clone();
    // SIGKILL: no shutdown path runs.
    drop(server);
    let _server = spawn_with(&db, pa, &sets).await;
    fake.state.fail.store(false, Ordering::SeqCst);
    let bodies = || -> Vec<String> {
        fake.pdus()
            .iter()
            .filter(|p| p["type"] == "m.room.message")
            .map(|p| p["content"]["body"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    eventually("5 messages arrived", || bodies().len() >= 5).await;
    actix_web::rt::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(bodies(), ["m0", "m1", "m2", "m3", "m4"], "{backend:?}");
    assert_eq!(fake.state.txns.lock().unwrap()[0].0, first_try);
}

#[actix_web::test]
async fn sqlite_queued_events_survive_kill_9() {
    queued_events_survive_kill_9(Backend::Sqlite).await;
}

#[actix_web::test]
async fn postgres_queued_events_survive_kill_9() {
    queued_events_survive_kill_9(Backend::Postgres).await;
}

/// Registers `name` on `base`: its (user ID, access token).
async fn register(base: &str, name: &str) -> (String, String) {
    let (st, v) = call(
        base,
        "POST",
        "/_matrix/client/v3/register",
        None,
        json!({"username": name, "password": "pw", "auth": {"type": "m.login.dummy"}}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    (
        v["user_id"].as_str().unwrap().to_owned(),
        v["access_token"].as_str().unwrap().to_owned(),
    )
}

/// Two real servers as child processes: a.test sends a stream of messages into a room b.test's
/// user is in; b.test is killed (`kill -9`) mid-stream and the rest are sent while it is down;
/// then a.test is killed too, with its queue for b.test full. Both come back, and b.test's
/// user's `/sync` (resumed with the token from before the stream) has every message, in
/// order, once.
///
/// How a.test finds b.test back: its failed attempts put b.test in backoff (the default
/// `federation.retry_min_interval`, 10 minutes, as Synapse; stored, so a.test's restart
/// keeps it), and b.test coming back does not end it by itself; any signed request b.test makes of a.test does (`Queues::reachable`:
/// an incoming transaction, or routing's `InputServerUp` for any other request), here the
/// transaction of bob's typing, and a.test's queue is sent at once.
async fn federation_survives_kill_9_of_both_servers(backend: Backend) {
    let (da, db) = (TestDb::new(backend).await, TestDb::new(backend).await);
    let (pa, pb) = (free_port(), free_port());
    let sets = |me: &str, other: &str, port: u16| {
        vec![
            format!("server.name={me}"),
            "server.ip_range_denylist=[]".to_owned(),
            format!("federation.test_destinations={{\"{other}\" = \"http://127.0.0.1:{port}\"}}"),
        ]
    };
    let (sets_a, sets_b) = (sets("a.test", "b.test", pb), sets("b.test", "a.test", pa));
    let mut a = spawn_with(&da, pa, &sets_a).await;
    let b = spawn_with(&db, pb, &sets_b).await;
    let (_, alice) = register(&a.base, "alice").await;
    let (bob_id, bob) = register(&b.base, "bob").await;
    let (st, v) = call(
        &a.base,
        "POST",
        "/_matrix/client/v3/createRoom",
        Some(&alice),
        json!({"preset": "public_chat"}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let room = v["room_id"].as_str().unwrap().to_owned();
    let (st, v) = call(
        &b.base,
        "POST",
        &format!("/_matrix/client/v3/join/{}?via=a.test", common::enc(&room)),
        Some(&bob),
        json!({}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let (_, since, _) = sync_once(&b.base, &bob, &room, "")
        .await
        .expect("bob's first sync");

    // 30 messages; b.test is killed after the 10th is acknowledged (transactions to it are
    // then in flight or just done).
    let mut b = Some(b);
    let mut sent = Vec::new();
    for i in 0..30 {
        if i == 10 {
            drop(b.take());
        }
        let (st, v) = call(
            &a.base,
            "PUT",
            &format!(
                "/_matrix/client/v3/rooms/{}/send/m.room.message/k{i}",
                common::enc(&room)
            ),
            Some(&alice),
            json!({"msgtype": "m.text", "body": format!("m{i}")}),
        )
        .await;
        assert_eq!(st, 200, "{v}");
        sent.push(v["event_id"].as_str().unwrap().to_owned());
    }
    // SIGKILL of a.test too, with 20 messages queued for b.test (and perhaps some not yet
    // queued: its federationapi takes the roomserver's stream from its stored offset).
    drop(a);
    let b = spawn_with(&db, pb, &sets_b).await;
    a = spawn_with(&da, pa, &sets_a).await;
    let seen = || async {
        sync_once(&b.base, &bob, &room, &since)
            .await
            .map(|(ids, _, limited)| {
                assert!(!limited, "{backend:?}: a limited timeline");
                ids
            })
            .unwrap_or_default()
    };
    // a.test is backing off from b.test: nothing more arrives by itself (read with
    // `/messages`, which unlike `/sync` sets no presence, so b.test sends a.test nothing).
    actix_web::rt::time::sleep(Duration::from_millis(1500)).await;
    let (st, v) = call(
        &b.base,
        "GET",
        &format!(
            "/_matrix/client/v3/rooms/{}/messages?dir=b&limit=1",
            common::enc(&room)
        ),
        Some(&bob),
        json!({}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    assert_ne!(
        v["chunk"][0]["event_id"].as_str(),
        sent.last().map(String::as_str),
        "{backend:?}: the last message came without b.test reaching a.test"
    );
    // bob types: b.test's transaction to a.test ends a.test's backoff.
    let (st, v) = call(
        &b.base,
        "PUT",
        &format!(
            "/_matrix/client/v3/rooms/{}/typing/{}",
            common::enc(&room),
            common::enc(&bob_id)
        ),
        Some(&bob),
        json!({"typing": true, "timeout": 10000}),
    )
    .await;
    assert_eq!(st, 200, "{v}");
    let mut got = Vec::new();
    for _ in 0..150 {
        got = seen().await;
        if got.len() >= sent.len() {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(got, sent, "{backend:?}: every message, in order, once");
    drop(a);
}

#[actix_web::test]
async fn sqlite_federation_survives_kill_9_of_both_servers() {
    federation_survives_kill_9_of_both_servers(Backend::Sqlite).await;
}

#[actix_web::test]
async fn postgres_federation_survives_kill_9_of_both_servers() {
    federation_survives_kill_9_of_both_servers(Backend::Postgres).await;
}

#[test]
fn bad_config_is_refused_naming_the_key() {
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (&["--set", "server.listen=nowhere"], &[], "server.listen"),
        (&[], &[("MYELIN_DATABASE", "mysql://x")], "database.url"),
        (&["--set", "rate_limit.burst=many"], &[], "rate_limit.burst"),
        (&["--bogus"], &[], "unknown argument"),
    ];
    for (args, env, needle) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_myelin"))
            .args([
                "--config",
                concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml"),
            ])
            .args(*args)
            .envs(env.iter().copied())
            .output()
            .expect("run myelin");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
