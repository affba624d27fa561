//! A fake remote homeserver for federation tests: it publishes a signing key, records the
//! transactions it receives (and can be told to fail or refuse them), serves
//! `/get_missing_events`, `/event` and `/state_ids` from what a test sets (and records every
//! other `GET`); and helpers to build events as its users and push them to a real
//! server's `/send`.

use myelin::federation::client::{ClientSettings, FederationClient, FederationError};
use myelin::federation::keys;
use myelin::net::IpDenylist;
use myelin::signing_key::SigningKey;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// A server name as ruma's type.
pub fn server(name: &str) -> &ruma::ServerName {
    <&ruma::ServerName>::try_from(name).unwrap()
}

// ---------------------------------------------------------------------------------------

/// What the fake `b.test` saw and how it behaves.
#[derive(Default)]
pub struct FakeState {
    /// Transactions answered 200, in the order received: (transaction ID, body).
    pub txns: std::sync::Mutex<Vec<(String, Value)>>,
    /// Every `/send` attempt's transaction ID, answered or failed.
    pub attempts: std::sync::Mutex<Vec<String>>,
    /// While set, `/send` answers 503.
    pub fail: std::sync::atomic::AtomicBool,
    /// While set, `/send` answers 400 (a refusal that retrying does not change).
    pub refuse: std::sync::atomic::AtomicBool,
    /// The events `/get_missing_events` answers with.
    pub missing: std::sync::Mutex<Vec<Value>>,
    /// The `/get_missing_events` request bodies received.
    pub missing_requests: std::sync::Mutex<Vec<Value>>,
    /// The events `/event/{eventId}` serves, by ID (others: 404).
    pub events: std::sync::Mutex<std::collections::HashMap<String, Value>>,
    /// The `/state_ids/{roomId}?event_id=` answers, by event ID (others: 404).
    pub state_ids: std::sync::Mutex<std::collections::HashMap<String, Value>>,
    /// The path and query of every `GET` under `/_matrix/federation` received (`/event`,
    /// `/state_ids`, `/backfill`, ...), in order.
    pub gets: std::sync::Mutex<Vec<String>>,
}

impl FakeState {
    /// A `GET` the other routes do not take: `/event/{eventId}` and `/state_ids` from what
    /// the test set, everything else 404; recorded in `gets`.
    fn answer_get(&self, req: &actix_web::HttpRequest) -> actix_web::HttpResponse {
        use actix_web::HttpResponse;
        let path = req.path().to_owned();
        let query = req.query_string().to_owned();
        self.gets.lock().unwrap().push(format!("{path}?{query}"));
        let not_found = || {
            HttpResponse::NotFound().json(json!({"errcode": "M_NOT_FOUND", "error": "not here"}))
        };
        if req.method() != actix_web::http::Method::GET {
            return not_found();
        }
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .to_string()
        };
        if let Some(id) = path.strip_prefix("/_matrix/federation/v1/event/") {
            return match self.events.lock().unwrap().get(&decode(id)) {
                Some(ev) => HttpResponse::Ok().json(json!({
                    "origin": "b.test",
                    "origin_server_ts": myelin::storage::now_ms(),
                    "pdus": [ev],
                })),
                None => not_found(),
            };
        }
        if path.starts_with("/_matrix/federation/v1/state_ids/") {
            let event_id = query
                .split('&')
                .find_map(|kv| kv.strip_prefix("event_id="))
                .map(decode)
                .unwrap_or_default();
            return match self.state_ids.lock().unwrap().get(&event_id) {
                Some(answer) => HttpResponse::Ok().json(answer),
                None => not_found(),
            };
        }
        not_found()
    }
}

/// A fake homeserver on loopback: publishes its key, records transactions.
pub struct Fake {
    pub name: &'static str,
    pub key: Arc<SigningKey>,
    pub state: Arc<FakeState>,
    pub handle: actix_web::dev::ServerHandle,
    pub _dir: tempfile::TempDir,
}

