#!/usr/bin/env bash
# Federation benchmark (issue 11): how long a user takes to join a room on another server, and
# how long a message takes from its send to the other server's waiting /sync, both ways.
#
#   benches/federation.sh
#
# For each pair (local, remote) in PAIRS it starts two fresh servers on loopback, federating
# over HTTPS with certificates of a throwaway test CA (openssl), each named by IP literal and
# port (127.0.0.1:<port>: no DNS), and runs
#   myelin-load --url <local> --remote-url <remote> --scenarios remote_join,to_remote_sync,from_remote_sync
# remote_join: a user of the remote server joins ROUNDS (at most 20) rooms of a local user;
# to_remote_sync / from_remote_sync: ROUNDS messages each way, from the send to the other
# server's long-poll /sync response that holds it. The JSON lines go to
# benches/results/federation.jsonl, a table (p50 and p95 of each) to stdout and, with the
# run's details, to benches/FEDERATION.md.
#
# Servers: a release myelin (SQLite in its data directory, rate limits off) and Synapse from
# PyPI in $HOME/.cache/myelin/venv-synapse (SQLite, rc_* limits raised, its IP blocklist
# emptied so it reaches loopback, the test CA in federation_custom_ca_list). Both check the
# other's certificate. Clients reach both over plain HTTP (myelin's server.http_listen,
# Synapse's second listener).
#
# Environment (defaults in brackets):
#   PAIRS          ["myelin:myelin myelin:synapse synapse:myelin synapse:synapse"]
#   ROUNDS         latency rounds each way, and joins (at most 20) [50]
#   SYNAPSE_VERSION [1.163.2]   PYTHON [python3.11]   VENV [$HOME/.cache/myelin/venv-synapse]
#   READY_TIMEOUT  seconds a server may take to answer after starting [180]
#   LOAD_TIMEOUT   seconds one myelin-load run may take [600]
#   NO_BUILD=1     skip `cargo build --release --bins`
#   MYELIN_BIN, LOAD_BIN  other binaries than the release build's
#   KEEP_WORK=1    keep the temporary directory (configs, logs)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PAIRS=${PAIRS:-"myelin:myelin myelin:synapse synapse:myelin synapse:synapse"}
ROUNDS=${ROUNDS:-50}
SYNAPSE_VERSION=${SYNAPSE_VERSION:-1.163.2}
PYTHON=${PYTHON:-python3.11}
VENV=${VENV:-$HOME/.cache/myelin/venv-synapse}
READY_TIMEOUT=${READY_TIMEOUT:-180}
LOAD_TIMEOUT=${LOAD_TIMEOUT:-600}
RESULTS=$ROOT/benches/results/federation.jsonl

log() { printf '[federation %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- cleanup: no server outlives the script ------------------------------------------------
PIDS=()
WORK=
alive() {
    local state
    state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}
stop_servers() {
    local pid i
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for ((i = 0; i < 150; i++)); do
            alive "$pid" || break
            sleep 0.1
        done
        alive "$pid" && kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    PIDS=()
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_servers
    if [ -n "$WORK" ] && [ -d "$WORK" ]; then
        if [ "${KEEP_WORK:-}" = 1 ] || [ "$rc" != 0 ]; then
            log "kept $WORK (configs, server logs)"
        else
            rm -rf "$WORK"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- prerequisites -------------------------------------------------------------------------
command -v curl >/dev/null || die "curl is needed"
command -v openssl >/dev/null || die "openssl is needed (the test CA)"
command -v "$PYTHON" >/dev/null || die "$PYTHON not found (set PYTHON)"
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || die "ROUNDS must be a positive integer"
for pair in $PAIRS; do
    case $pair in myelin:myelin | myelin:synapse | synapse:myelin | synapse:synapse) ;;
    *) die "PAIRS: unknown pair '$pair'" ;; esac
done
if [[ " $PAIRS " == *synapse* ]]; then
    if ! { [ -x "$VENV/bin/python" ] &&
        [ "$("$VENV/bin/python" -c 'import synapse; print(synapse.__version__)' 2>/dev/null)" \
            = "$SYNAPSE_VERSION" ]; }; then
        log "installing matrix-synapse==$SYNAPSE_VERSION into $VENV"
        [ -x "$VENV/bin/python" ] || timeout 300 "$PYTHON" -m venv "$VENV"
        timeout 1200 "$VENV/bin/python" -m pip install -q "matrix-synapse==$SYNAPSE_VERSION"
    fi
