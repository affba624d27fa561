//! History visibility end to end: the one rule (`myelin::history_visibility`) behind every
//! read that returns a room's events or state to a user: `/event`, `/context`, `/messages`,
//! `/sync` (the syncapi) and `/members?at=`, `/timestamp_to_event` (the roomserver), on both
//! databases, with the components in-process and behind the HTTP bridge.

mod common;

use common::{assert_error, create, Backend, TestServer, Topology};
use serde_json::{json, Value};
use std::time::Duration;

const C: &str = "/_matrix/client/v3";

/// A moment between two events, so their timestamps differ.
async fn tick() {
    actix_web::rt::time::sleep(Duration::from_millis(5)).await;
}

/// Sends a message; its event ID and origin_server_ts.
async fn say(s: &TestServer, tok: &str, room: &str, body: &str) -> (String, u64) {
    let (st, v) = s
        .put(
            &format!("{C}/rooms/{room}/send/m.room.message/{body}"),
            Some(tok),
            json!({"msgtype": "m.text", "body": body}),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let id = v["event_id"].as_str().unwrap().to_owned();
    let (st, e) = s
        .get(&format!("{C}/rooms/{room}/event/{id}"), Some(tok))
        .await;
    assert_eq!(st, 200, "{e}");
    (id, e["origin_server_ts"].as_u64().unwrap())
}

async fn member(s: &TestServer, tok: &str, room: &str, action: &str) {
    let (st, v) = s
        .post(&format!("{C}/rooms/{room}/{action}"), Some(tok), json!({}))
        .await;
    assert_eq!(st, 200, "{action}: {v}");
}

async fn set_visibility(s: &TestServer, tok: &str, room: &str, content: Value) {
    let (st, v) = s
        .put(
            &format!("{C}/rooms/{room}/state/m.room.history_visibility/"),
            Some(tok),
            content,
        )
        .await;
    assert_eq!(st, 200, "{v}");
}

/// A sync token of now (`next_batch` of an initial sync).
async fn now(s: &TestServer, tok: &str) -> String {
    let (st, v) = s.get(&format!("{C}/sync?timeout=0"), Some(tok)).await;
    assert_eq!(st, 200, "{v}");
    v["next_batch"].as_str().unwrap().to_owned()
}

fn ids(events: &Value) -> Vec<String> {
    events
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["event_id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Whether `/rooms/{room}/event/{id}` gives the event to the user (else a 404).
async fn sees(s: &TestServer, tok: &str, room: &str, id: &str) -> bool {
    let got = s
        .get(&format!("{C}/rooms/{room}/event/{id}"), Some(tok))
        .await;
    match got.0 {
        200 => true,
        _ => {
            assert_error(&got, 404, "M_NOT_FOUND");
            false
        }
    }
}

/// The event IDs `/messages` gives the user, newest first (one page of 100).
async fn messages(s: &TestServer, tok: &str, room: &str) -> Vec<String> {
    let (st, v) = s
        .get(
            &format!("{C}/rooms/{room}/messages?dir=b&limit=100"),
            Some(tok),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    ids(&v["chunk"])
}

/// The event IDs of the user's initial sync timeline of a room.
async fn sync_timeline(s: &TestServer, tok: &str, room: &str) -> Vec<String> {
    let filter = json!({"room": {"include_leave": true, "timeline": {"limit": 100}}}).to_string();
    let (st, v) = s
        .get(
            &format!("{C}/sync?timeout=0&filter={}", common::enc(&filter)),
            Some(tok),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let rooms = &v["rooms"];
    let room = if rooms["join"][room].is_object() {
        &rooms["join"][room]
    } else {
        &rooms["leave"][room]
    };
    ids(&room["timeline"]["events"])
}

/// `/timestamp_to_event`'s answer (status, event ID).
async fn by_time(s: &TestServer, tok: &str, room: &str, dir: &str, ts: u64) -> (u16, String) {
    let (st, v) = s
        .get(
            &format!("/_matrix/client/v1/rooms/{room}/timestamp_to_event?dir={dir}&ts={ts}"),
            Some(tok),
        )
        .await;
    (st, v["event_id"].as_str().unwrap_or_default().to_owned())
}

/// The state keys of `/members?at=`, or the error.
async fn members_at(
    s: &TestServer,
    tok: &str,
    room: &str,
    at: &str,
) -> Result<Vec<String>, (u16, Value)> {
    let got = s
        .get(&format!("{C}/rooms/{room}/members?at={at}"), Some(tok))
        .await;
    if got.0 != 200 {
        return Err(got);
    }
    let mut keys: Vec<String> = got.1["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state_key"].as_str().unwrap().to_owned())
        .collect();
    keys.sort();
    Ok(keys)
}

/// `shared`: whoever joins at any point after an event sees it, also once they left again;
/// nothing from after their leave.
async fn shared_history_reaches_who_joined_later(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &[]).await;
    let (alice, tok, _) = s.register("alice", "pw").await;
    let (_, bob_tok, _) = s.register("bob", "pw").await;
    let (_, carol_tok, _) = s.register("carol", "pw").await;
    let room = create(&s, &tok, json!({"preset": "public_chat"})).await;
    let (early, early_ts) = say(&s, &tok, &room, "early").await;
    let before_bob = now(&s, &tok).await;
    tick().await;
    member(&s, &bob_tok, &room, "join").await;
    member(&s, &bob_tok, &room, "leave").await;
    tick().await;
    let (late, late_ts) = say(&s, &tok, &room, "late").await;
    member(&s, &carol_tok, &room, "join").await;
    let after_carol = now(&s, &tok).await;

    // Bob joined after `early` (and left): he sees it, not what came after his leave.
    assert!(sees(&s, &bob_tok, &room, &early).await);
    assert!(!sees(&s, &bob_tok, &room, &late).await);
    let seen = messages(&s, &bob_tok, &room).await;
    assert!(seen.contains(&early) && !seen.contains(&late), "{seen:?}");
    let (st, v) = s
        .get(&format!("{C}/rooms/{room}/context/{early}"), Some(&bob_tok))
        .await;
    assert_eq!(st, 200, "{v}");
    assert!(!ids(&v["events_after"]).contains(&late), "{v}");
    assert!(sync_timeline(&s, &bob_tok, &room).await.contains(&early));

    // The roomserver's reads: the members as of before his join (he joined later, even
    // though he left since), not as of after his leave (carol's join is none of his).
    assert_eq!(
        members_at(&s, &bob_tok, &room, &before_bob).await.unwrap(),
        [alice.as_str()]
    );
    let got = members_at(&s, &bob_tok, &room, &after_carol).await;
    assert!(matches!(&got, Err((403, _))), "{got:?}");

    // Carol joined after both: she finds both by time.
    assert_eq!(
        by_time(&s, &carol_tok, &room, "b", early_ts).await,
        (200, early.clone())
    );
    assert_eq!(
        by_time(&s, &carol_tok, &room, "f", late_ts).await,
        (200, late.clone())
    );
    assert!(sees(&s, &carol_tok, &room, &early).await);
    let seen = messages(&s, &carol_tok, &room).await;
    assert!(seen.contains(&early) && seen.contains(&late), "{seen:?}");

    s.stop().await;
}

/// `joined`: nothing from before the user's join, through any read.
async fn joined_history_stays_hidden_before_the_join(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &[]).await;
    let (alice, tok, _) = s.register("alice", "pw").await;
    let (_, bob_tok, _) = s.register("bob", "pw").await;
    let room = create(&s, &tok, json!({"preset": "public_chat", "initial_state": [
        {"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "joined"}}
    ]}))
    .await;
    let (secret, secret_ts) = say(&s, &tok, &room, "secret").await;
    let before_bob = now(&s, &tok).await;
    tick().await;
    member(&s, &bob_tok, &room, "join").await;
    let (open, _) = say(&s, &tok, &room, "open").await;

    assert!(!sees(&s, &bob_tok, &room, &secret).await);
    assert!(sees(&s, &bob_tok, &room, &open).await);
    let seen = messages(&s, &bob_tok, &room).await;
    assert!(!seen.contains(&secret) && seen.contains(&open), "{seen:?}");
    assert_error(
        &s.get(
            &format!("{C}/rooms/{room}/context/{secret}"),
            Some(&bob_tok),
        )
        .await,
        404,
        "M_NOT_FOUND",
    );
    let (st, v) = s
        .get(&format!("{C}/rooms/{room}/context/{open}"), Some(&bob_tok))
        .await;
    assert_eq!(st, 200, "{v}");
    assert!(!ids(&v["events_before"]).contains(&secret), "{v}");
    let timeline = sync_timeline(&s, &bob_tok, &room).await;
    assert!(!timeline.contains(&secret) && timeline.contains(&open));

    // The members as of before his join: a point he could not see.
    let got = members_at(&s, &bob_tok, &room, &before_bob).await;
    assert!(matches!(&got, Err((403, _))), "{got:?}");
    // Alice could.
    assert_eq!(
        members_at(&s, &tok, &room, &before_bob).await.unwrap(),
        [alice.as_str()]
    );

    // By time: the secret is passed over; what is found instead is an event bob may see.
    for dir in ["b", "f"] {
        let (st, found) = by_time(&s, &bob_tok, &room, dir, secret_ts).await;
        assert_eq!(st, 200, "{dir}");
        assert_ne!(found, secret, "{dir}");
        assert!(sees(&s, &bob_tok, &room, &found).await, "{dir}: {found}");
    }
    assert_eq!(
        by_time(&s, &tok, &room, "b", secret_ts).await,
        (200, secret)
    );

    s.stop().await;
}

/// A setting that cannot be read counts as `joined`; an unknown one as `shared`.
async fn unreadable_settings_fail_closed(b: Backend, t: Topology) {
    let s = TestServer::start(b, t, &[]).await;
    let (_, tok, _) = s.register("alice", "pw").await;
    let (_, bob_tok, _) = s.register("bob", "pw").await;
    let (_, carol_tok, _) = s.register("carol", "pw").await;
    let room = create(&s, &tok, json!({"preset": "public_chat"})).await;
    set_visibility(&s, &tok, &room, json!({"history_visibility": 5})).await;
    let (hidden, hidden_ts) = say(&s, &tok, &room, "hidden").await;
    let before_bob = now(&s, &tok).await;
    tick().await;
    member(&s, &bob_tok, &room, "join").await;
    assert!(!sees(&s, &bob_tok, &room, &hidden).await);
    assert!(!messages(&s, &bob_tok, &room).await.contains(&hidden));
    assert_error(
        &s.get(
            &format!("{C}/rooms/{room}/context/{hidden}"),
            Some(&bob_tok),
        )
        .await,
        404,
        "M_NOT_FOUND",
    );
    assert!(!sync_timeline(&s, &bob_tok, &room).await.contains(&hidden));
    let got = members_at(&s, &bob_tok, &room, &before_bob).await;
    assert!(matches!(&got, Err((403, _))), "{got:?}");
    let (_, found) = by_time(&s, &bob_tok, &room, "b", hidden_ts).await;
    assert_ne!(found, hidden);

    // An unknown value: shared, so carol, who joins later, sees what was sent under it.
    set_visibility(&s, &tok, &room, json!({"history_visibility": "someday"})).await;
    let (shared, shared_ts) = say(&s, &tok, &room, "shared").await;
    tick().await;
    member(&s, &carol_tok, &room, "join").await;
    assert!(sees(&s, &carol_tok, &room, &shared).await);
    assert!(!sees(&s, &carol_tok, &room, &hidden).await);
    assert_eq!(
        by_time(&s, &carol_tok, &room, "b", shared_ts).await,
        (200, shared.clone())
    );
    let seen = messages(&s, &carol_tok, &room).await;
    assert!(
        seen.contains(&shared) && !seen.contains(&hidden),
        "{seen:?}"
    );
    s.stop().await;
}

scenarios!(
    shared_history_reaches_who_joined_later,
    joined_history_stays_hidden_before_the_join,
    unreadable_settings_fail_closed
);
