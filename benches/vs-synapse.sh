#!/usr/bin/env bash
# Side-by-side load benchmark of myelin against Synapse (issue 5).
#
#   benches/vs-synapse.sh
#
# For each database kind (SQLite, then PostgreSQL) it runs the same `myelin-load` against a
# release myelin and against Synapse, alternating (myelin, Synapse, myelin, Synapse, ...),
# one server at a time, each on a fresh database. It records every scenario's JSON line plus
# each server's resident memory (peak and at the end) and CPU time, keeps the raw lines in
# benches/results/vs-synapse-<db>.jsonl, and writes the tables with the ratios
# myelin/Synapse into benches/RESULTS.md (benches/vs_synapse_report.py).
#
# Synapse comes from PyPI, pinned, in a venv that is reused across runs
# ($HOME/.cache/myelin/venv-synapse). It listens on loopback only, without TLS, with
# registration open and every rc_* rate limit raised out of reach; myelin runs with
# rate_limit.enabled=false. Both log at WARNING, and both keep their default password
# hashing (Synapse: bcrypt, 12 rounds; myelin: argon2id, 19 MiB, 2 iterations), which
# dominates the register scenario and the logins of idle_sync on both.
#
# PostgreSQL: the local server at $PGHOST:$PGPORT as $PGUSER (psql/createdb must reach it);
# each server gets its own throwaway database, dropped at the end.
#
# Environment (defaults in brackets):
#   DBS            database kinds to run ["sqlite postgres"]
#   ALTERNATIONS   runs per server and database kind; the tables show the median [2]
#   LOAD_ARGS      myelin-load arguments, the same for both servers
#                  ["--users 20 --messages 2000 --concurrency 16 --rounds 200
#                    --rooms-for-initial-sync 100 --idle-clients 500"]
#   SYNAPSE_VERSION [1.163.2]   PSYCOPG2_VERSION [2.9.13]   PYTHON [python3.11]
#   VENV           [$HOME/.cache/myelin/venv-synapse]
#   MYELIN_PORT [18108]   SYNAPSE_PORT [18118]
#   PGHOST [127.0.0.1]   PGPORT [5432]   PGUSER [postgres]   (PGPASSWORD if needed)
#   READY_TIMEOUT  seconds a server may take to answer after starting [180]
#   LOAD_TIMEOUT   seconds one myelin-load run may take [900]
#   NO_BUILD=1     skip `cargo build --release --bins`
#   KEEP_WORK=1    keep the temporary directory (configs, server logs, load tables)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DBS=${DBS:-"sqlite postgres"}
ALTERNATIONS=${ALTERNATIONS:-2}
LOAD_ARGS=${LOAD_ARGS:-"--users 20 --messages 2000 --concurrency 16 --rounds 200 --rooms-for-initial-sync 100 --idle-clients 500"}
SYNAPSE_VERSION=${SYNAPSE_VERSION:-1.163.2}
PSYCOPG2_VERSION=${PSYCOPG2_VERSION:-2.9.13}
PYTHON=${PYTHON:-python3.11}
VENV=${VENV:-$HOME/.cache/myelin/venv-synapse}
MYELIN_PORT=${MYELIN_PORT:-18108}
SYNAPSE_PORT=${SYNAPSE_PORT:-18118}
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
READY_TIMEOUT=${READY_TIMEOUT:-180}
LOAD_TIMEOUT=${LOAD_TIMEOUT:-900}
RESULTS_DIR=$ROOT/benches/results
PG_DATABASES=(myelin_vs_synapse synapse_vs_myelin)

