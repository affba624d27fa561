//! Test harness: real nodes on loopback (port 0), on SQLite or PostgreSQL, with the userapi
//! in-process or on a second node behind the HTTP bridge.
#![allow(dead_code)]

pub mod certs;
pub mod child;
pub mod remote;
pub mod synapse;

use myelin::config::Config;
use myelin::server::Node;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU32, Ordering};

#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone, Copy, Debug)]
pub enum Topology {
    /// The userapi runs in the same node as the client API.
    Local,
    /// The userapi runs on a second node, reached over the HTTP bridge.
    Bridged,
}

/// A free loopback port for a server that must know its port before it starts (a server
/// name, another server's destination table, Synapse). Taken below Linux's ephemeral range
/// (32768 and up), where the nodes' own port-0 listeners never land, so a port reserved here
/// and bound a moment later cannot be taken in between by one of them; a counter keeps this
/// process's reservations apart, and each is checked free by binding it.
pub fn reserve_port() -> u16 {
    use std::sync::atomic::AtomicU16;
    const LOW: u16 = 10_000;
    const SPAN: u16 = 22_000;
    static NEXT: AtomicU16 = AtomicU16::new(0);
    // Test binaries run one after another: each starts elsewhere in the range.
    let start = (std::process::id() % u32::from(SPAN)) as u16;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = LOW + (start.wrapping_add(n) % SPAN);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between {LOW} and {}", LOW + SPAN);
}

pub fn postgres_admin_url() -> String {
    std::env::var("MYELIN_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A database for one test; PostgreSQL ones are dropped at the end.
pub struct TestDb {
    pub url: String,
    pub dir: tempfile::TempDir,
    pg_name: Option<String>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        let dir = tempfile::tempdir().expect("tempdir");
        match backend {
            Backend::Sqlite => TestDb {
                url: format!("sqlite:{}", dir.path().join("myelin.db").display()),
                dir,
                pg_name: None,
            },
            Backend::Postgres => {
                let name = format!(
                    "myelin_it_{}_{}",
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::SeqCst)
                );
                admin(&format!("CREATE DATABASE {name}")).await;
                let admin_url = postgres_admin_url();
                let base = admin_url
                    .rsplit_once('/')
                    .map(|(b, _)| b.to_owned())
                    .unwrap_or(admin_url);
                TestDb {
                    url: format!("{base}/{name}"),
                    dir,
                    pg_name: Some(name),
                }
            }
        }
    }
}

async fn admin(sql: &str) {
    let (client, conn) = tokio_postgres::connect(&postgres_admin_url(), tokio_postgres::NoTls)
        .await
        .expect("PostgreSQL must be running for the tests (see README)");
    actix_web::rt::spawn(conn);
    client.batch_execute(sql).await.expect(sql);
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(name) = self.pg_name.take() {
            let url = postgres_admin_url();
            std::thread::spawn(move || {
                let mut c = match postgres_blocking(&url) {
                    Some(c) => c,
                    None => return,
                };
                let _ = c.block_on(name);
            })
            .join()
            .ok();
        }
    }
}

/// Drops a test database from a plain thread (Drop cannot await).
fn postgres_blocking(url: &str) -> Option<Dropper> {
    Some(Dropper {
        url: url.to_owned(),
    })
}

struct Dropper {
    url: String,
}

impl Dropper {
    fn block_on(&mut self, name: String) -> Option<()> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(async {
            let (c, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
                .await
                .ok()?;
            tokio::spawn(conn);
            c.batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await
                .ok()
        })
    }
}

/// The secret the nodes of a bridged test deployment share.
pub const INTERNAL_SECRET: &str =
    "components.internal_secret=test-secret-0123456789abcdef0123456789";

