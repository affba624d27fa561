//! A real Matrix client library drives myelin end to end: `tests/e2e/js/js_clients.mjs` runs
//! two matrix-js-sdk clients (from npm, in Node, without end-to-end encryption) against a test
//! server on each database. They register, start syncing (`startClient` until the `PREPARED`
//! sync state), create a room, invite, join, exchange messages, see each other's typing and
//! read receipts, and bob sees alice's display name change in the room, all through the sdk's
//! own events. The same scenario runs across two myelin servers that federate (alice on one,
//! bob on the other), with each seeing the other's display name on their member event.
//!
//! The matrix-js-sdk version pinned in `tests/e2e/js/package-lock.json` is installed with
//! `npm ci` into `$HOME/.cache/myelin/node-js-sdk` on first use, and again whenever the lock
//! file changes. Node 20 or later with npm is required: without them these tests fail, they do
//! not skip. `JS_TRACE=1` makes the script log every HTTP request the sdk makes.

mod common;

use common::child::run;
use common::{Backend, TestServer, Topology};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

/// The oldest Node major version the pinned matrix-js-sdk supports (its `engines.node`).
const NODE_MAJOR: u32 = 20;
/// How long the script may run before it is killed (it bounds itself to 120 s).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(150);
/// How long `npm ci` may take.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);

const JS_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/js");
const SCRIPT_NAME: &str = "js_clients.mjs";
/// The copy of the lock file `npm ci` last installed successfully, in the cache directory.
const INSTALLED_LOCK: &str = ".installed-package-lock.json";

/// Checks that `node` (at least [`NODE_MAJOR`]) and `npm` can be run.
fn check_node() -> Result<(), String> {
    let version = |tool: &str| -> Result<String, String> {
        match Command::new(tool)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
        {
            Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).trim().to_owned()),
            Ok(o) => Err(format!("{tool} --version failed: {o:?}")),
            Err(e) => Err(format!(
                "{tool} is required for the matrix-js-sdk end-to-end test and cannot be run ({e}): \
                 install Node.js {NODE_MAJOR} or later with npm (from nodejs.org or NodeSource: \
                 older distributions package an older Node)"
            )),
        }
    };
    let node = version("node")?;
    let major = node
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok());
    match major {
        Some(m) if m >= NODE_MAJOR => {}
        _ => {
            return Err(format!(
                "node {node} is too old or unrecognised: the matrix-js-sdk end-to-end test needs \
                 Node.js {NODE_MAJOR} or later"
            ))
        }
    }
    version("npm")?;
    Ok(())
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("reading {}: {e}", path.display()))
}

fn write(path: &Path, contents: &[u8]) -> Result<(), String> {
    std::fs::write(path, contents).map_err(|e| format!("writing {}: {e}", path.display()))
}

/// The cache directory with the pinned matrix-js-sdk in its node_modules; runs `npm ci` there
/// when what it last installed is not the repository's lock file.
fn install_sdk() -> Result<PathBuf, String> {
    check_node()?;
    let home = std::env::var_os("HOME").ok_or("HOME is not set: cannot place the npm cache")?;
    let dir = Path::new(&home).join(".cache/myelin/node-js-sdk");
    let src = Path::new(JS_DIR);
    let lock = read(&src.join("package-lock.json"))?;
    let manifest = read(&src.join("package.json"))?;
    let installed = dir.join(INSTALLED_LOCK);
    let up_to_date = std::fs::read(&installed).is_ok_and(|l| l == lock)
        && std::fs::read(dir.join("package.json")).is_ok_and(|m| m == manifest)
        && dir.join("node_modules/matrix-js-sdk/package.json").exists();
    if up_to_date {
        return Ok(dir);
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    // The marker goes first and comes back last: an interrupted install is redone.
    let _ = std::fs::remove_file(&installed);
    write(&dir.join("package.json"), &manifest)?;
    write(&dir.join("package-lock.json"), &lock)?;
    let mut cmd = Command::new("npm");
    cmd.args([
        "ci",
        "--no-audit",
        "--no-fund",
        "--engine-strict",
        "--loglevel=error",
    ])
    .current_dir(&dir);
    let o = run(cmd, "npm ci", INSTALL_TIMEOUT);
    if !o.success() {
        return Err(format!(
            "{}\n(npm needs to reach its registry the first time)",
            o.describe(&format!("npm ci in {}", dir.display()), INSTALL_TIMEOUT)
        ));
    }
    if !dir.join("node_modules/matrix-js-sdk/package.json").exists() {
        return Err(format!(
            "npm ci in {} succeeded but left no node_modules/matrix-js-sdk",
            dir.display()
        ));
    }
    write(&installed, &lock)?;
    Ok(dir)
}

/// The installed cache directory, made once per test binary (parallel tests wait for it).
fn sdk_dir() -> PathBuf {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match DIR.get_or_init(install_sdk) {
        Ok(d) => d.clone(),
        Err(e) => panic!("no matrix-js-sdk installation for the end-to-end test: {e}"),
    }
}

/// Copies the script next to the cache's node_modules, so its imports resolve there; returns
/// the copy's path. Each test gets its own copy, so parallel tests never see a half-written one.
fn place_script(dir: &Path) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let script = read(&Path::new(JS_DIR).join(SCRIPT_NAME)).unwrap_or_else(|e| panic!("{e}"));
    let name = format!(
        "js_clients.{}.{}.mjs",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    );
    let path = dir.join(name);
    write(&path, &script).unwrap_or_else(|e| panic!("{e}"));
    path
}