log() { printf '[vs-synapse %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# --- cleanup: whatever happens, no server outlives the script ------------------------------
SERVER_PID=
WORK=
PG_USED=
alive() {
    # Running and not a zombie (a dead child stays in /proc until waited for).
    local state
    state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}
stop_server() {
    local pid=$SERVER_PID i
    [ -n "$pid" ] || return 0
    SERVER_PID=
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do # 15 s
        alive "$pid" || break
        sleep 0.1
    done
    if alive "$pid"; then
        # myelin's graceful shutdown waits for the long polls the load left behind.
        log "server $pid still running 15 s after SIGTERM; SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_server
    if [ -n "$PG_USED" ]; then
        for db in "${PG_DATABASES[@]}"; do
            timeout 30 psql -qX -d postgres -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" \
                >/dev/null 2>&1 || true
        done
    fi
    if [ -n "$WORK" ] && [ -d "$WORK" ]; then
        if [ "${KEEP_WORK:-}" = 1 ] || [ "$rc" != 0 ]; then
            log "kept $WORK (server logs, configs, load tables)"
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
for db in $DBS; do
    case $db in sqlite | postgres) ;; *) die "DBS: unknown database kind '$db'" ;; esac
done
[[ $ALTERNATIONS =~ ^[1-9][0-9]*$ ]] || die "ALTERNATIONS must be a positive integer"
command -v curl >/dev/null || die "curl is needed"
command -v "$PYTHON" >/dev/null || die "$PYTHON not found (set PYTHON)"
if [[ " $DBS " == *" postgres "* ]]; then
    command -v psql >/dev/null || die "psql is needed for the PostgreSQL runs"
    timeout 30 psql -qXtA -d postgres -c 'SELECT 1' >/dev/null ||
        die "cannot reach PostgreSQL as $PGUSER@$PGHOST:$PGPORT"
fi
for port in "$MYELIN_PORT" "$SYNAPSE_PORT"; do
    if curl -s -o /dev/null -m 2 "http://127.0.0.1:$port/"; then
        die "something already listens on 127.0.0.1:$port (set MYELIN_PORT/SYNAPSE_PORT)"
    fi
done

# Each idle client holds a socket in both processes.
idle=$(sed -n 's/.*--idle-clients[ =]\([0-9]*\).*/\1/p' <<<"$LOAD_ARGS")
want_fds=$((${idle:-0} + 1024))
hard=$(ulimit -Hn)
if [ "$hard" != unlimited ] && [ "$hard" -lt "$want_fds" ]; then
    die "open-file hard limit $hard is below the $want_fds that --idle-clients ${idle:-0} needs"
fi
if [ "$(ulimit -Sn)" != unlimited ] && [ "$(ulimit -Sn)" -lt "$want_fds" ]; then
    ulimit -Sn "$([ "$hard" = unlimited ] && echo 65536 || echo $((hard < 65536 ? hard : 65536)))"
fi

# --- Synapse, pinned, in its venv ----------------------------------------------------------
synapse_installed() {
    [ -x "$VENV/bin/python" ] &&
        [ "$("$VENV/bin/python" -c 'import synapse, psycopg2; print(synapse.__version__)' \
            2>/dev/null)" = "$SYNAPSE_VERSION" ]
}
if ! synapse_installed; then
    log "installing matrix-synapse==$SYNAPSE_VERSION into $VENV"
    [ -x "$VENV/bin/python" ] || timeout 300 "$PYTHON" -m venv "$VENV"
    timeout 300 "$VENV/bin/python" -m pip install -q --upgrade pip
    timeout 1200 "$VENV/bin/python" -m pip install -q \
        "matrix-synapse==$SYNAPSE_VERSION" "psycopg2-binary==$PSYCOPG2_VERSION"
    synapse_installed || die "matrix-synapse $SYNAPSE_VERSION did not install into $VENV"
fi
VPY=$VENV/bin/python

# --- myelin, release build -----------------------------------------------------------------
cd "$ROOT"
if [ "${NO_BUILD:-}" != 1 ]; then
    log "cargo build --release --bins"
    timeout 3600 cargo build --release --bins --quiet
