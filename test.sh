#!/usr/bin/env bash
# Runs every test of AbTrack Notify: unit, integration, and end-to-end suites that
# start the four binaries as processes. Needs the Rust toolchain (no protoc); installs
# what the dashboard's browser tests need (Debian's chromium, Node.js and the npm
# packages in status-web/tests/js) when it is missing.
set -euo pipefail
cd "$(dirname "$0")"

apt_install() {
  local sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y "$@"
}
if [ ! -x /usr/bin/chromium ]; then apt_install chromium; fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then apt_install nodejs npm; fi
(cd status-web/tests/js && npm ci --no-audit --no-fund)

# The code is formatted and lint-free, as the tests are green.
if command -v rustup >/dev/null; then rustup component add rustfmt clippy; fi
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

# The end-to-end suites run the binaries, so they are built first.
cargo build --workspace --bins --locked
cargo test --workspace --locked "$@"
