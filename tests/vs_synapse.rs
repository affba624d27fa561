//! "Synapse is the yardstick": `tests/e2e/compare_synapse.py` sends the same client-API
//! requests to myelin and to a real Synapse and compares the answers (status, errcode, JSON
//! shape, and the values that must match: push rules, registration flows, state contents,
//! ...). This test starts Synapse (pinned, from PyPI) on loopback with SQLite, then a myelin
//! test server on SQLite and one on PostgreSQL, and runs the script once per myelin against
//! the same Synapse. It fails on every difference that is not listed in the script's
//! `ALLOWED` (deliberate) or `KNOWN_DIFFERENCES` (to be fixed) lists.
//!
//! Synapse lives in the virtualenv `$HOME/.cache/myelin/venv-synapse`, the one
//! `benches/vs-synapse.sh` uses, created (and the pinned version installed with pip) on first
//! use. Python 3 with its venv module is required: without it this test fails, it does not
//! skip.

mod common;

use common::child::run;
use common::synapse::{synapse_python, Options, Synapse, SYNAPSE_VERSION};
use common::{Backend, TestServer, Topology};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// The server name of the Synapse under test.
const SYNAPSE_NAME: &str = "synapse.test";
/// The server name of myelin's test servers (tests/common: `server.name=test.local`).
const MYELIN_NAME: &str = "test.local";
/// How long one run of the script may take (it bounds itself to 150 s per server).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(180);

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/compare_synapse.py");

/// Runs the script against a fresh myelin on `backend` and the given Synapse.
async fn compare(python: &Path, synapse: &Synapse, backend: Backend) -> Result<String, String> {
    let s = TestServer::start(backend, Topology::Local, &[]).await;
    let mut cmd = Command::new(python);
    cmd.arg(SCRIPT)
        .args(["--myelin", &s.base, MYELIN_NAME])
        .args(["--synapse", &synapse.base, SYNAPSE_NAME])
        .env("PYTHONUNBUFFERED", "1");
    // myelin is served by this thread's runtime: run Python on a blocking thread.
    let out =
        actix_web::rt::task::spawn_blocking(move || run(cmd, "compare_synapse.py", SCRIPT_TIMEOUT))
            .await
            .expect("the thread running compare_synapse.py");
    s.stop().await;
    if out.success() {
        Ok(out.stdout)
    } else {
        Err(out.describe("compare_synapse.py", SCRIPT_TIMEOUT))
    }
}

#[actix_web::test]
async fn myelin_answers_as_synapse() {
    let started = Instant::now();
    let python = actix_web::rt::task::spawn_blocking(synapse_python)
        .await
        .expect("the thread installing Synapse")
        .unwrap_or_else(|e| panic!("no Python environment with Synapse {SYNAPSE_VERSION}: {e}"));
    println!("Synapse venv ready in {:.1?}", started.elapsed());
    let py = python.clone();
    let synapse = actix_web::rt::task::spawn_blocking(move || {
        Synapse::start(
            &py,
            &Options {
                server_name: SYNAPSE_NAME.to_owned(),
                tls: None,
            },
        )
    })
    .await
    .expect("the thread starting Synapse")
    .unwrap_or_else(|e| panic!("cannot start Synapse {SYNAPSE_VERSION}: {e}"));
    // Both myelin backends run against the same Synapse (the script's users are new each run);
    // both results are reported before asserting.
    let mut failures = Vec::new();
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let t = Instant::now();
        match compare(&python, &synapse, backend).await {
            Ok(report) => println!(
                "myelin on {backend:?} vs Synapse ({:.1?}):\n{report}",
                t.elapsed()
            ),
            Err(e) => failures.push(format!(
                "myelin on {backend:?} vs Synapse {SYNAPSE_VERSION}: {e}"
            )),
        }
    }
    drop(synapse);
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
