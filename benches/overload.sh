#!/usr/bin/env bash
# Overload: measure the switch's capacity with a short closed-loop run, then offer
# FACTOR (3) times that, open loop, for DURATION seconds while sampling the switch's
# resident memory every second; then at once half the capacity, to show throughput and
# latency recover as soon as the load falls. Prints RSS min/max, the 91 count and how
# fast the 91s came, the approvals checked against the ledger, and ledger verify.
#
#   benches/overload.sh                      # SQLite, 60 s at 3x
#   DURATION=20 BACKEND=postgres benches/overload.sh
#
# The switch sheds load where its bounds are: each connection may have
# `inflight_per_connection_max` (256) requests in flight, past which it stops reading
# (TCP pushes back on that peer); the authoriser queue (`queue_depth_max`, 65,536)
# answers 91 at once when full. With few connections the first bound holds and the
# excess waits in the peers; the overload run therefore opens OVER_CONNECTIONS (512)
# connections, so that the queue fills and the excess gets its 91.
#
# Settings (environment): BACKEND (sqlite | postgres), DURATION (60), FACTOR (3),
# CAPACITY_S (10), RECOVER_S (20), FAMILIES (10000), CONNECTIONS (8) and DEPTH (32) of
# the capacity run, OVER_CONNECTIONS (512), OVER_DEPTH (256), QUEUE_DEPTH (the
# switch's queue_depth_max; empty: the configured 65,536), KEEP=1.
set -euo pipefail
source "$(dirname "$0")/common.sh"
mg_init overload

DURATION="${DURATION:-60}"
FACTOR="${FACTOR:-3}"
CAPACITY_S="${CAPACITY_S:-10}"
RECOVER_S="${RECOVER_S:-20}"
CONNECTIONS="${CONNECTIONS:-8}"
DEPTH="${DEPTH:-32}"
OVER_CONNECTIONS="${OVER_CONNECTIONS:-512}"
OVER_DEPTH="${OVER_DEPTH:-256}"
QUEUE_DEPTH="${QUEUE_DEPTH:-}"

mg_database "${BACKEND:-sqlite}"
mg_province "${FAMILIES:-10000}"
[[ -n "$QUEUE_DEPTH" ]] && export MULTIGUNA__AUTHORISER__QUEUE_DEPTH_MAX="$QUEUE_DEPTH"
# 512 connections and more: past the listener's default of 1,024 only with more.
export MULTIGUNA__LISTENERS__0__CONNECTIONS_MAX=$((OVER_CONNECTIONS + 64))
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
mg_start switch

rss_start="$(mg_rss_kib "$SERVER_PID")"
load_before="$(mg_loadavg)"
mg_say "capacity: closed loop, $CONNECTIONS connections x depth $DEPTH, $CAPACITY_S s"
mg_loadgen "$WORK/capacity.json" --connections "$CONNECTIONS" --depth "$DEPTH" \
  --duration-s "$CAPACITY_S" --record "$WORK/approved-capacity.csv"
capacity="$(mg_json "$WORK/capacity.json" 'r["throughput_per_s"]')"
over_rate="$(awk -v c="$capacity" -v f="$FACTOR" 'BEGIN { printf "%.0f", c * f }')"
half_rate="$(awk -v c="$capacity" 'BEGIN { printf "%.0f", c / 2 }')"
rss_after_capacity="$(mg_rss_kib "$SERVER_PID")"

# RSS every second while the overload runs.
sample_rss() {
  while kill -0 "$SERVER_PID" 2>/dev/null; do
    echo "$(date +%s) $(mg_rss_kib "$SERVER_PID")" >>"$WORK/rss.txt"
    sleep 1
  done
}
: >"$WORK/rss.txt"
sample_rss &
MG_PIDS+=("$!")
SAMPLER_PID=$!

mg_say "overload: open loop at $over_rate/s ($FACTOR x $capacity/s), $OVER_CONNECTIONS connections x depth $OVER_DEPTH, $DURATION s"
mg_loadgen "$WORK/over.json" --rate "$over_rate" --connections "$OVER_CONNECTIONS" \
  --depth "$OVER_DEPTH" --duration-s "$DURATION" --timeout-s 120 --record "$WORK/approved-over.csv"
kill "$SAMPLER_PID" 2>/dev/null || true
mg_wait "$SAMPLER_PID" 2>/dev/null || true
rss_after_over="$(mg_rss_kib "$SERVER_PID")"

mg_say "recovery: open loop at $half_rate/s (capacity / 2), $CONNECTIONS connections, $RECOVER_S s"
mg_loadgen "$WORK/recover.json" --rate "$half_rate" --connections "$CONNECTIONS" \
  --depth "$DEPTH" --duration-s "$RECOVER_S" --timeout-s 60 --record "$WORK/approved-recover.csv"
rss_end="$(mg_rss_kib "$SERVER_PID")"
load_after="$(mg_loadavg)"
mg_terminate

read -r seen checked missing dups wrong < <(mg_check_approvals \
  "$WORK/approved-capacity.csv" "$WORK/approved-over.csv" "$WORK/approved-recover.csv")
rss_minmax="$(awk 'NR == 1 || $2 < min { min = $2 } $2 > max { max = $2 } END { printf "min %.1f MiB, max %.1f MiB over %d samples", min / 1024, max / 1024, NR }' "$WORK/rss.txt")"

run_line() {
  local f="$WORK/$1.json"
  mg_json "$f" '"sent %d answered %d errors %d %s unsent %d, %.0f/s, latency ms p50 %.1f p99 %.1f max %.1f; codes %s" % (r["sent"], r["answered"], r["errors"], r["error_kinds"] or "", r["unsent_scheduled"], r["throughput_per_s"], r["latency_ms"]["p50"], r["latency_ms"]["p99"], r["latency_ms"]["max"], " ".join(f"{k}={v}" for k, v in r["response_codes"].items()))'
}
mib() { awk -v k="$1" 'BEGIN { printf "%.1f MiB", k / 1024 }'; }

echo "overload: $BACKEND, $FAMILIES families, queue_depth_max ${QUEUE_DEPTH:-as configured}; $(nproc) cores shared by switch and loadgen, load average $load_before before, $load_after after"
echo "  capacity (closed loop, $CONNECTIONS x $DEPTH, $CAPACITY_S s): $(run_line capacity)"
echo "  overload (open loop $over_rate/s = $FACTOR x capacity, $OVER_CONNECTIONS x $OVER_DEPTH, $DURATION s): $(run_line over)"
echo "    00 latency ms: $(mg_code_latency "$WORK/over.json" 00)"
echo "    91 latency ms: $(mg_code_latency "$WORK/over.json" 91)"
echo "    switch RSS during overload: $rss_minmax"
echo "  recovery (open loop $half_rate/s = capacity / 2, $RECOVER_S s right after): $(run_line recover)"
echo "  RSS: start $(mib "$rss_start"), after capacity run $(mib "$rss_after_capacity"), after overload $(mib "$rss_after_over"), end $(mib "$rss_end")"
echo "  approvals seen $seen, checked $checked, missing $missing, duplicates $dups, rc other than 00 $wrong; load keys posted twice: $(mg_ledger_duplicates)"
echo "  ledger verify: $(mg_verify)"
if ((missing + dups + wrong > 0)); then
  echo "overload: FAILED"
  exit 1
fi