fi
TARGET_DIR=$(timeout 120 cargo metadata --format-version 1 --no-deps |
    "$VPY" -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
MYELIN=$TARGET_DIR/release/myelin
LOAD=$TARGET_DIR/release/myelin-load
[ -x "$MYELIN" ] && [ -x "$LOAD" ] || die "no release binaries in $TARGET_DIR/release"

WORK=$(mktemp -d "${TMPDIR:-/tmp}/vs-synapse.XXXXXX")
mkdir -p "$RESULTS_DIR"
log "work directory $WORK; load arguments: $LOAD_ARGS"

# --- helpers -------------------------------------------------------------------------------
pg() {
    PGOPTIONS='-c client_min_messages=warning' \
        timeout 60 psql -qX -v ON_ERROR_STOP=1 -d postgres -c "$1" >/dev/null
}
fresh_pg_db() {
    PG_USED=1
    pg "DROP DATABASE IF EXISTS $1 WITH (FORCE)"
    # Synapse refuses databases whose collation is not C.
    pg "CREATE DATABASE $1 ENCODING 'UTF8' LC_COLLATE='C' LC_CTYPE='C' TEMPLATE template0"
}
now() { date +%s.%N; }
since() { awk -v a="$(now)" -v b="$1" 'BEGIN {printf "%.2f", a - b}'; }
rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }
CLK_TCK=$(getconf CLK_TCK)
cpu_seconds() { # utime + stime, fields 14 and 15 of /proc/PID/stat
    sed 's/.*) //' "/proc/$1/stat" | awk -v hz="$CLK_TCK" '{printf "%.2f", ($12 + $13) / hz}'
}
wait_ready() { # url log
    local url=$1 logfile=$2 deadline=$((SECONDS + READY_TIMEOUT))
    while ! curl -fsS -o /dev/null -m 2 "$url/_matrix/client/versions" 2>/dev/null; do
        if ! alive "$SERVER_PID"; then
            tail -n 30 "$logfile" >&2 || true
            die "the server exited before answering; log above ($logfile)"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            tail -n 30 "$logfile" >&2 || true
            die "no answer from $url within ${READY_TIMEOUT}s"
        fi
        sleep 0.2
    done
}

# Writes a Synapse config for database kind $1 into directory $2, prints its path.
synapse_config() {
    local db=$1 dir=$2
    mkdir -p "$dir"
    timeout 120 "$VPY" -m synapse.app.homeserver --generate-config --server-name localhost \
        --config-path "$dir/homeserver.yaml" --data-directory "$dir" --report-stats=no \
        >/dev/null
    DIR=$dir DB=$db PORT=$SYNAPSE_PORT PGDB=${PG_DATABASES[1]} timeout 60 "$VPY" - <<'EOF'
import os, yaml

dir, db = os.environ["DIR"], os.environ["DB"]
path = f"{dir}/homeserver.yaml"
cfg = yaml.safe_load(open(path))
off = {"per_second": 1_000_000, "burst_count": 1_000_000}
cfg.update({
    "listeners": [{
        "port": int(os.environ["PORT"]), "bind_addresses": ["127.0.0.1"], "type": "http",
        "tls": False, "x_forwarded": False,
        "resources": [{"names": ["client"], "compress": False}],
    }],
    "enable_registration": True,
    "enable_registration_without_verification": True,
    "presence": {"enabled": True},
    "suppress_key_server_warning": True,
    "trusted_key_servers": [],
    "report_stats": False,
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
})
# No replay of a finished /sync for an identical request: initial_sync repeats one, and
# myelin computes every sync.
cfg.setdefault("caches", {})["sync_response_cache_duration"] = 0
if db == "postgres":
    args = {"user": os.environ["PGUSER"], "host": os.environ["PGHOST"],
            "port": int(os.environ["PGPORT"]), "database": os.environ["PGDB"],
            "cp_min": 5, "cp_max": 10}
    if os.environ.get("PGPASSWORD"):
        args["password"] = os.environ["PGPASSWORD"]
    cfg["database"] = {"name": "psycopg2", "args": args}
else:
    cfg["database"] = {"name": "sqlite3", "args": {"database": f"{dir}/homeserver.db"}}
yaml.safe_dump(cfg, open(path, "w"), sort_keys=False)

# WARNING, as myelin runs with log.level=warn: no per-request lines on either side.
log_path = cfg["log_config"]
log_cfg = yaml.safe_load(open(log_path))
log_cfg["root"]["level"] = "WARNING"
# The generated path is relative to the working directory; keep the log with the rest.
log_cfg["handlers"]["file"]["filename"] = f"{dir}/homeserver.log"
for logger in log_cfg.get("loggers", {}).values():
    logger["level"] = "WARNING"
yaml.safe_dump(log_cfg, open(log_path, "w"), sort_keys=False)
EOF
    echo "$dir/homeserver.yaml"
}

