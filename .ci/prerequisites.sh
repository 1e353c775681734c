#!/usr/bin/env bash
# Installs what Sluice needs on a fresh Debian machine, or stops before anything is
# compiled, naming the command that installs what is missing.
#
#   bash .ci/prerequisites.sh build   what building and running the flights demo needs:
#                                     a C/C++ toolchain and libclang (RocksDB's bindings),
#                                     make (librdkafka), npm (the data set, the dashboard),
#                                     Rust's wasm32-wasip2 target (the guest operators)
#   bash .ci/prerequisites.sh test    all of that, and what the tests need: clang, lld and
#                                     wasi-libc (C operators), Chromium (the dashboard's
#                                     tests), Java 17 and Maven (Apache Kafka, from Maven
#                                     Central), componentize-py and schemathesis (PyPI, in
#                                     venvs), componentize-js and esbuild (npm)
#
# Debian packages are installed with apt-get when this runs as root (or with sudo when it
# can without a password); otherwise it prints the one apt-get line to run and exits 1.
# Everything else goes under ${SLUICE_CACHE_DIR:-~/.cache/sluice}, once per machine.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mode="${1:-build}"
cache="${SLUICE_CACHE_DIR:-$HOME/.cache/sluice}"

have_pkg() { dpkg -s "$1" >/dev/null 2>&1; }
missing=()
# need PACKAGE [COMMAND]: PACKAGE is missing unless COMMAND is on PATH or dpkg has it
# (without dpkg, a package with no command to look for cannot be checked and is assumed).
need() {
  if [ -n "${2:-}" ] && command -v "$2" >/dev/null 2>&1; then return 0; fi
  if command -v dpkg >/dev/null 2>&1; then
    have_pkg "$1" || missing+=("$1")
  elif [ -n "${2:-}" ]; then
    missing+=("$1")
  fi
}

command -v cargo >/dev/null 2>&1 || {
  echo "Sluice needs Rust 1.95 or newer with rustup (https://rustup.rs), then run this again." >&2
  exit 1
}
# Building: RocksDB's bindings are generated with libclang; RocksDB is C++; librdkafka's
# configure script runs make; npm fetches the flights data set and builds the dashboard.
need libclang-dev
need g++ c++
need make make
need npm npm
if [ "$mode" = test ]; then
  # `sluice build` of C operators: Debian's clang 14 for wasm32-wasi.
  for pkg in clang lld wasi-libc libclang-rt-14-dev-wasm32; do need "$pkg"; done
  # The dashboard's browser tests: Debian's Chromium, driven by playwright-core.
  need chromium chromium
  # Apache Kafka from Maven Central: Java 17 and Maven.
  java_ok() { command -v java >/dev/null 2>&1 && java -version 2>&1 | grep -Eq 'version "(1[7-9]|[2-9][0-9])'; }
  java_ok || missing+=(openjdk-17-jre-headless)
  need maven mvn
  python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
fi

if [ ${#missing[@]} -gt 0 ]; then
  line="apt-get install -y --no-install-recommends ${missing[*]}"
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${missing[*]} (apt-get)…" >&2
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $line -qq >/dev/null
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    echo "installing ${missing[*]} (sudo apt-get)…" >&2
    sudo apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive $line -qq >/dev/null
  else
    echo "Sluice needs Debian packages that are missing. Install them, then run this again:" >&2
    echo "  sudo apt-get update && sudo $line" >&2
    exit 1
  fi
fi

# Guest operators are built for wasm32-wasip2.
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  echo "adding the wasm32-wasip2 Rust target (once)…" >&2
  rustup target add wasm32-wasip2
fi

[ "$mode" = test ] || exit 0

venv_with() { # venv_with DIR PACKAGE==VERSION CHECK-COMMAND...
  local dir="$1" pkg="$2"
  shift 2
  "$@" >/dev/null 2>&1 && return 0
  echo "installing $pkg into $dir (PyPI)…" >&2
  python3 -m venv "$dir"
  "$dir/bin/pip" install -q "$pkg"
}
# The Python guest SDK's tests build components with componentize-py.
venv_with "$cache/venv" componentize-py==0.25.0 \
  sh -c "'$cache/venv/bin/componentize-py' --version | grep -q '^componentize-py 0.25.0$'"
# The API's property-based test runs schemathesis against the served OpenAPI document.
venv_with "$cache/schemathesis" schemathesis==4.32.5 \
  sh -c "'$cache/schemathesis/bin/st' --version | grep -q 'version 4.32.5$'"

# The TypeScript guest SDK's tests bundle with esbuild and build with componentize-js.
node_tools="$cache/node"
if [ ! -x "$node_tools/node_modules/.bin/componentize-js" ] || [ ! -x "$node_tools/node_modules/.bin/esbuild" ]; then
  echo "installing componentize-js and esbuild into $node_tools (npm)…" >&2
  mkdir -p "$node_tools"
  npm install --prefix "$node_tools" --no-audit --no-fund --silent @bytecodealliance/componentize-js@0.23 esbuild@0.25
fi

# Apache Kafka 4.1.1's jars (Maven Central), for the Kafka tests and benchmark.
bash tests/kafka-broker/kafka-broker.sh fetch
