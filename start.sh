#!/usr/bin/env bash
# Builds and starts the four AbTrack Notify services in this window; Ctrl-C stops
# them all. Usage: ./start.sh [--dry-run] [--debug]
set -euo pipefail
cd "$(dirname "$0")"

profile=release
for arg in "$@"; do
  case "$arg" in
    --dry-run) export WA_MODE=dry-run ;;
    --debug) profile=debug ;;
    -h|--help)
      echo "usage: ./start.sh [--dry-run] [--debug]"
      echo "  --dry-run  the gateway writes messages to data/wa-gateway/dry-run.jsonl instead of WhatsApp"
      echo "  --debug    use a debug build (faster to compile, slower to run)"
      echo "Every service reads its settings from the environment; see docs/configuration.md."
      exit 0 ;;
    *) echo "start.sh: unknown option $arg (try --help)" >&2; exit 64 ;;
  esac
done

if [[ -n "${ABTRACK_BIN_DIR:-}" ]]; then
  bin="$ABTRACK_BIN_DIR"
else
  bin="target/$profile"
  flag=()
  [[ "$profile" == release ]] && flag=(--release)
  echo "building the services ($profile; the first build takes a few minutes)..."
  cargo build "${flag[@]}" --locked --bins --quiet
fi

# A port already in use is the most common start-up failure: name it clearly.
port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
check_port() {
  local var=$1 default=$2
  local addr="${!var:-$default}"
  local port="${addr##*:}"
  if port_taken "$port"; then
    echo "start.sh: port $port is already in use (set $var to another address, or stop what is using it)" >&2
    exit 1
  fi
}
check_port STATUS_WEB_ADDR 127.0.0.1:8080
check_port DISPATCHER_ADDR 127.0.0.1:50051
check_port WA_ADDR 127.0.0.1:50052
check_port SHEETS_ADDR 127.0.0.1:50053

pids=()
stop_all() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap 'stop_all; exit 130' INT
trap 'stop_all; exit 143' TERM
trap stop_all EXIT

start() {
  local name=$1
  "$bin/$name" > >(sed -u "s/^/[$name] /") 2>&1 &
  pids+=($!)
}
start wa-gateway
start sheets-logger
start dispatcher
start status-web

healthy=0
for _ in $(seq 1 100); do
  if "$bin/status-web" healthcheck 2>/dev/null; then
    healthy=1
    addr="${STATUS_WEB_ADDR:-127.0.0.1:8080}"
    echo
    echo "AbTrack Notify is running. Dashboard: http://${addr/0.0.0.0/127.0.0.1}/"
    echo "Press Ctrl-C to stop all four services."
    echo
    break
  fi
  sleep 0.1
done
if [[ $healthy == 0 ]]; then
  echo "start.sh: status-web did not answer within 10 s; see the [status-web] lines above" >&2
fi

# When any service exits, stop the others.
set +e
wait -n "${pids[@]}"
code=$?
echo "start.sh: a service stopped (exit code $code); stopping the others" >&2
exit "$code"