# Starts server $1 (myelin|synapse) on database kind $2 in directory $3; sets SERVER_PID, URL.
start_server() {
    local server=$1 db=$2 dir=$3
    mkdir -p "$dir"
    if [ "$server" = myelin ]; then
        local dburl=""
        if [ "$db" = postgres ]; then
            fresh_pg_db "${PG_DATABASES[0]}"
            local auth=$PGUSER${PGPASSWORD:+:$PGPASSWORD}
            dburl="postgres://$auth@$PGHOST:$PGPORT/${PG_DATABASES[0]}"
        fi
        URL=http://127.0.0.1:$MYELIN_PORT
        # --config last: keeps this process out of `pkill -f "release/myelin --config"`.
        "$MYELIN" --set server.name=localhost --set "server.listen=127.0.0.1:$MYELIN_PORT" \
            --set "server.data_dir=$dir" --set metrics.listen= --set rate_limit.enabled=false \
            --set log.level=warn --set "database.url=$dburl" --config "$ROOT/config.toml" \
            >"$dir/server.log" 2>&1 &
    else
        if [ "$db" = postgres ]; then fresh_pg_db "${PG_DATABASES[1]}"; fi
        local cfg
        cfg=$(synapse_config "$db" "$dir")
        URL=http://127.0.0.1:$SYNAPSE_PORT
        "$VPY" -m synapse.app.homeserver --config-path "$cfg" >"$dir/server.log" 2>&1 &
    fi
    SERVER_PID=$!
    wait_ready "$URL" "$dir/server.log"
}

# One load run: server $1 on database kind $2, alternation $3; appends to $4.
run_one() {
    local server=$1 db=$2 run=$3 out=$4
    local tag=$db-$server-$run dir=$WORK/$db-$server-$run
    log "$tag: starting $server on $db"
    local t0
    t0=$(now)
    start_server "$server" "$db" "$dir"
    local startup pid=$SERVER_PID
    startup=$(since "$t0")
    local rss_ready cpu_ready
    rss_ready=$(rss_kib "$pid")
    cpu_ready=$(cpu_seconds "$pid")
    log "$tag: up in ${startup}s (pid $pid, RSS $((rss_ready / 1024)) MiB); myelin-load"
    local t1 rc=0
    t1=$(now)
    # shellcheck disable=SC2086 # LOAD_ARGS is a list of flags
    timeout "$LOAD_TIMEOUT" "$LOAD" --url "$URL" --server-pid "$pid" $LOAD_ARGS \
        >"$dir/load.jsonl" 2>"$dir/load.txt" || rc=$?
    local wall
    wall=$(since "$t1")
    alive "$pid" || die "$tag: the server died during the load; see $dir/server.log"
    local rss_end hwm cpu_end
    rss_end=$(rss_kib "$pid")
    hwm=$(hwm_kib "$pid")
    cpu_end=$(cpu_seconds "$pid")
    stop_server
    [ "$rc" = 0 ] || log "$tag: myelin-load exited with $rc (124: LOAD_TIMEOUT ${LOAD_TIMEOUT}s)"
    sed -n '/^$/,$p' "$dir/load.txt" | tail -n +2 >&2 || true
    local head="\"server\":\"$server\",\"db\":\"$db\",\"run\":$run,"
    sed "s/^{/{$head/" "$dir/load.jsonl" >>"$out"
    printf '{%s"scenario":"process","pid":%s,"startup_seconds":%s,"load_seconds":%s,"load_exit":%s,"rss_kib_ready":%s,"rss_kib_end":%s,"peak_rss_kib":%s,"cpu_seconds_startup":%s,"cpu_seconds_load":%s}\n' \
        "$head" "$pid" "$startup" "$wall" "$rc" "$rss_ready" "$rss_end" "$hwm" "$cpu_ready" \
        "$(awk -v a="$cpu_end" -v b="$cpu_ready" 'BEGIN {printf "%.2f", a - b}')" >>"$out"
    log "$tag: done in ${wall}s; peak RSS $((hwm / 1024)) MiB, CPU during load $(awk -v a="$cpu_end" -v b="$cpu_ready" 'BEGIN {printf "%.1f", a - b}') s"
}