/// Runs the js-sdk script with alice on `base` and bob on `bob_base`, and asserts it
/// succeeds.
async fn run_script(backend: Backend, what: &str, base: String, bob_base: String) {
    let dir = actix_web::rt::task::spawn_blocking(sdk_dir)
        .await
        .unwrap_or_else(|e| panic!("installing matrix-js-sdk: {e}"));
    let script = place_script(&dir);
    // The servers are served by this thread's runtime: run Node on a blocking thread.
    let run_script = script.clone();
    let out = actix_web::rt::task::spawn_blocking(move || {
        let mut cmd = Command::new("node");
        cmd.arg(&run_script)
            .arg(base)
            .arg(bob_base)
            .current_dir(&dir);
        run(cmd, SCRIPT_NAME, SCRIPT_TIMEOUT)
    })
    .await
    .expect("the thread running js_clients.mjs");
    let _ = std::fs::remove_file(&script);
    assert!(
        out.success(),
        "matrix-js-sdk against {what} on {backend:?}: {}",
        out.describe(SCRIPT_NAME, SCRIPT_TIMEOUT)
    );
    if !out.stderr.trim().is_empty() {
        eprintln!("{backend:?} (stderr):\n{}", out.stderr.trim_end());
    }
    println!("{backend:?}: {}", out.stdout.trim());
}

/// Runs the js-sdk script against a fresh server on `backend` and asserts it succeeds.
async fn js_clients(backend: Backend) {
    let s = TestServer::start(backend, Topology::Local, &[]).await;
    run_script(backend, "myelin", s.base.clone(), s.base.clone()).await;
    s.stop().await;
}

/// A federating test server `name` on `port`, reaching `other` at `other_port`.
async fn federating(
    backend: Backend,
    name: &str,
    port: u16,
    other: &str,
    other_port: u16,
) -> TestServer {
    let sets = [
        format!("server.name={name}"),
        format!("server.listen=127.0.0.1:{port}"),
        "server.ip_range_denylist=[]".to_owned(),
        format!("federation.test_destinations={{\"{other}\" = \"http://127.0.0.1:{other_port}\"}}"),
    ];
    let sets: Vec<&str> = sets.iter().map(String::as_str).collect();
    TestServer::start(backend, Topology::Local, &sets).await
}

/// The same scenario across two myelin servers: alice on a.test, bob on b.test, so the
/// invite, the join, messages, typing, receipts and display names go over federation.
async fn js_clients_two_servers(backend: Backend) {
    let (pa, pb) = (common::reserve_port(), common::reserve_port());
    let a = federating(backend, "a.test", pa, "b.test", pb).await;
    let b = federating(backend, "b.test", pb, "a.test", pa).await;
    run_script(
        backend,
        "two myelin servers",
        a.base.clone(),
        b.base.clone(),
    )
    .await;
    a.stop().await;
    b.stop().await;
}

#[actix_web::test]
async fn js_sqlite_local() {
    js_clients(Backend::Sqlite).await
}

#[actix_web::test]
async fn js_postgres_local() {
    js_clients(Backend::Postgres).await
}

#[actix_web::test]
async fn js_two_servers_sqlite_local() {
    js_clients_two_servers(Backend::Sqlite).await
}

#[actix_web::test]
async fn js_two_servers_postgres_local() {
    js_clients_two_servers(Backend::Postgres).await
}
