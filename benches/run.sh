#!/usr/bin/env bash
# The end-to-end benchmark: the echo baseline (`multiguna serve --echo`: framing and
# codec only, no policy, authoriser or ledger) and the real switch, back to back, under
# the same `multiguna loadgen` settings, against a fresh database holding a synthetic
# province. Prints both results and the ratio switch/echo.
#
#   benches/run.sh                        # 20 s each, 10,000 families, SQLite
#   DURATION=60 benches/run.sh            # longer runs
#   BACKEND=postgres benches/run.sh       # a fresh database on MULTIGUNA_TEST_DATABASE_URL's server
#
# Settings (environment): DURATION (s, 20), FAMILIES (10000), CONNECTIONS (8), DEPTH (32),
# RATE (requests/s: open loop; empty: closed loop), MIX (loadgen --mix), BACKEND
# (sqlite | postgres), KEEP=1 keeps the work folder (databases, logs, JSON reports).
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION="${DURATION:-20}"
FAMILIES="${FAMILIES:-10000}"
CONNECTIONS="${CONNECTIONS:-8}"
DEPTH="${DEPTH:-32}"
RATE="${RATE:-}"
MIX="${MIX:-}"
BACKEND="${BACKEND:-sqlite}"

say() { printf 'run.sh: %s\n' "$*" >&2; }

say "building release"
cargo build --release --quiet
BIN="$PWD/target/release/multiguna"
WORK="$(mktemp -d -t multiguna-bench.XXXXXX)"
PIDS=()
PG_ADMIN=""
PG_DB=""

# Every server this script started goes, and the PostgreSQL database it made, whatever
# way the script ends.
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [[ -n "$PG_DB" ]]; then
    psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  if [[ "${KEEP:-}" == 1 ]]; then say "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

case "$BACKEND" in
  sqlite) DB_URL="sqlite://$WORK/multiguna.db" ;;
  postgres)
    PG_ADMIN="${MULTIGUNA_TEST_DATABASE_URL:?BACKEND=postgres needs MULTIGUNA_TEST_DATABASE_URL}"
    PG_DB="mg_bench_$$"
    psql "$PG_ADMIN" -qc "CREATE DATABASE $PG_DB" >/dev/null
    DB_URL="${PG_ADMIN%/*}/$PG_DB"
    ;;
  *) say "BACKEND must be sqlite or postgres"; exit 2 ;;
esac

export MULTIGUNA__DATABASE__URL="$DB_URL"
export MULTIGUNA__LISTENERS__0__BIND=127.0.0.1:0
export MULTIGUNA__ADMIN__BIND=127.0.0.1:0
export MULTIGUNA_LOG="${MULTIGUNA_LOG:-warn}"

say "province of $FAMILIES families into $BACKEND"
"$BIN" province --families "$FAMILIES" --seed 42 --out "$WORK/province" >/dev/null
"$BIN" import beneficiaries "$WORK/province/beneficiaries.csv" >/dev/null
"$BIN" import providers "$WORK/province/providers.csv" >/dev/null
"$BIN" disburse "$WORK/province/disbursements.csv" >/dev/null

# Starts `multiguna serve "$@"` as NAME; sets SERVER_PID and ADDR from its stdout line
# `multiguna: listener iso on ADDR`.
start_server() {
  local name=$1
  shift
  "$BIN" serve "$@" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  ADDR=""
  for _ in $(seq 1200); do
    ADDR="$(sed -n 's/^multiguna: listener iso on //p' "$WORK/$name.out")"
    [[ -n "$ADDR" ]] && return 0
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      say "$name exited before listening: $(tail -n 3 "$WORK/$name.err")"
      exit 1
    fi
    sleep 0.1
  done
  say "$name did not start within 120 s"
  exit 1
}

stop_server() {
  kill -TERM "$SERVER_PID"
  wait "$SERVER_PID" || say "serve exited with $?"
}

# The same load for both servers; the report goes to NAME.json.
run_load() {
  local name=$1
  local args=(--to "$ADDR" --cards "$WORK/province/beneficiaries.csv"
    --duration-s "$DURATION" --connections "$CONNECTIONS" --depth "$DEPTH" --json)
  [[ -n "$RATE" ]] && args+=(--rate "$RATE")
  [[ -n "$MIX" ]] && args+=(--mix "$MIX")
  say "$name: loadgen ${args[*]}"
  # In the background and waited for, so Ctrl-C or a TERM runs the trap at once
  # (bash runs traps only between foreground commands).
  "$BIN" loadgen "${args[@]}" >"$WORK/$name.json" &
  PIDS+=("$!")
  wait "$!"
}

# Other work on the machine skews the figures: say how busy it was.
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
start_server echo --echo
run_load echo
stop_server

start_server switch
run_load switch
stop_server

# A number from a loadgen JSON report (its keys are unique, so no JSON tool is needed).
num() { sed -n "s/.*\"$2\":\([-0-9.eE+]*\).*/\1/p" "$WORK/$1.json"; }
codes() { sed -n 's/.*"response_codes":{\([^}]*\)}.*/\1/p' "$WORK/$1.json" | tr -d '"'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.3f", a / b; else print "-" }'; }
row() {
  printf '%-7s %9s %9s %7s %10.1f %9.3f %9.3f %9.3f %9.3f %9.3f\n' "$1" \
    "$(num "$1" sent)" "$(num "$1" answered)" "$(num "$1" errors)" \
    "$(num "$1" throughput_per_s)" "$(num "$1" p50)" "$(num "$1" p90)" \
    "$(num "$1" p99)" "$(num "$1" p999)" "$(num "$1" max)"
}

mode="closed loop"
[[ -n "$RATE" ]] && mode="open loop at $RATE/s"
echo "multiguna benchmark: $(git describe --always --dirty 2>/dev/null || echo '?'), $BACKEND, $FAMILIES families"
echo "machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1); loadgen on the same machine; load average before: $LOAD_BEFORE"
echo "load: $mode, $CONNECTIONS connections x depth $DEPTH, ${DURATION} s each, mix ${MIX:-default}"
echo
printf '%-7s %9s %9s %7s %10s %9s %9s %9s %9s %9s\n' \
  "" sent answered errors "req/s" "p50 ms" "p90 ms" "p99 ms" "p99.9 ms" "max ms"
row echo
row switch
echo
echo "response codes: echo $(codes echo); switch $(codes switch)"
if [[ -n "$RATE" ]]; then
  echo "unsent (scheduled, never sent: behind schedule): echo $(num echo unsent_scheduled), switch $(num switch unsent_scheduled)"
fi
echo "ratio switch/echo: throughput $(ratio "$(num switch throughput_per_s)" "$(num echo throughput_per_s)")," \
  "p50 latency $(ratio "$(num switch p50)" "$(num echo p50)")," \
  "p99 latency $(ratio "$(num switch p99)" "$(num echo p99)")"
