#!/usr/bin/env bash
# A real database outage under load. PostgreSQL: the server itself is stopped
# (`pg_ctlcluster ... stop`, fast mode) and started again. SQLite: the database and its
# WAL are made unwritable (`chattr +i`, root only) and then writable again. Meanwhile
# `multiguna loadgen` sends at a modest open-loop rate, and a probe sends one request
# and reads /healthz every PROBE_MS. Prints: the load's response codes and the latency
# of its 91s, the probe's timeline (first 91 after the outage began, slowest answer
# during it, time from the database's return to the first 00), the /healthz codes seen
# in each phase, the recorded approvals checked against the ledger, and ledger verify.
#
#   benches/db_outage.sh                       # PostgreSQL (stops the local server!)
#   BACKEND=sqlite benches/db_outage.sh
#
# STOPPING POSTGRESQL STOPS IT FOR EVERY OTHER USER OF THE SERVER for OUTAGE_S seconds.
# The script starts it again whatever way it ends (trap), and refuses to run unless the
# cluster runs on this machine and pg_ctlcluster is there.
#
# Settings (environment): BACKEND (postgres | sqlite), RATE (200/s), BEFORE_S (10),
# OUTAGE_S (10), AFTER_S (20), FAMILIES (2000), PROBE_MS (250), PG_VERSION and
# PG_CLUSTER (default: the only one under /etc/postgresql, and main), KEEP=1.
set -euo pipefail
source "$(dirname "$0")/common.sh"
mg_init db-outage

BACKEND="${BACKEND:-postgres}"
RATE="${RATE:-200}"
BEFORE_S="${BEFORE_S:-10}"
OUTAGE_S="${OUTAGE_S:-10}"
AFTER_S="${AFTER_S:-20}"
PROBE_MS="${PROBE_MS:-250}"

if [[ "$BACKEND" == postgres ]]; then
  command -v pg_ctlcluster >/dev/null || { mg_say "needs pg_ctlcluster (Debian/Ubuntu PostgreSQL)"; exit 2; }
  PG_VERSION="${PG_VERSION:-$(ls /etc/postgresql | head -n 1)}"
  PG_CLUSTER="${PG_CLUSTER:-main}"
  pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" status >/dev/null ||
    { mg_say "PostgreSQL $PG_VERSION/$PG_CLUSTER is not running here"; exit 2; }
  # Whatever happens from here on, the server is running again when the script ends.
  pg_up() {
    if ! pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" status >/dev/null 2>&1; then
      mg_say "starting PostgreSQL $PG_VERSION/$PG_CLUSTER again"
      pg_ctlcluster --skip-systemctl-redirect "$PG_VERSION" "$PG_CLUSTER" start
    fi
  }
  mg_on_exit pg_up
  outage_begin() { pg_ctlcluster --skip-systemctl-redirect -m fast "$PG_VERSION" "$PG_CLUSTER" stop; }
  outage_end() { pg_ctlcluster --skip-systemctl-redirect "$PG_VERSION" "$PG_CLUSTER" start; }
  what="PostgreSQL $PG_VERSION/$PG_CLUSTER stopped (fast) and started"
else
  command -v chattr >/dev/null || { mg_say "needs chattr"; exit 2; }
  unwritable() { chattr "$1" "$WORK/multiguna.db" "$WORK/multiguna.db-wal"; }
  outage_begin() {
    mg_on_exit 'unwritable -i 2>/dev/null'
    unwritable +i
  }
  outage_end() { unwritable -i; }
  what="SQLite database and WAL made immutable (chattr +i), then writable (chattr -i)"
fi

mg_database "$BACKEND"
mg_province "${FAMILIES:-2000}"
mg_start switch

# t in seconds since the load began, to one decimal.
T0=$(date +%s%N)
now_s() { awk -v n="$(date +%s%N)" -v t0="$T0" 'BEGIN { printf "%.2f", (n - t0) / 1e9 }'; }

