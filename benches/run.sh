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
source "$(dirname "$0")/common.sh"
mg_init run

DURATION="${DURATION:-20}"
CONNECTIONS="${CONNECTIONS:-8}"
DEPTH="${DEPTH:-32}"
RATE="${RATE:-}"
MIX="${MIX:-}"

mg_database "${BACKEND:-sqlite}"
mg_province "${FAMILIES:-10000}"

# The same load for both servers; the report goes to NAME.json.
run_load() {
  local name=$1
  local args=(--duration-s "$DURATION" --connections "$CONNECTIONS" --depth "$DEPTH")
  [[ -n "$RATE" ]] && args+=(--rate "$RATE")
  [[ -n "$MIX" ]] && args+=(--mix "$MIX")
  mg_say "$name: loadgen ${args[*]}"
  mg_loadgen "$WORK/$name.json" "${args[@]}"
}

# Other work on the machine skews the figures: say how busy it was.
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
mg_start echo --echo
run_load echo
mg_terminate

mg_start switch
run_load switch
# The switch's own account of its commits: how busy the single writer was, and how
# its commit times spread (is a slow commit what the tail of the latency is made of?).
curl -fsS "http://$ADMIN/metrics" >"$WORK/switch.metrics" || : >"$WORK/switch.metrics"
mg_terminate

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
metric() { sed -n "s/^$1 //p" "$WORK/switch.metrics" | head -n 1; }
commits="$(metric multiguna_ledger_commit_duration_seconds_count)"
if [[ -n "$commits" && "$commits" != 0 ]]; then
  awk -v n="$commits" -v s="$(metric multiguna_ledger_commit_duration_seconds_sum)" \
    -v rows="$(metric multiguna_ledger_batch_size_sum)" -v d="$(num switch duration_s)" \
    'BEGIN { printf "ledger commits: %d, mean %.2f ms, writer busy %.0f%% of the run, mean batch %.0f transfers\n", n, 1000 * s / n, 100 * s / d, rows / n }'
  printf 'commits slower than: '
  sed -n 's/^multiguna_ledger_commit_duration_seconds_bucket{le="\([0-9.e+-]*\)"} \([0-9]*\)$/\1 \2/p' "$WORK/switch.metrics" |
    awk -v n="$commits" '$1 >= 0.005 && $1 <= 0.25 { printf "%s ms: %d  ", $1 * 1000, n - $2 } END { print "" }'
fi
if [[ "$BACKEND" == sqlite ]]; then
  # What the projector rewrote its pages into: the same load makes the same rows.
  mib() { awk -v b="$(stat -c %s "$1" 2>/dev/null || echo 0)" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
  echo "files after the run: ledger $(mib "$WORK/multiguna.db"), projections $(mib "$WORK/multiguna.db-projections")"
fi
echo "ratio switch/echo: throughput $(ratio "$(num switch throughput_per_s)" "$(num echo throughput_per_s)")," \
  "p50 latency $(ratio "$(num switch p50)" "$(num echo p50)")," \
  "p99 latency $(ratio "$(num switch p99)" "$(num echo p99)")"
