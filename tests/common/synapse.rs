//! A real Synapse for the tests that compare against it or federate with it: the pinned
//! release from PyPI in the virtualenv `$HOME/.cache/myelin/venv-synapse` (the one
//! `benches/vs-synapse.sh` uses), created on first use, started on loopback with SQLite and a
//! config fit for tests (no rate limits, registration open). Python 3 with its venv module is
//! required: without it the tests fail, they do not skip.

use super::child::run;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Synapse release tested against (as in benches/vs-synapse.sh).
pub const SYNAPSE_VERSION: &str = "1.163.2";

/// How long creating the virtualenv and installing Synapse may take.
const INSTALL_TIMEOUT: Duration = Duration::from_secs(900);
/// How long Synapse may take from start to answering `/versions`.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Whether `python` imports Synapse at exactly the pinned version.
fn has_pinned_synapse(python: &Path) -> bool {
    if !python.exists() {
        return false;
    }
    let mut cmd = Command::new(python);
    cmd.args([
        "-c",
        "import sys, synapse; sys.exit(synapse.__version__ != sys.argv[1])",
        SYNAPSE_VERSION,
    ]);
    run(cmd, "the Synapse check", Duration::from_secs(60)).success()
}

/// The venv's python with the pinned Synapse; creates the venv or installs into it if needed.
pub fn synapse_python() -> Result<PathBuf, String> {
    let home = std::env::var_os("HOME").ok_or("HOME is not set: cannot place the Synapse venv")?;
    let venv = Path::new(&home).join(".cache/myelin/venv-synapse");
    let python = venv.join("bin/python");
    if has_pinned_synapse(&python) {
        return Ok(python);
    }
    std::fs::create_dir_all(venv.parent().unwrap_or(&venv))
        .map_err(|e| format!("creating the parent of {}: {e}", venv.display()))?;
    if !python.exists() {
        // A venv left half-made by an interrupted run has no python yet: rebuild it. One that
        // has python (e.g. made by benches/vs-synapse.sh, with psycopg2) is kept and only
        // gets Synapse installed into it.
        let mut cmd = Command::new("python3");
        cmd.args(["-m", "venv", "--clear"]).arg(&venv);
        let o = run(cmd, "python3 -m venv", INSTALL_TIMEOUT);
        if !o.success() {
            return Err(format!(
                "{}\n(Python 3 with its venv module is required: apt-get install python3 \
                 python3-venv)",
                o.describe("python3 -m venv", INSTALL_TIMEOUT)
            ));
        }
    }
    // Synapse's wheels need no compiler; SQLite is all this test uses (no psycopg2).
    let mut cmd = Command::new(&python);
    cmd.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-input",
        &format!("matrix-synapse=={SYNAPSE_VERSION}"),
    ]);
    let o = run(cmd, "pip install matrix-synapse", INSTALL_TIMEOUT);
    if !o.success() {
        return Err(o.describe("pip install matrix-synapse", INSTALL_TIMEOUT));
    }
    if !has_pinned_synapse(&python) {
        return Err(format!(
            "{} does not import Synapse {SYNAPSE_VERSION} after installing it",
            python.display()
        ));
    }
    Ok(python)
}

/// A free loopback port: Synapse cannot listen on port 0 and report the port it got.
pub fn free_port() -> u16 {
    super::reserve_port()
}

/// A running Synapse; killed (and waited for) when dropped, whatever happened.
pub struct Synapse {
    child: Child,
    /// The plain-HTTP listener (client and federation resources).
    pub base: String,
    pub dir: tempfile::TempDir,
}

impl Drop for Synapse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Synapse {
    pub fn log_tail(&self) -> String {
        let mut out = String::new();
        for name in ["synapse.stderr", "homeserver.log"] {
            let text = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = lines[lines.len().saturating_sub(40)..].join("\n");
            out.push_str(&format!("--- {name} (last 40 lines) ---\n{tail}\n"));
        }
        out
    }

