#!/usr/bin/env bash
# Runs the whole guestlist suite on this machine: a private PostgreSQL
# cluster under $GUESTLIST_DATA_DIR (default .local/ in the checkout), the
# identity, membership and notification services and the HTTP gateway.
# Prints the operator token and URLs; Ctrl-C or SIGTERM stops everything.
# Running it again keeps the data (and the operator token).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
bash deploy/local/install-deps.sh

DATA_DIR=${GUESTLIST_DATA_DIR:-$ROOT/.local}
mkdir -p "$DATA_DIR/logs" "$DATA_DIR/bin"
DATA_DIR=$(cd "$DATA_DIR" && pwd)
PG_BIN=/usr/lib/postgresql/15/bin

echo "building (bazel -c opt)..." >&2
bazel build -c opt //services/identity:identity //services/membership:membership \
  //services/notification:notification //services/gateway:gateway >&2
BAZEL_BIN=$(bazel info -c opt bazel-bin 2>/dev/null)
for svc in identity membership notification gateway; do
  install -m 0755 "$BAZEL_BIN/services/$svc/$svc" "$DATA_DIR/bin/$svc"
done

# --- PostgreSQL, run as the `postgres` OS user when we are root ----------
as_pg() {
  if [[ $(id -u) -eq 0 ]]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi
}
PG_DIR="$DATA_DIR/pg"
if [[ $(id -u) -eq 0 ]] && ! runuser -u postgres -- test -x "$DATA_DIR" 2>/dev/null; then
  # The postgres user cannot reach the data dir (e.g. under /root): keep the
  # cluster in a directory it can reach, linked from the data dir.
  PG_DIR="/var/lib/guestlist/$(echo -n "$DATA_DIR" | sha256sum | cut -c1-16)/pg"
  mkdir -p "$(dirname "$PG_DIR")"
  ln -sfn "$(dirname "$PG_DIR")" "$DATA_DIR/pg-home"
fi
if [[ ! -f "$PG_DIR/PG_VERSION" ]]; then
  echo "creating PostgreSQL cluster in $PG_DIR" >&2
  mkdir -p "$PG_DIR"
  [[ $(id -u) -eq 0 ]] && chown postgres: "$PG_DIR" && chmod 700 "$PG_DIR"
  as_pg "$PG_BIN/initdb" -A trust -U postgres -E UTF8 --locale=C.UTF-8 -D "$PG_DIR" >/dev/null
fi
PG_PORT_FILE="$DATA_DIR/pg.port"
if [[ ! -f "$PG_PORT_FILE" ]]; then
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' >"$PG_PORT_FILE"
fi
PG_PORT=$(cat "$PG_PORT_FILE")
if ! as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR" status >/dev/null 2>&1; then
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR" -w -l "$PG_DIR/server.log" \
    -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k /tmp -c max_connections=300" start >/dev/null
fi
for db in identity membership notification; do
  if ! psql -X -h 127.0.0.1 -p "$PG_PORT" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='guestlist_$db'" | grep -q 1; then
    psql -X -q -h 127.0.0.1 -p "$PG_PORT" -U postgres -c "CREATE DATABASE guestlist_$db" >/dev/null
  fi
done

# --- configuration (API.md environment variables win) --------------------
TOKEN_FILE="$DATA_DIR/operator-token"
if [[ -z "${GUESTLIST_OPERATOR_TOKEN:-}" ]]; then
  if [[ ! -s "$TOKEN_FILE" ]]; then
    (umask 077; head -c 32 /dev/urandom | base64 | tr -d '=+/\n' >"$TOKEN_FILE")
  fi
  GUESTLIST_OPERATOR_TOKEN=$(cat "$TOKEN_FILE")
fi
export GUESTLIST_OPERATOR_TOKEN
export GUESTLIST_IDENTITY_ADDR=${GUESTLIST_IDENTITY_ADDR:-127.0.0.1:50051}
export GUESTLIST_MEMBERSHIP_ADDR=${GUESTLIST_MEMBERSHIP_ADDR:-127.0.0.1:50052}
export GUESTLIST_NOTIFICATION_ADDR=${GUESTLIST_NOTIFICATION_ADDR:-127.0.0.1:50053}
export GUESTLIST_GATEWAY_PORT=${GUESTLIST_GATEWAY_PORT:-8080}
export GUESTLIST_PUBLIC_URL=${GUESTLIST_PUBLIC_URL:-http://127.0.0.1:$GUESTLIST_GATEWAY_PORT}
mkdir -p "$DATA_DIR/mail"
export GUESTLIST_SMTP_URL=${GUESTLIST_SMTP_URL:-file://$DATA_DIR/mail}
for db in identity membership notification; do
  var="GUESTLIST_${db^^}_DATABASE_URL"
  export "$var"="${!var:-host=127.0.0.1 port=$PG_PORT user=postgres dbname=guestlist_$db}"
done

# --- services ------------------------------------------------------------
PIDS=()
stop_all() {
  local code=${1:-0}
  trap - INT TERM EXIT
  echo "stopping..." >&2
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  as_pg "$PG_BIN/pg_ctl" -D "$PG_DIR" -m fast -w stop >/dev/null 2>&1 || true
  echo "stopped" >&2
  exit "$code"
}
trap 'stop_all 0' INT TERM
trap 'stop_all 1' EXIT

start() {
  local svc=$1
  "$DATA_DIR/bin/$svc" >>"$DATA_DIR/logs/$svc.log" 2>&1 &
  PIDS+=($!)
}
wait_port() {
  local name=$1 hostport=$2 pid=$3
  local host=${hostport%:*} port=${hostport##*:}
  [[ $host == 0.0.0.0 ]] && host=127.0.0.1
  for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; then return 0; fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$name failed to start; last log lines:" >&2
      tail -n 20 "$DATA_DIR/logs/$name.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  echo "$name did not open $hostport in 30 s (see $DATA_DIR/logs/$name.log)" >&2
  exit 1
}

start identity;     wait_port identity "$GUESTLIST_IDENTITY_ADDR" "${PIDS[-1]}"
start membership;   wait_port membership "$GUESTLIST_MEMBERSHIP_ADDR" "${PIDS[-1]}"
start notification; wait_port notification "$GUESTLIST_NOTIFICATION_ADDR" "${PIDS[-1]}"
start gateway;      wait_port gateway "127.0.0.1:$GUESTLIST_GATEWAY_PORT" "${PIDS[-1]}"

cat <<INFO
guestlist is running.
  operator token : $GUESTLIST_OPERATOR_TOKEN
  HTTP gateway   : http://127.0.0.1:$GUESTLIST_GATEWAY_PORT  (OpenAPI: /v1/openapi.json)
  identity gRPC  : $GUESTLIST_IDENTITY_ADDR
  membership gRPC: $GUESTLIST_MEMBERSHIP_ADDR
  notification   : $GUESTLIST_NOTIFICATION_ADDR
  mail           : $GUESTLIST_SMTP_URL
  data and logs  : $DATA_DIR
Press Ctrl-C to stop.
INFO

# Exit (and stop the rest) if any service dies.
while true; do
  for i in "${!PIDS[@]}"; do
    if ! kill -0 "${PIDS[$i]}" 2>/dev/null; then
      echo "a service exited unexpectedly; see $DATA_DIR/logs" >&2
      stop_all 1
    fi
  done
  sleep 1 &
  wait $! || true
done
