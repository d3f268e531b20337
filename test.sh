#!/usr/bin/env bash
# Runs every test of AbTrack Notify: unit, integration, and end-to-end suites that
# start the four binaries as processes. Needs only the Rust toolchain (no protoc).
set -euo pipefail
cd "$(dirname "$0")"
# The end-to-end suites run the binaries, so they are built first.
cargo build --workspace --bins --locked
cargo test --workspace --locked "$@"
