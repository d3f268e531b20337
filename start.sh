#!/usr/bin/env bash
# Starts AbTrack Notify in this terminal: finds the binaries (or builds them), then runs
# the launcher, abtrack-notify, which starts the four services, shows the dashboard's
# address once all four are healthy, starts a service again when it exits, and stops
# all four on Ctrl-C, on kill, or when the terminal closes.
# Usage: ./start.sh [--dry-run] [--debug]
#
# Binaries: $ABTRACK_BIN_DIR when set, else the ones next to this script (a release
# archive), else built from source with cargo. Data goes to ./data next to this script;
# credentials.json, sheets-credentials.json and config.json are read from here too.
# Written for bash 3.2 and later (macOS and Linux).
set -euo pipefail

say() { printf 'start.sh: %s\n' "$*" >&2; }
die() {
  local code=$1
  shift
  say "$@"
  exit "$code"
}

profile=release
launcher_args=()
for arg in "$@"; do
  case "$arg" in
    --debug) profile=debug ;;
    -h | --help)
      cat <<'USAGE'
usage: ./start.sh [--dry-run] [--debug]
  --dry-run  nothing reaches WhatsApp: messages are appended to data/wa-gateway/dry-run.jsonl
  --debug    when building from source, build in debug mode (faster to compile, slower to run)

Environment (besides every service variable of docs/configuration.md):
  ABTRACK_BIN_DIR     folder holding the five binaries; skips looking next to the script and building
  ABTRACK_NO_BROWSER  set to anything to not open the dashboard in a browser
USAGE
      exit 0
      ;;
    *) launcher_args+=("$arg") ;;
  esac
done

if [ -n "${ABTRACK_BIN_DIR:-}" ]; then
  case "$ABTRACK_BIN_DIR" in
    /*) ;;
    *) ABTRACK_BIN_DIR="$(pwd)/$ABTRACK_BIN_DIR" ;;
  esac
fi
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"

binaries="abtrack-notify wa-gateway sheets-logger dispatcher status-web"
# A crate folder next to the script (./dispatcher/ in a source checkout) is not a binary.
has_all() {
  local b
  for b in $binaries; do [ -f "$1/$b" ] && [ -x "$1/$b" ] || return 1; done
}
if [ -n "${ABTRACK_BIN_DIR:-}" ]; then
  has_all "$ABTRACK_BIN_DIR" ||
    die 64 "ABTRACK_BIN_DIR=$ABTRACK_BIN_DIR does not hold the five binaries ($binaries)"
elif has_all "$here"; then
  ABTRACK_BIN_DIR="$here"
else
  [ -f Cargo.toml ] ||
    die 69 "the five binaries ($binaries) are not next to start.sh, and there are no sources to build them from"
  command -v cargo >/dev/null 2>&1 ||
    die 69 "the binaries are not next to start.sh and cargo is not installed: install Rust from https://rustup.rs, or download a release archive"
  flag=""
  [ "$profile" = release ] && flag="--release"
  say "building the services ($profile; the first build takes several minutes)..."
  # shellcheck disable=SC2086 # $flag is empty or one word
  cargo build $flag --locked --quiet -p abtrack-launcher \
    -p abtrack-dispatcher -p abtrack-wa-gateway -p abtrack-sheets-logger -p abtrack-status-web ||
    die 1 "the build failed (see above); a Rust toolchain of version 1.94 or later is needed (rustup update)"
  ABTRACK_BIN_DIR="$here/target/$profile"
fi
export ABTRACK_BIN_DIR

# The launcher takes over this process, so Ctrl-C and the terminal's hang-up reach it.
exec "$ABTRACK_BIN_DIR/abtrack-notify" ${launcher_args[@]+"${launcher_args[@]}"}
