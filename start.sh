#!/usr/bin/env bash
# Starts the four AbTrack Notify services in this terminal, waits until all four are
# healthy, shows (and opens) the dashboard, and stops all four on Ctrl-C, on kill, or
# when the terminal closes. Usage: ./start.sh [--dry-run] [--debug]
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

usage() {
  cat <<'EOF'
usage: ./start.sh [--dry-run] [--debug]
  --dry-run  nothing reaches WhatsApp: messages are appended to data/wa-gateway/dry-run.jsonl
  --debug    when building from source, build in debug mode (faster to compile, slower to run)

Environment (besides every service variable of docs/configuration.md):
  ABTRACK_BIN_DIR     folder holding the four binaries; skips looking next to the script and building
  ABTRACK_NO_BROWSER  set to anything to not open the dashboard in a browser
EOF
}

profile=release
for arg in "$@"; do
  case "$arg" in
    --dry-run) export WA_MODE=dry-run ;;
    --debug) profile=debug ;;
    -h | --help)
      usage
      exit 0
      ;;
    *) die 64 "unknown option $arg (try --help)" ;;
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

services="wa-gateway sheets-logger dispatcher status-web"

# ---- the binaries ------------------------------------------------------------------
# A crate folder next to the script (./dispatcher/ in a source checkout) is not a binary.
is_binary() { [ -f "$1" ] && [ -x "$1" ]; }
has_all() {
  local s
  for s in $services; do is_binary "$1/$s" || return 1; done
}
if [ -n "${ABTRACK_BIN_DIR:-}" ]; then
  has_all "$ABTRACK_BIN_DIR" ||
    die 64 "ABTRACK_BIN_DIR=$ABTRACK_BIN_DIR does not hold the four binaries ($services)"
  bin="$ABTRACK_BIN_DIR"
elif has_all "$here"; then
  bin="$here"
else
  [ -f Cargo.toml ] ||
    die 69 "the four binaries ($services) are not next to start.sh, and there are no sources to build them from"
  command -v cargo >/dev/null 2>&1 ||
    die 69 "the four binaries are not next to start.sh and cargo is not installed: install Rust from https://rustup.rs, or download a release archive"
  flag=""
  [ "$profile" = release ] && flag="--release"
  say "building the services ($profile; the first build takes several minutes)..."
  # shellcheck disable=SC2086 # $flag is empty or one word
  cargo build $flag --locked --quiet \
    -p abtrack-dispatcher -p abtrack-wa-gateway -p abtrack-sheets-logger -p abtrack-status-web ||
    die 1 "the build failed (see above); a Rust toolchain of version 1.94 or later is needed (rustup update)"
  bin="$here/target/$profile"
fi

# ---- addresses: each client follows the address its server was given ----------------
: "${STATUS_WEB_ADDR:=127.0.0.1:8080}" "${DISPATCHER_ADDR:=127.0.0.1:50051}"
: "${WA_ADDR:=127.0.0.1:50052}" "${SHEETS_ADDR:=127.0.0.1:50053}"
export STATUS_WEB_ADDR DISPATCHER_ADDR WA_ADDR SHEETS_ADDR
port_of() { printf '%s' "${1##*:}"; }
# The address to reach a listener on this machine: a wildcard bind is reached on loopback.
local_host() {
  local host="${1%:*}"
  case "$host" in
    0.0.0.0) host=127.0.0.1 ;;
    "[::]") host="[::1]" ;;
  esac
  printf '%s' "$host"
}
url_of() { printf 'http://%s:%s' "$(local_host "$1")" "$(port_of "$1")"; }
: "${DISPATCHER_GATEWAY_URL:=$(url_of "$WA_ADDR")}" "${DISPATCHER_LOGGER_URL:=$(url_of "$SHEETS_ADDR")}"
: "${STATUS_WEB_DISPATCHER_URL:=$(url_of "$DISPATCHER_ADDR")}"
: "${STATUS_WEB_GATEWAY_URL:=$(url_of "$WA_ADDR")}" "${STATUS_WEB_LOGGER_URL:=$(url_of "$SHEETS_ADDR")}"
export DISPATCHER_GATEWAY_URL DISPATCHER_LOGGER_URL STATUS_WEB_DISPATCHER_URL
export STATUS_WEB_GATEWAY_URL STATUS_WEB_LOGGER_URL

addr_var() {
  case "$1" in
    wa-gateway) echo WA_ADDR ;;
    sheets-logger) echo SHEETS_ADDR ;;
    dispatcher) echo DISPATCHER_ADDR ;;
    status-web) echo STATUS_WEB_ADDR ;;
  esac
}

