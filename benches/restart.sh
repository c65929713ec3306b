#!/usr/bin/env bash
# Start-up after a busy day: a province, DURATION seconds of closed-loop load (every
# decision lands in the idempotency window), a clean stop; then each binary is started
# STARTS times from that same ledger (restored before every start) and timed from exec
# to its listener line, with its peak resident memory (VmHWM) at that moment.
#
#   benches/restart.sh                                   # this tree's binary, SQLite
#   BINARIES="/tmp/wt-target/release/multiguna target/release/multiguna" benches/restart.sh
#   BACKEND=postgres benches/restart.sh
#   PROJECTIONS=both benches/restart.sh                  # also from a ledger without its projections
#
# Settings (environment): DURATION (s of load, 20), FAMILIES (10000), STARTS (2, per
# binary, taken in turns), BINARIES (space-separated paths; default this tree's release
# build), BACKEND (sqlite | postgres), PROJECTIONS (kept | dropped | both: start with
# the projection store as the load left it, without it (as after an upgrade to a new
# projection layout: the start projects the whole ledger again before it serves), or
# each in turn), KEEP=1 keeps the work folder.
set -euo pipefail
source "$(dirname "$0")/common.sh"
mg_init restart

DURATION="${DURATION:-20}"
STARTS="${STARTS:-2}"
BINARIES="${BINARIES:-$BIN}"
LOAD_BIN="$BIN"
case "${PROJECTIONS:=kept}" in
  kept | dropped) MODES=("$PROJECTIONS") ;;
  both) MODES=(kept dropped) ;;
  *) mg_say "PROJECTIONS must be kept, dropped or both"; exit 2 ;;
esac

mg_database "${BACKEND:-sqlite}"
mg_province "${FAMILIES:-10000}"

mg_start load
mg_say "load: ${DURATION} s closed loop, 8 x 32"
mg_loadgen "$WORK/load.json" --duration-s "$DURATION" --connections 8 --depth 32
mg_terminate
DECISIONS="$(mg_json "$WORK/load.json" 'r["answered"]')"

# The ledger as the load left it, restored before each start: a clean stop writes a
# checkpoint, which would make every later start read less.
case "$BACKEND" in
  sqlite)
    mkdir "$WORK/saved"
    cp "$WORK"/multiguna.db* "$WORK/saved/"
    restore() { rm -f "$WORK"/multiguna.db*; cp "$WORK"/saved/multiguna.db* "$WORK/"; }
    drop_projections() { rm -f "$WORK"/multiguna.db-projections*; }
    ;;
  postgres)
    psql "$PG_ADMIN" -qc "CREATE DATABASE ${PG_DB}_saved TEMPLATE $PG_DB" >/dev/null
    mg_on_exit "psql '$PG_ADMIN' -qc 'DROP DATABASE IF EXISTS ${PG_DB}_saved WITH (FORCE)' >/dev/null 2>&1"
    restore() {
      psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null
      psql "$PG_ADMIN" -qc "CREATE DATABASE $PG_DB TEMPLATE ${PG_DB}_saved" >/dev/null
    }
    drop_projections() {
      mg_sql "DROP TABLE IF EXISTS card_history, account_history, projection_head, projection_layout" >/dev/null
    }
    ;;
esac

echo "multiguna restart: $BACKEND, ${FAMILIES:-10000} families, $DECISIONS decisions in the window"
for ((run = 1; run <= STARTS; run++)); do
  for BIN in $BINARIES; do
    for mode in "${MODES[@]}"; do
      restore
      [[ $mode == dropped ]] && drop_projections
      started=$(date +%s%N)
      mg_start "start"
      ready=$(date +%s%N)
      peak_kib=$(awk '/^VmHWM/ { print $2 }' "/proc/$SERVER_PID/status")
      mg_terminate
      awk -v b="$BIN" -v m="$mode" -v ms="$(((ready - started) / 1000000))" -v kib="$peak_kib" \
        'BEGIN { printf "%-50s projections %-7s %6.2f s to serving, peak resident %5d MiB\n", b, m, ms / 1000, kib / 1024 }'
    done
  done
done
BIN="$LOAD_BIN"