impl Fake {
    pub async fn start(name: &'static str, port: u16) -> Fake {
        use actix_web::{web, App, HttpResponse, HttpServer};
        let dir = tempfile::tempdir().unwrap();
        let key = Arc::new(SigningKey::load_or_generate(dir.path()).unwrap());
        let state = Arc::new(FakeState::default());
        let (k, st) = (key.clone(), state.clone());
        let server = HttpServer::new(move || {
            let (k, st1, st2, st3) = (k.clone(), st.clone(), st.clone(), st.clone());
            App::new()
                .route(
                    "/_matrix/key/v2/server",
                    web::get().to(move || {
                        let k = k.clone();
                        async move {
                            let until = myelin::storage::now_ms() + 3_600_000;
                            HttpResponse::Ok().json(keys::own_server_keys(
                                server(name),
                                &k,
                                &BTreeMap::new(),
                                until,
                            ))
                        }
                    }),
                )
                .route(
                    "/_matrix/federation/v1/send/{txn}",
                    web::put().to(move |txn: web::Path<String>, body: web::Json<Value>| {
                        let st = st1.clone();
                        async move {
                            st.attempts.lock().unwrap().push(txn.clone());
                            if st.fail.load(std::sync::atomic::Ordering::SeqCst) {
                                return HttpResponse::ServiceUnavailable()
                                    .json(json!({"errcode": "M_UNKNOWN", "error": "down"}));
                            }
                            if st.refuse.load(std::sync::atomic::Ordering::SeqCst) {
                                return HttpResponse::BadRequest()
                                    .json(json!({"errcode": "M_BAD_JSON", "error": "no"}));
                            }
                            st.txns.lock().unwrap().push((txn.into_inner(), body.0));
                            HttpResponse::Ok().json(json!({"pdus": {}}))
                        }
                    }),
                )
                .route(
                    "/_matrix/federation/v1/get_missing_events/{room}",
                    web::post().to(move |body: web::Json<Value>| {
                        let st = st2.clone();
                        async move {
                            st.missing_requests.lock().unwrap().push(body.0);
                            let events = st.missing.lock().unwrap().clone();
                            HttpResponse::Ok().json(json!({ "events": events }))
                        }
                    }),
                )
                .default_service(web::to(move |req: actix_web::HttpRequest| {
                    let st = st3.clone();
                    async move { st.answer_get(&req) }
                }))
        })
        .workers(1)
        .disable_signals()
        .bind(("127.0.0.1", port))
        .unwrap()
        .run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        Fake {
            name,
            key,
            state,
            handle,
            _dir: dir,
        }
    }

    /// A federation client signing as this server, reaching `a.test` at `a_url`.
    pub fn client(&self, a_url: String) -> FederationClient {
        FederationClient::new(ClientSettings {
            server_name: self.name.try_into().unwrap(),
            key: self.key.clone(),
            denylist: Arc::new(IpDenylist::default()),
            verify_tls: true,
            ca_file: String::new(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(60),
            max_response_bytes: 1 << 20,
            test_destinations: BTreeMap::from([("a.test".to_owned(), a_url)]),
        })
        .unwrap()
    }

    /// Every PDU received in answered transactions, in order.
    pub fn pdus(&self) -> Vec<Value> {
        self.state
            .txns
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(_, body)| body["pdus"].as_array().cloned().unwrap_or_default())
            .collect()
    }
}