    /// Generates a config in a fresh directory and starts Synapse; waits until it answers.
    pub fn start(python: &Path, options: &Options) -> Result<Synapse, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
        let path = dir.path();
        let config = path.join("homeserver.yaml");
        // Signing key, macaroon and form secrets, log config: Synapse's own generated config.
        let mut cmd = Command::new(python);
        cmd.current_dir(path)
            .args(["-m", "synapse.app.homeserver", "--generate-config"])
            .args(["--server-name", &options.server_name, "--report-stats=no"])
            .arg("--config-path")
            .arg(&config)
            .arg("--data-directory")
            .arg(path);
        let o = run(cmd, "synapse --generate-config", Duration::from_secs(120));
        if !o.success() {
            return Err(o.describe("synapse --generate-config", Duration::from_secs(120)));
        }
        // A second config file overrides the generated one key by key (JSON is YAML).
        let port = free_port();
        let off = serde_json::json!({"per_second": 1_000_000, "burst_count": 1_000_000});
        // Client and federation resources on one port: the federation resource serves
        // /_matrix/federation/v1/openid/userinfo, which the comparison checks too.
        let mut listeners = vec![serde_json::json!({
            "port": port, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": false,
            "x_forwarded": false,
            "resources": [{"names": ["client", "federation"], "compress": false}],
        })];
        if let Some(tls) = &options.tls {
            listeners.push(serde_json::json!({
                "port": tls.port, "bind_addresses": ["127.0.0.1"], "type": "http", "tls": true,
                "x_forwarded": false,
                "resources": [{"names": ["client", "federation"], "compress": false}],
            }));
        }
        let mut overrides = serde_json::json!({
            "listeners": listeners,
            "database": {"name": "sqlite3", "args": {"database": path.join("homeserver.db")}},
            "enable_registration": true,
            "enable_registration_without_verification": true,
            "report_stats": false,
            "suppress_key_server_warning": true,
            "trusted_key_servers": [],
            "presence": {"enabled": true},
            "rc_message": off,
            "rc_registration": off,
            "rc_registration_token_validity": off,
            "rc_login": {"address": off, "account": off, "failed_attempts": off},
            "rc_admin_redaction": off,
            "rc_joins": {"local": off, "remote": off},
            "rc_joins_per_room": off,
            "rc_key_requests": off,
            "rc_3pid_validation": off,
            "rc_invites": {"per_room": off, "per_user": off, "per_issuer": off},
            "rc_third_party_invite": off,
            "rc_media_create": off,
            "rc_presence": {"per_user": off},
            "rc_delayed_event_mgmt": off,
            "rc_room_creation": off,
            "rc_reports": off,
            "rc_user_directory": off,
            "rc_profile": off,
            "rc_federation": {"window_size": 1000, "sleep_limit": 1_000_000,
                              "sleep_delay": 0, "reject_limit": 1_000_000, "concurrent": 1_000},
        });
        if let Some(tls) = &options.tls {
            let o = overrides.as_object_mut().expect("an object");
            o.insert("tls_certificate_path".into(), tls.chain.clone().into());
            o.insert("tls_private_key_path".into(), tls.key.clone().into());
            // Other servers' certificates are checked against the test CA.
            o.insert("federation_verify_certificates".into(), true.into());
            o.insert(
                "federation_custom_ca_list".into(),
                serde_json::json!([tls.ca]),
            );
            // The servers it federates with are on loopback, named by IP literal: Synapse
            // checks IP literals against its blocklist alone (not the allowlist), so the
            // blocklist is emptied (it still blocks 0.0.0.0 and ::).
            o.insert("ip_range_blacklist".into(), serde_json::json!([]));
        }
        let overrides_path = path.join("overrides.yaml");
        std::fs::write(&overrides_path, overrides.to_string())
            .map_err(|e| format!("writing {}: {e}", overrides_path.display()))?;
        let stderr = std::fs::File::create(path.join("synapse.stderr"))
            .map_err(|e| format!("creating synapse.stderr: {e}"))?;
        let child = Command::new(python)
            // The generated log config writes homeserver.log relative to the working directory.
            .current_dir(path)
            .args(["-m", "synapse.app.homeserver", "--config-path"])
            .arg(&config)
            .arg("--config-path")
            .arg(&overrides_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| format!("starting Synapse: {e}"))?;
        let mut synapse = Synapse {
            child,
            base: format!("http://127.0.0.1:{port}"),
            dir,
        };
        let started = Instant::now();
        loop {
            if versions_answer(port) {
                println!("Synapse {SYNAPSE_VERSION} up in {:.1?}", started.elapsed());
                return Ok(synapse);
            }
            if let Ok(Some(status)) = synapse.child.try_wait() {
                return Err(format!(
                    "Synapse exited with {status} before answering\n{}",
                    synapse.log_tail()
                ));
            }
            if started.elapsed() >= READY_TIMEOUT {
                return Err(format!(
                    "Synapse did not answer /_matrix/client/versions within {READY_TIMEOUT:?}\n{}",
                    synapse.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// Whether `GET /_matrix/client/versions` on 127.0.0.1:`port` answers 200.
fn versions_answer(port: u16) -> bool {
    use std::io::Write;
    let Ok(mut s) = std::net::TcpStream::connect_timeout(
        &([127, 0, 0, 1], port).into(),
        Duration::from_secs(2),
    ) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let req =
        "GET /_matrix/client/versions HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

/// How to run a Synapse.
pub struct Options {
    /// Its server name (with the port of its TLS listener, when federating on loopback).
    pub server_name: String,
    /// An HTTPS listener for federation (and clients), with the test CA: other servers'
    /// certificates are verified against it, and loopback is allowed.
    pub tls: Option<Tls>,
}

/// Synapse's HTTPS listener.
pub struct Tls {
    pub port: u16,
    /// PEM certificate chain and key (see `certs::test_certificates`).
    pub chain: String,
    pub key: String,
    /// The CA other servers' certificates are checked against.
    pub ca: String,
}