# One request (a minimarket purchase on the first family's cards: the same cards at
# any province size), and /healthz. Prints `t phase rc latency_ms healthz`.
probe() {
  local phase=$1 t rc ms health pid
  t="$(now_s)"
  # In the background and waited for, so a signal runs the trap at once.
  "$BIN" loadgen --to "$ADDR" --province 1 --seed 42 --mix minimarket=1 --requests 1 \
    --connections 1 --depth 1 --timeout-s 60 --json >"$WORK/probe.json" 2>/dev/null &
  pid=$!
  MG_PIDS+=("$pid")
  if mg_wait "$pid"; then
    read -r rc ms < <(mg_json "$WORK/probe.json" \
      '(next(iter(r["response_codes"]), "none") + " " + format(r["latency_ms"]["max"], ".1f"))')
  else
    rc=fail ms=0
  fi
  health="$(mg_healthz)"
  echo "$t $phase $rc $ms $health" >>"$WORK/timeline.txt"
}

probe_for() {
  local phase=$1 seconds=$2 end
  end=$(($(date +%s%N) + seconds * 1000000000))
  while (($(date +%s%N) < end)); do
    probe "$phase"
    sleep "$(awk -v ms="$PROBE_MS" 'BEGIN { printf "%.3f", ms / 1000 }')"
  done
}

TOTAL_S=$((BEFORE_S + OUTAGE_S + AFTER_S + 10))
: >"$WORK/timeline.txt"
mg_loadgen_bg "$WORK/load.json" --rate "$RATE" --connections 4 --depth 256 \
  --duration-s "$TOTAL_S" --timeout-s 60 --record "$WORK/approved.csv"
probe_for before "$BEFORE_S"
t_down="$(now_s)"
outage_begin
t_down_done="$(now_s)"
probe_for outage "$OUTAGE_S"
t_up="$(now_s)"
outage_end
t_up_done="$(now_s)"
probe_for after "$AFTER_S"
mg_wait "$LOADGEN_PID"
mg_terminate

summary() {
  python3 - "$WORK/timeline.txt" "$t_down" "$t_up_done" <<'EOF'
import sys
rows = [l.split() for l in open(sys.argv[1])]
t_down, t_up = float(sys.argv[2]), float(sys.argv[3])
def codes(phase, col):
    seen = {}
    for r in rows:
        if r[1] == phase:
            seen[r[col]] = seen.get(r[col], 0) + 1
    return " ".join(f"{k}x{v}" for k, v in sorted(seen.items())) or "-"
for phase in ("before", "outage", "after"):
    print(f"  probe {phase:<7} answers {codes(phase, 2):<24} /healthz {codes(phase, 4)}")
first_91 = next((float(r[0]) for r in rows if r[1] == "outage" and r[2] == "91"), None)
slowest = max((float(r[3]) for r in rows if r[1] == "outage"), default=0)
first_00 = next((float(r[0]) + float(r[3]) / 1000 for r in rows if r[1] == "after" and r[2] == "00"), None)
first_200 = next((float(r[0]) for r in rows if r[1] == "after" and r[4] == "200"), None)
print(f"  first probe answered 91: {first_91 - t_down:.2f} s after the outage began" if first_91 is not None else "  no probe answered 91 during the outage")
print(f"  slowest probe answer during the outage: {slowest:.1f} ms")
print(f"  first 00 after the database was back: {first_00 - t_up:.2f} s" if first_00 is not None else "  NO 00 after the database was back")
print(f"  first /healthz 200 after the database was back: {first_200 - t_up:.2f} s" if first_200 is not None else "  NO /healthz 200 after the database was back")
EOF
}

read -r seen checked missing dups wrong < <(mg_check_approvals "$WORK/approved.csv")
echo "database outage: $what; $BACKEND, $FAMILIES families"
echo "load: open loop $RATE/s over 4 connections for $TOTAL_S s; outage from t=${t_down}s (down at ${t_down_done}s) to t=${t_up}s (back at ${t_up_done}s)"
echo "  load sent $(mg_json "$WORK/load.json" 'r["sent"]'), answered $(mg_json "$WORK/load.json" 'r["answered"]'), errors $(mg_json "$WORK/load.json" 'r["errors"]') $(mg_json "$WORK/load.json" 'r["error_kinds"]')"
echo "  load response codes $(mg_json "$WORK/load.json" '" ".join(f"{k}={v}" for k, v in r["response_codes"].items())')"
echo "  load 91 latency ms: $(mg_code_latency "$WORK/load.json" 91)"
summary
echo "  approvals seen $seen, checked $checked, missing $missing, duplicates $dups, rc other than 00 $wrong; load keys posted twice: $(mg_ledger_duplicates)"
echo "  ledger verify: $(mg_verify)"
if ((missing + dups + wrong > 0)); then
  echo "database outage: FAILED"
  exit 1
fi