/// Waits (up to 30 s) until `f` holds.
pub async fn eventually(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..300 {
        if f() {
            return;
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting until {what}");
}

/// The room as `a.test` stores it, read through `/sync` in federation format: (room
/// version, the last event's ID and depth, current state (type, state key) -> event ID).
pub async fn room_tip(
    client: &awc::Client,
    base: &str,
    token: &str,
    room: &str,
) -> (String, String, u64, BTreeMap<(String, String), String>) {
    let filter = super::enc(r#"{"event_format":"federation","room":{"timeline":{"limit":100}}}"#);
    let mut resp = client
        .get(format!("{base}/_matrix/client/v3/sync?filter={filter}"))
        .insert_header(("Authorization", format!("Bearer {token}")))
        .send()
        .await
        .expect("sync");
    assert_eq!(resp.status().as_u16(), 200);
    let sync: Value = resp
        .json()
        .limit(16 * 1024 * 1024)
        .await
        .expect("sync body");
    let joined = &sync["rooms"]["join"][room];
    let mut state = BTreeMap::new();
    let mut events: Vec<Value> = joined["state"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let timeline = joined["timeline"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    events.extend(timeline.iter().cloned());
    for ev in &events {
        if let Some(key) = ev["state_key"].as_str() {
            state.insert(
                (ev["type"].as_str().unwrap().to_owned(), key.to_owned()),
                ev["event_id"].as_str().unwrap().to_owned(),
            );
        }
    }
    let last = timeline
        .last()
        .unwrap_or_else(|| panic!("no timeline: {joined}"));
    let create = events
        .iter()
        .find(|e| e["type"] == "m.room.create")
        .unwrap_or_else(|| panic!("no create event: {joined}"));
    let version = create["content"]["room_version"]
        .as_str()
        .unwrap_or("1")
        .to_owned();
    (
        version,
        last["event_id"].as_str().unwrap().to_owned(),
        last["depth"].as_u64().unwrap(),
        state,
    )
}

/// An event of `sender` (a user of `fake`) into `room` on `a.test`, after `prev` at `depth`,
/// authorized by the state entries named: (event ID, PDU).
#[allow(clippy::too_many_arguments)]
pub fn remote_event(
    fake: &Fake,
    version: &str,
    room: &str,
    sender: &str,
    event_type: &str,
    state_key: Option<&str>,
    content: Value,
    prev: &str,
    depth: u64,
    auth: Vec<String>,
) -> (String, Value) {
    let pdu = myelin::pdu::PduBuilder {
        room_version: version.try_into().unwrap(),
        room_id: Some(room.try_into().unwrap()),
        sender: sender.try_into().unwrap(),
        event_type: event_type.into(),
        state_key: state_key.map(str::to_owned),
        content,
        redacts: None,
        prev_events: vec![prev.try_into().unwrap()],
        auth_events: auth
            .iter()
            .map(|a| a.as_str().try_into().unwrap())
            .collect(),
        reference_hashes: Default::default(),
        depth: ruma::UInt::new(depth).unwrap(),
        origin_server_ts: ruma::MilliSecondsSinceUnixEpoch::now(),
    }
    .build(&fake.key, server(fake.name))
    .unwrap();
    (
        pdu.event_id.to_string(),
        serde_json::to_value(&pdu.json).unwrap(),
    )
}

/// The auth events of an event by `sender` in a room with `state`: a join's, or with
/// `join = false` any other event's (v12 rooms leave out the create event).
pub fn auth_of(
    version: &str,
    state: &BTreeMap<(String, String), String>,
    sender: &str,
    join: bool,
) -> Vec<String> {
    let mut keys = vec![("m.room.power_levels", ""), ("m.room.member", sender)];
    if join {
        keys.push(("m.room.join_rules", ""));
    }
    if version != "12" {
        keys.insert(0, ("m.room.create", ""));
    }
    keys.iter()
        .filter_map(|(t, k)| state.get(&((*t).to_owned(), (*k).to_owned())).cloned())
        .collect()
}

/// PUTs a transaction of PDUs to `a.test` as `fake`; its answer.
pub async fn put_txn(
    client: &FederationClient,
    txn_id: &str,
    origin: &str,
    pdus: Vec<Value>,
) -> Result<Value, FederationError> {
    put_txn_with(client, txn_id, origin, pdus, Vec::new()).await
}

/// PUTs a transaction of PDUs and EDUs to `a.test` as `fake`; its answer.
pub async fn put_txn_with(
    client: &FederationClient,
    txn_id: &str,
    origin: &str,
    pdus: Vec<Value>,
    edus: Vec<Value>,
) -> Result<Value, FederationError> {
    client
        .json(
            http::Method::PUT,
            server("a.test"),
            &format!("/_matrix/federation/v1/send/{txn_id}"),
            Some(&json!({
                "origin": origin,
                "origin_server_ts": myelin::storage::now_ms(),
                "pdus": pdus,
                "edus": edus,
            })),
            true,
            None,
        )
        .await
}
