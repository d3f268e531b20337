#!/usr/bin/env bash
# Runs every test of AbTrack Notify: unit, integration, and end-to-end suites that
# start the four binaries as processes, then the Windows build under wine. Needs the
# Rust toolchain (no protoc); installs what is missing: Debian's chromium, Node.js and
# the npm packages in status-web/tests/js for the dashboard's browser tests, and
# mingw-w64, wine and the x86_64-pc-windows-gnu target for the Windows run.
set -euo pipefail
cd "$(dirname "$0")"

apt_install() {
  local sudo=""
  if [ "$(id -u)" != 0 ]; then sudo="sudo"; fi
  $sudo apt-get update
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y "$@"
}
# Debian packages: Chromium, Node.js and npm for the dashboard's browser tests;
# mingw-w64's gcc and wine for the Windows build's run under wine.
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
{ command -v node >/dev/null && command -v npm >/dev/null; } || missing+=(nodejs npm)
command -v x86_64-w64-mingw32-gcc >/dev/null || missing+=(gcc-mingw-w64-x86-64)
[ -x /usr/lib/wine/wine64 ] || command -v wine64 >/dev/null || missing+=(wine64)
if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
(cd status-web/tests/js && npm ci --no-audit --no-fund)

# The code is formatted and lint-free, as the tests are green.
if command -v rustup >/dev/null; then
  rustup component add rustfmt clippy
  rustup target add x86_64-pc-windows-gnu
fi
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

# The end-to-end suites run the binaries, so they are built first.
cargo build --workspace --bins --locked
cargo test --workspace --locked "$@"

# Windows: the launcher and the four services cross-built for x86_64-pc-windows-gnu,
# then `start.bat --dry-run` run under wine: healthy, a job sent, a killed service
# started again, nothing left after Ctrl-C (e2e/src/bin/windows_smoke.rs, which the
# GitHub workflow also runs on Windows itself).
cargo build --locked --target x86_64-pc-windows-gnu -p abtrack-launcher \
  -p abtrack-dispatcher -p abtrack-wa-gateway -p abtrack-sheets-logger -p abtrack-status-web
# The smoke test's own Windows build, which the GitHub workflow runs on Windows itself,
# is built too, so it keeps building there.
cargo build --locked --target x86_64-pc-windows-gnu -p abtrack-e2e --bin windows-smoke
# windows-smoke (Linux) was built with the other binaries above.
./target/debug/windows-smoke target/x86_64-pc-windows-gnu/debug
