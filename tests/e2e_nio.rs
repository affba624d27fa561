//! A real Matrix client library drives myelin end to end: `tests/e2e/nio_clients.py` runs two
//! matrix-nio clients (from PyPI, without end-to-end encryption) against a test server on
//! each database. They register, create a room, invite, join, exchange messages and see each
//! other's typing and read receipts through `/sync`, as nio parses and validates them.
//!
//! matrix-nio lives in a virtualenv under `$HOME/.cache/myelin/venv-nio`, created (and the
//! pinned version installed with pip) on first use. Python 3 with its venv module is
//! required: without it these tests fail, they do not skip.

mod common;

use common::child::run;
use common::{Backend, TestServer, Topology};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// The matrix-nio release the script is written against.
const NIO_VERSION: &str = "0.26.0";
/// How long the script may run before it is killed (it bounds itself to 90 s).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long creating the virtualenv and installing matrix-nio may take.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(600);

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/nio_clients.py");

/// Whether `python` imports nio at exactly the pinned version.
fn has_pinned_nio(python: &Path) -> bool {
    if !python.exists() {
        return false;
    }
    let mut cmd = Command::new(python);
    cmd.args([
        "-c",
        "import sys, importlib.metadata as m, nio; sys.exit(m.version('matrix-nio') != sys.argv[1])",
        NIO_VERSION,
    ]);
    run(cmd, "the matrix-nio check", Duration::from_secs(60)).success()
}

/// The virtualenv's python, with matrix-nio installed; creates the virtualenv when needed.
fn create_venv() -> Result<PathBuf, String> {
    let home = std::env::var_os("HOME").ok_or("HOME is not set: cannot place the nio venv")?;
    let venv = Path::new(&home).join(".cache/myelin/venv-nio");
    let python = venv.join("bin/python");
    if has_pinned_nio(&python) {
        return Ok(python);
    }
    std::fs::create_dir_all(venv.parent().unwrap_or(&venv))
        .map_err(|e| format!("creating the parent of {}: {e}", venv.display()))?;
    match Command::new("python3").arg("--version").output() {
        Ok(o) if o.status.success() => {}
        Ok(o) => return Err(format!("python3 --version failed: {o:?}")),
        Err(e) => {
            return Err(format!(
                "python3 is required for the matrix-nio end-to-end test and cannot be run ({e}): \
                 install Python 3 with its venv module (apt-get install python3 python3-venv)"
            ))
        }
    }
    // --clear: a venv left half-made by an interrupted run is rebuilt from scratch.
    let mut cmd = Command::new("python3");
    cmd.args(["-m", "venv", "--clear"]).arg(&venv);
    let o = run(cmd, "python3 -m venv", INSTALL_TIMEOUT);
    if !o.success() {
        return Err(format!(
            "{}\n(is the venv module installed? apt-get install python3-venv)",
            o.describe("python3 -m venv", INSTALL_TIMEOUT)
        ));
    }
    let mut cmd = Command::new(&python);
    cmd.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-input",
        &format!("matrix-nio=={NIO_VERSION}"),
    ]);
    let o = run(cmd, "pip install matrix-nio", INSTALL_TIMEOUT);
    if !o.success() {
        return Err(o.describe("pip install matrix-nio", INSTALL_TIMEOUT));
    }
    if !has_pinned_nio(&python) {
        return Err(format!(
            "{} does not import matrix-nio {NIO_VERSION} after installing it",
            python.display()
        ));
    }
    Ok(python)
}

/// The venv's python, made once per test binary (tests running in parallel wait for it).
fn venv_python() -> PathBuf {
    static PYTHON: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    match PYTHON.get_or_init(create_venv) {
        Ok(p) => p.clone(),
        Err(e) => panic!("no Python environment with matrix-nio {NIO_VERSION}: {e}"),
    }
}

/// Runs the nio script against a fresh server on `backend` and asserts it succeeds.
async fn nio_clients(backend: Backend) {
    let python = actix_web::rt::task::spawn_blocking(venv_python)
        .await
        .unwrap_or_else(|e| panic!("setting up the nio venv: {e}"));
    let s = TestServer::start(backend, Topology::Local, &[]).await;
    let base = s.base.clone();
    // The server is served by this thread's runtime: run Python on a blocking thread.
    let out = actix_web::rt::task::spawn_blocking(move || {
        let mut cmd = Command::new(python);
        cmd.arg(SCRIPT).arg(base).env("PYTHONUNBUFFERED", "1");
        run(cmd, "nio_clients.py", SCRIPT_TIMEOUT)
    })
    .await
    .expect("the thread running nio_clients.py");
    assert!(
        out.success(),
        "matrix-nio against myelin on {backend:?}: {}",
        out.describe("nio_clients.py", SCRIPT_TIMEOUT)
    );
    println!("{backend:?}: {}", out.stdout.trim());
    s.stop().await;
}

#[actix_web::test]
async fn nio_sqlite_local() {
    nio_clients(Backend::Sqlite).await
}

#[actix_web::test]
async fn nio_postgres_local() {
    nio_clients(Backend::Postgres).await
}