/// The config of a test node: loopback, port 0, cheap password hashing, no rate limits.
pub fn test_config(db_url: &str, data_dir: &std::path::Path, extra: &[&str]) -> Config {
    let mut sets: Vec<String> = vec![
        "server.name=test.local".into(),
        "server.listen=127.0.0.1:0".into(),
        "server.workers=1".into(),
        "metrics.listen=127.0.0.1:0".into(),
        "auth.argon2_memory_kib=64".into(),
        "auth.argon2_iterations=1".into(),
        "auth.hasher_threads=1".into(),
        "rate_limit.enabled=false".into(),
        "database.pool_size=4".into(),
        format!("database.url={db_url}"),
        format!("server.data_dir={}", data_dir.display()),
    ];
    sets.extend(extra.iter().map(|s| s.to_string()));
    Config::load(None, |_| None, &sets).expect("test config")
}

/// A running test server: the client-facing node, plus the userapi node when bridged.
/// The URL the tests reach a node's client API at: its plain-HTTP listener (the client
/// listener, or `server.http_listen` beside an HTTPS one).
fn base_of(node: &Node) -> String {
    format!("http://{}", node.http_addr.unwrap_or(node.client_addr))
}

pub struct TestServer {
    pub node: Option<Node>,
    pub userapi_node: Option<Node>,
    pub base: String,
    pub db: TestDb,
    pub client: awc::Client,
    pub backend: Backend,
    pub topology: Topology,
    extra: Vec<String>,
}

impl TestServer {
    pub async fn start(backend: Backend, topology: Topology, extra: &[&str]) -> TestServer {
        let db = TestDb::new(backend).await;
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let (node, userapi_node) = Self::start_nodes(&db, topology, &extra).await;
        TestServer {
            base: base_of(&node),
            node: Some(node),
            userapi_node,
            db,
            client: awc::Client::builder()
                .timeout(std::time::Duration::from_secs(60))
                .finish(),
            backend,
            topology,
            extra,
        }
    }

    async fn start_nodes(
        db: &TestDb,
        topology: Topology,
        extra: &[String],
    ) -> (Node, Option<Node>) {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        match topology {
            Topology::Local => {
                let node = Node::start(test_config(&db.url, db.dir.path(), &extra))
                    .await
                    .expect("start node");
                (node, None)
            }
            Topology::Bridged => {
                let mut u_extra = extra.clone();
                u_extra.push("components.internal_listen=127.0.0.1:0");
                u_extra.push(INTERNAL_SECRET);
                // The routing node takes the client listener the test asked for.
                u_extra.push("server.listen=127.0.0.1:0");
                u_extra.push("federation.listen=");
                let unode = Node::start(test_config(&db.url, db.dir.path(), &u_extra))
                    .await
                    .expect("start userapi node");
                let internal = unode.internal_addr.expect("internal listener");
                let remote = format!("components.userapi=http://{internal}");
                let remote_rs = format!("components.roomserver=http://{internal}");
                let remote_sync = format!("components.syncapi=http://{internal}");
                let remote_fed = format!("components.federationapi=http://{internal}");
                let mut c_extra = extra.clone();
                c_extra.push(INTERNAL_SECRET);
                c_extra.push(&remote);
                c_extra.push(&remote_rs);
                c_extra.push(&remote_sync);
                c_extra.push(&remote_fed);
                // The routing node has no database: point it at nowhere to prove it.
                let node = Node::start(test_config(
                    "sqlite:/nonexistent/never-opened.db",
                    db.dir.path(),
                    &c_extra,
                ))
                .await
                .expect("start routing node");
                (node, Some(unode))
            }
        }
    }

    /// Stops every node and starts fresh ones on the same database.
    pub async fn restart(&mut self) {
        self.halt().await;
        self.resume().await;
    }

    /// Stops every node, keeping the database: the server is down until [`Self::resume`].
    pub async fn halt(&mut self) {
        if let Some(n) = self.node.take() {
            n.stop().await;
        }
        if let Some(n) = self.userapi_node.take() {
            n.stop().await;
        }
    }

    /// Starts fresh nodes on the database of a halted server (same settings, same ports).
    pub async fn resume(&mut self) {
        let (node, unode) = Self::start_nodes(&self.db, self.topology, &self.extra).await;
        self.base = base_of(&node);
        self.node = Some(node);
        self.userapi_node = unode;
    }

    pub fn metrics_base(&self) -> String {
        format!(
            "http://{}",
            self.node
                .as_ref()
                .unwrap()
                .metrics_addr
                .expect("metrics listener")
        )
    }

