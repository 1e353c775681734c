#!/usr/bin/env bash
# Runs the flights job from a fresh clone: checks the machine (.ci/prerequisites.sh
# build: installs missing Debian packages as root, else prints the apt-get line and
# stops), builds the WASM operator (Rust guest SDK, wasm32-wasip2) and the `sluice`
# binary, then runs plugins/flight-delays/flights.yaml.
# The data (vega-datasets@3.2.1, 13 MB) is fetched with npm on first use into
# ${SLUICE_CACHE_DIR:-~/.cache/sluice}/datasets and checked against its SHA-256.
# Extra arguments go to `sluice run` (try --parallelism 4, --batch-size 1, --quiet).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$root"
# Installs (as root) or names what the build lacks, before compiling anything.
bash .ci/prerequisites.sh build
# The guest workspace has its own target dir; an outer CARGO_TARGET_DIR must not move it.
env -u CARGO_TARGET_DIR cargo build --quiet --release --target wasm32-wasip2 \
  --manifest-path plugins/Cargo.toml --target-dir plugins/target -p flight-delays
exec cargo run --quiet --release -p sluice-cli -- run plugins/flight-delays/flights.yaml "$@"