# ---- before starting: configuration and credential files, then free ports ----------
# `<binary> healthcheck` reads the configuration first (credentials.json,
# sheets-credentials.json, config.json included) and exits 64 when it is bad; then it
# asks a running instance, so 0 means one is already serving on that address.
for s in $services; do
  var=$(addr_var "$s")
  addr="${!var}"
  set +e
  problem=$("$bin/$s" healthcheck 2>&1 </dev/null)
  code=$?
  set -e
  if [ "$code" = 64 ]; then
    printf '%s\n' "$problem" >&2
    die 64 "$s cannot start with this configuration (the line above names the variable or file to fix)"
  elif [ "$code" = 0 ]; then
    die 1 "port $(port_of "$addr") is already in use: AbTrack Notify's $s is already running on $addr (stop it, or set $var to another address)"
  fi
  # Anything answering there (a connection succeeds) holds the port.
  if (exec 3<>"/dev/tcp/$(local_host "$addr")/$(port_of "$addr")") 2>/dev/null; then
    die 1 "port $(port_of "$addr") is already in use by another program ($s needs $addr; stop that program, or set $var to another address)"
  fi
done

# ---- run the four, each line prefixed by its name -----------------------------------
pids=""
names=""
waiter=""
stopping=0
alive() { kill -0 "$1" 2>/dev/null; }
stop_all() {
  [ "$stopping" = 1 ] && return 0
  stopping=1
  local pid i=0 left
  [ -n "$waiter" ] && { kill "$waiter" 2>/dev/null || true; }
  for pid in $pids; do kill -TERM "$pid" 2>/dev/null || true; done
  # The services finish in-flight work within 10 s; after 15 s they are killed.
  while [ $i -lt 150 ]; do
    left=0
    for pid in $pids; do alive "$pid" && left=1; done
    [ $left = 0 ] && break
    sleep 0.1
    i=$((i + 1))
  done
  for pid in $pids; do
    if alive "$pid"; then
      say "process $pid did not stop within 15 s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
  done
  wait 2>/dev/null || true
}
on_signal() {
  say "$1: stopping the four services..."
  stop_all
  say "all four services are stopped"
  exit "$2"
}
trap 'on_signal interrupted 130' INT
trap 'on_signal terminated 143' TERM
trap 'on_signal "hang-up (the terminal closed)" 129' HUP
trap 'stop_all' EXIT

# Reads one service's output and prints it prefixed. It ignores Ctrl-C so it keeps
# draining the service's last lines while the service shuts down.
prefix() {
  trap '' INT
  local line
  while IFS= read -r line || [ -n "$line" ]; do printf '[%s] %s\n' "$1" "$line"; done
}

start_one() {
  "$bin/$1" </dev/null > >(prefix "$1") 2>&1 &
  pids="$pids $!"
  names="$names $1=$!"
}
for s in $services; do start_one "$s"; done

pid_of() {
  local entry
  for entry in $names; do
    if [ "${entry%%=*}" = "$1" ]; then printf '%s' "${entry#*=}"; fi
  done
}

# A service that stopped: say so and exit with its code (the EXIT trap stops the rest).
exit_if_stopped() {
  local s pid code
  for s in $services; do
    pid=$(pid_of "$s")
    if ! alive "$pid"; then
      set +e
      wait "$pid"
      code=$?
      set -e
      [ "$code" = 0 ] && code=1
      die "$code" "$s stopped (exit code $code); stopping the others. See the [$s] lines above"
    fi
  done
}

# ---- wait until all four are healthy (at most 60 s) ---------------------------------
for s in $services; do
  tries=0
  until "$bin/$s" healthcheck >/dev/null 2>&1 </dev/null; do
    exit_if_stopped
    tries=$((tries + 1))
    if [ $tries -ge 120 ]; then
      die 1 "$s did not become healthy within 60 s; see the [$s] lines above"
    fi
    sleep 0.5
  done
done

dashboard="$(url_of "$STATUS_WEB_ADDR")/"
{
  echo
  echo "AbTrack Notify is running: all four services are healthy."
  echo "  Dashboard: $dashboard"
  if [ -n "${STATUS_WEB_PASSWORD:-}" ]; then echo "  (log in with STATUS_WEB_PASSWORD)"; fi
  if [ "${WA_MODE:-}" = dry-run ]; then
    echo "  Dry run: nothing reaches WhatsApp; messages go to ${WA_DRY_RUN_FILE:-${WA_DATA_DIR:-data/wa-gateway}/dry-run.jsonl}"
  else
    echo "  To link WhatsApp, scan the QR code shown on the dashboard (also printed above as [wa-gateway] lines)."
  fi
  echo "  Press Ctrl-C to stop all four services."
  echo
} >&2

if [ -z "${ABTRACK_NO_BROWSER:-}" ]; then
  if command -v open >/dev/null 2>&1 && [ "$(uname -s)" = Darwin ]; then
    (open "$dashboard" >/dev/null 2>&1 &)
  elif command -v xdg-open >/dev/null 2>&1 && [ -n "${DISPLAY:-}${WAYLAND_DISPLAY:-}" ]; then
    (xdg-open "$dashboard" >/dev/null 2>&1 &)
  fi
fi

# ---- run until a signal arrives or a service stops ----------------------------------
# `sleep & wait` rather than `sleep`, so a signal runs its trap at once.
while :; do
  exit_if_stopped
  sleep 1 &
  waiter=$!
  wait "$waiter" || true
  waiter=""
done