    /// Sends a request to the client listener; returns status and JSON body (Null if none).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}{}", self.base, path);
        let mut req = self.client.request(method.parse().unwrap(), url);
        if let Some(t) = token {
            req = req.insert_header(("Authorization", format!("Bearer {t}")));
        }
        let mut resp = match body {
            Some(b) => req.send_json(&b).await,
            None => req.send().await,
        }
        .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let bytes = resp.body().limit(16 * 1024 * 1024).await.expect("body");
        let json = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        (resp.status().as_u16(), json)
    }

    /// Sends raw bytes as the body.
    pub async fn call_raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Vec<u8>,
    ) -> (u16, Value) {
        let url = format!("{}{}", self.base, path);
        let mut req = self
            .client
            .request(method.parse().unwrap(), url)
            .insert_header(("Content-Type", "application/json"));
        if let Some(t) = token {
            req = req.insert_header(("Authorization", format!("Bearer {t}")));
        }
        let mut resp = req.send_body(body).await.expect("send");
        let bytes = resp.body().limit(16 * 1024 * 1024).await.expect("body");
        (
            resp.status().as_u16(),
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (u16, Value) {
        self.call("GET", path, token, None).await
    }
    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        self.call("POST", path, token, Some(body)).await
    }
    pub async fn put(&self, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
        self.call("PUT", path, token, Some(body)).await
    }

    /// Registers a user through the dummy flow; returns (user_id, access_token, device_id).
    pub async fn register(&self, username: &str, password: &str) -> (String, String, String) {
        let (status, body) = self
            .post(
                "/_matrix/client/v3/register",
                None,
                json!({"username": username, "password": password, "auth": {"type": "m.login.dummy"}}),
            )
            .await;
        assert_eq!(status, 200, "register {username}: {body}");
        (
            body["user_id"].as_str().unwrap().to_owned(),
            body["access_token"].as_str().unwrap().to_owned(),
            body["device_id"].as_str().unwrap().to_owned(),
        )
    }

    /// Logs in with a password; returns (status, body).
    pub async fn login(&self, user: &str, password: &str) -> (u16, Value) {
        self.post(
            "/_matrix/client/v3/login",
            None,
            json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": user}, "password": password}),
        )
        .await
    }

    pub async fn stop(mut self) {
        if let Some(n) = self.node.take() {
            n.stop().await;
        }
        if let Some(n) = self.userapi_node.take() {
            n.stop().await;
        }
    }
}

/// Asserts a Matrix error: status and errcode.
#[track_caller]
pub fn assert_error(got: &(u16, Value), status: u16, errcode: &str) {
    assert_eq!(got.0, status, "status of {}", got.1);
    assert_eq!(got.1["errcode"], errcode, "errcode of {}", got.1);
    assert!(got.1["error"].is_string(), "error message in {}", got.1);
}

/// Generates one test per scenario for each database and topology.
#[macro_export]
macro_rules! scenarios {
    ($($name:ident),+ $(,)?) => {
        mod sqlite_local { $( #[actix_web::test] async fn $name() { super::$name($crate::common::Backend::Sqlite, $crate::common::Topology::Local).await } )+ }
        mod sqlite_bridged { $( #[actix_web::test] async fn $name() { super::$name($crate::common::Backend::Sqlite, $crate::common::Topology::Bridged).await } )+ }
        mod postgres_local { $( #[actix_web::test] async fn $name() { super::$name($crate::common::Backend::Postgres, $crate::common::Topology::Local).await } )+ }
        mod postgres_bridged { $( #[actix_web::test] async fn $name() { super::$name($crate::common::Backend::Postgres, $crate::common::Topology::Bridged).await } )+ }
    };
}

/// A path segment percent-encoded (user IDs, room IDs, event IDs in URLs).
pub fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// Creates a room as `token` with the `createRoom` body given; its room ID.
pub async fn create(s: &TestServer, token: &str, body: Value) -> String {
    let (st, v) = s
        .post("/_matrix/client/v3/createRoom", Some(token), body)
        .await;
    assert_eq!(st, 200, "{v}");
    v["room_id"].as_str().unwrap().to_owned()
}