meta_line() { # db
    local pgv=""
    [ "$1" = postgres ] && pgv=$(timeout 30 psql -qXtA -d postgres -c 'SHOW server_version')
    local dirty=""
    git -C "$ROOT" diff --quiet HEAD -- src Cargo.toml Cargo.lock 2>/dev/null || dirty="+dirty"
    DB=$1 PGV=$pgv REV="$(git -C "$ROOT" rev-parse --short HEAD)$dirty" \
        SYNAPSE_VERSION=$SYNAPSE_VERSION LOAD_ARGS=$LOAD_ARGS ALTERNATIONS=$ALTERNATIONS \
        LOADAVG=$LOADAVG \
        "$VPY" - <<'EOF'
import datetime, json, os, platform, sys
cpu = ""
for line in open("/proc/cpuinfo"):
    if line.startswith("model name"):
        cpu = line.split(":", 1)[1].strip()
        break
mem_kib = next(int(l.split()[1]) for l in open("/proc/meminfo") if l.startswith("MemTotal:"))
print(json.dumps({
    "scenario": "meta", "db": os.environ["DB"],
    "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    "nproc": os.cpu_count(), "cpu": cpu, "mem_gib": round(mem_kib / 1048576, 1),
    "kernel": platform.release(), "myelin_rev": os.environ["REV"],
    "synapse_version": os.environ["SYNAPSE_VERSION"], "python": platform.python_version(),
    "postgres_version": os.environ["PGV"] or None, "load_args": os.environ["LOAD_ARGS"],
    "alternations": int(os.environ["ALTERNATIONS"]),
    "loadavg_at_start": float(os.environ["LOADAVG"]),
}))
EOF
}

# --- the runs ------------------------------------------------------------------------------
others=$(pgrep -f 'release/myelin|synapse.app.homeserver|myelin-load' || true)
if [ -n "$others" ]; then
    log "warning: other servers or load runs are on this machine and will skew the figures:"
    ps -o pid=,args= -p "$(tr '\n' ',' <<<"$others" | sed 's/,$//')" | cut -c1-150 >&2 || true
fi
LOADAVG=$(cut -d' ' -f1 /proc/loadavg) # before any run, for the record
started=$SECONDS
files=()
for db in $DBS; do
    out=$RESULTS_DIR/vs-synapse-$db.jsonl
    tmp=$WORK/vs-synapse-$db.jsonl
    meta_line "$db" >"$tmp"
    for ((run = 1; run <= ALTERNATIONS; run++)); do
        run_one myelin "$db" "$run" "$tmp"
        run_one synapse "$db" "$run" "$tmp"
    done
    mv "$tmp" "$out"
    files+=("$out")
done

"$VPY" "$ROOT/benches/vs_synapse_report.py" --output "$ROOT/benches/RESULTS.md" "${files[@]}"
log "all done in $(((SECONDS - started) / 60)) min $(((SECONDS - started) % 60)) s:" \
    "benches/RESULTS.md, ${files[*]#"$ROOT"/}"