fi
VPY=$VENV/bin/python

cd "$ROOT"
if [ "${NO_BUILD:-}" != 1 ]; then
    log "cargo build --release --bins"
    timeout 3600 cargo build --release --bins --quiet
fi
TARGET_DIR=$(timeout 120 cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
MYELIN=${MYELIN_BIN:-$TARGET_DIR/release/myelin}
LOAD=${LOAD_BIN:-$TARGET_DIR/release/myelin-load}
[ -x "$MYELIN" ] && [ -x "$LOAD" ] || die "no binaries $MYELIN, $LOAD"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/federation.XXXXXX")
mkdir -p "$(dirname "$RESULTS")"
: >"$RESULTS"

# --- the test CA and one certificate for 127.0.0.1 and localhost --------------------------
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 "${ec[@]}" -keyout "$WORK/ca.key" -out "$WORK/ca.pem" -days 2 \
    -subj "/CN=myelin federation bench CA" 2>/dev/null
openssl req -x509 "${ec[@]}" -keyout "$WORK/leaf.key" -out "$WORK/leaf.pem" -days 2 \
    -subj /CN=localhost -CA "$WORK/ca.pem" -CAkey "$WORK/ca.key" \
    -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
    -addext "basicConstraints=critical,CA:FALSE" 2>/dev/null
cat "$WORK/leaf.pem" "$WORK/ca.pem" >"$WORK/chain.pem"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_ready() { # url pid log
    local deadline=$((SECONDS + READY_TIMEOUT))
    while ! curl -fsS -o /dev/null -m 2 "$1/_matrix/client/versions" 2>/dev/null; do
        alive "$2" || { tail -n 30 "$3" >&2; die "the server exited before answering ($3)"; }
        [ "$SECONDS" -lt "$deadline" ] || { tail -n 30 "$3" >&2; die "no answer from $1"; }
        sleep 0.2
    done
}

# Starts server kind $1 in directory $2; prints its client URL. Federation on an HTTPS port
# that is also its server name's port.
start() {
    local kind=$1 dir=$2 tls http
    mkdir -p "$dir"
    tls=$(free_port)
    http=$(free_port)
    if [ "$kind" = myelin ]; then
        "$MYELIN" --set "server.name=127.0.0.1:$tls" --set "server.listen=127.0.0.1:$tls" \
            --set "server.tls_cert=$WORK/chain.pem" --set "server.tls_key=$WORK/leaf.key" \
            --set "server.http_listen=127.0.0.1:$http" --set "server.ip_range_denylist=[]" \
            --set "federation.ca_file=$WORK/ca.pem" --set "server.data_dir=$dir" \
            --set metrics.listen= --set rate_limit.enabled=false --set log.level=warn \
            --config "$ROOT/config.toml" >"$dir/server.log" 2>&1 &
    else
        timeout 120 "$VPY" -m synapse.app.homeserver --generate-config \
            --server-name "127.0.0.1:$tls" --config-path "$dir/homeserver.yaml" \
            --data-directory "$dir" --report-stats=no >/dev/null
        DIR=$dir TLS=$tls HTTP=$http WORK=$WORK timeout 60 "$VPY" - <<'EOF'
import os, yaml
d, work = os.environ["DIR"], os.environ["WORK"]
path = f"{d}/homeserver.yaml"
cfg = yaml.safe_load(open(path))
off = {"per_second": 1_000_000, "burst_count": 1_000_000}
res = [{"names": ["client", "federation"], "compress": False}]
cfg.update({
    "listeners": [
        {"port": int(os.environ["HTTP"]), "bind_addresses": ["127.0.0.1"], "type": "http",
         "tls": False, "x_forwarded": False, "resources": res},
        {"port": int(os.environ["TLS"]), "bind_addresses": ["127.0.0.1"], "type": "http",
         "tls": True, "x_forwarded": False, "resources": res},
    ],
    "tls_certificate_path": f"{work}/chain.pem",
    "tls_private_key_path": f"{work}/leaf.key",
    "federation_verify_certificates": True,
    "federation_custom_ca_list": [f"{work}/ca.pem"],
    # IP-literal destinations are checked against the blocklist alone.
    "ip_range_blacklist": [],
    "enable_registration": True,
    "enable_registration_without_verification": True,
    "suppress_key_server_warning": True,
    "trusted_key_servers": [],
    "report_stats": False,
    "database": {"name": "sqlite3", "args": {"database": f"{d}/homeserver.db"}},
    "rc_message": off, "rc_registration": off, "rc_room_creation": off,
    "rc_login": {"address": off, "account": off, "failed_attempts": off},
    "rc_joins": {"local": off, "remote": off}, "rc_joins_per_room": off,
    "rc_federation": {"window_size": 1000, "sleep_limit": 1_000_000, "sleep_delay": 0,
                      "reject_limit": 1_000_000, "concurrent": 1000},
})
yaml.safe_dump(cfg, open(path, "w"), sort_keys=False)
log_path = cfg["log_config"]
log_cfg = yaml.safe_load(open(log_path))
log_cfg["root"]["level"] = "WARNING"
log_cfg["handlers"]["file"]["filename"] = f"{d}/homeserver.log"
for logger in log_cfg.get("loggers", {}).values():
    logger["level"] = "WARNING"
yaml.safe_dump(log_cfg, open(log_path, "w"), sort_keys=False)
EOF
        (cd "$dir" && exec "$VPY" -m synapse.app.homeserver --config-path homeserver.yaml) \
            >"$dir/server.log" 2>&1 &
    fi
    PIDS+=($!)
    wait_ready "http://127.0.0.1:$http" "$!" "$dir/server.log"
    echo "http://127.0.0.1:$http"
}

n=0
for pair in $PAIRS; do
    n=$((n + 1))
    local_kind=${pair%%:*}
    remote_kind=${pair##*:}
    log "$local_kind (local) and $remote_kind (remote)"
    local_url=$(start "$local_kind" "$WORK/$n-local-$local_kind")
    remote_url=$(start "$remote_kind" "$WORK/$n-remote-$remote_kind")
    timeout "$LOAD_TIMEOUT" "$LOAD" --url "$local_url" --remote-url "$remote_url" \
        --users 1 --rounds "$ROUNDS" \
        --scenarios remote_join,to_remote_sync,from_remote_sync 2>"$WORK/$n-load.txt" |
        PAIR=$pair python3 -c '
import json, os, sys
for line in sys.stdin:
    r = json.loads(line)
    r["pair"] = os.environ["PAIR"]
    print(json.dumps(r))' >>"$RESULTS"
    stop_servers
done

COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
python3 - "$RESULTS" "$ROOT/benches/FEDERATION.md" "$COMMIT" "$ROUNDS" <<'EOF'
import json, os, sys, time
rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    lat = r.get("latency_ms") or {}
    cell = "skipped" if r.get("skipped") else f'{lat.get("p50", "-")} / {lat.get("p95", "-")} ms'
    if r.get("errors"):
        cell += f' errors {r["errors"]}'
    rows.setdefault(r["pair"], {})[r["scenario"]] = cell
cols = ["remote_join", "to_remote_sync", "from_remote_sync"]
table = ["| local:remote | " + " | ".join(f"{c} p50 / p95" for c in cols) + " |",
         "|---|" + "---|" * len(cols)]
for pair, cells in rows.items():
    table.append(f"| {pair} | " + " | ".join(cells.get(c, "-") for c in cols) + " |")
print("\n".join(table))
load = os.getloadavg()[0]
with open(sys.argv[2], "w") as out:
    out.write(f"""# Federation: myelin and Synapse

Written by `benches/federation.sh`; rerun it rather than editing this file.

- date: {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
- myelin {sys.argv[3]} (release build); Synapse from PyPI; both on SQLite, one pair at a time
- {os.cpu_count()} CPUs; 1-minute load average at the end: {load:.2f}
- load: `myelin-load --users 1 --rounds {sys.argv[4]} --scenarios remote_join,to_remote_sync,from_remote_sync`

Each pair is two fresh servers on loopback federating over HTTPS (a throwaway test CA, each
checking the other's certificate), named `127.0.0.1:<port>`. `remote_join`: a user of the
remote server joins a room of the local server's user (the client's `/join` call: make_join,
send_join, the state checked and stored). `to_remote_sync` / `from_remote_sync`: from the
start of a send on one server to the other server's long-poll `/sync` response holding the
message. Figures are p50 / p95.

""" + "\n".join(table) + "\n")
EOF
