#!/usr/bin/env bash
# Where the CPU goes under load: `perf record` on the switch while `multiguna loadgen`
# (8 x 32, closed loop unless RATE is set) runs against it, then each thread's CPU and run-queue
# wait (both processes, from /proc), the switch's samples by thread and its top
# functions, and each process's CPU seconds (switch, load generator).
#
#   benches/profile.sh                          # SQLite, 20 s
#   PERF=0 RATE=20000 benches/profile.sh        # open loop; threads only, no perf
#   BACKEND=postgres MULTIGUNA_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
#     benches/profile.sh
#
# Settings (environment): DURATION (s, 20), FAMILIES (10000), RATE (requests/s: open
# loop), PERF (0: no perf record, only the per-thread table), PERF_G (perf's call-graph
# option, -g: e.g. "--call-graph dwarf,16384" to see through frames without pointers), BACKEND.
# Needs perf (linux-perf) unless PERF=0. Thread names: tokio-runtime-w (network, codec, edge,
# authoriser), ledger-sqlite (the SQLite writer), ledger-wal (WAL copy-back),
# sqlx-sqlite-* (pooled reads, the projector on SQLite).
set -euo pipefail
source "$(dirname "$0")/common.sh"
mg_init profile

DURATION="${DURATION:-20}"
RATE="${RATE:-}"
PERF="${PERF:-1}"
mg_database "${BACKEND:-sqlite}"
mg_province "${FAMILIES:-10000}"

cpu_s() { awk '{ print ($14 + $15) / 100 }' "/proc/$1/stat"; }
# CPU seconds of every PostgreSQL server process (the backends serving the switch
# included): what the database takes of the same two cores.
postgres_cpu_s() {
  local p total=0
  for p in $(pgrep -x postgres || true); do
    total="$(awk -v t="$total" '{ print t + ($14 + $15) / 100 }' "/proc/$p/stat" 2>/dev/null || echo "$total")"
  done
  echo "$total"
}
# Each thread's CPU time and time spent runnable but waiting for a core (ns, from
# /proc/PID/task/TID/schedstat), one line a thread: tid name cpu_ns wait_ns.
threads() {
  local t
  for t in /proc/"$1"/task/*; do
    printf '%s %s %s\n' "${t##*/}" "$(tr ' ' _ <"$t/comm")" "$(cut -d' ' -f1-2 "$t/schedstat")"
  done 2>/dev/null | sort
}
# Per thread name, over the recording: CPU and run-queue wait in seconds.
thread_table() {
  join <(cat "$1") <(cat "$2") | awk -v who="$3" '
    { cpu[$2] += ($6 - $3) / 1e9; wait[$2] += ($7 - $4) / 1e9 }
    END { for (n in cpu) if (cpu[n] > 0.05) printf "%-8s %-16s cpu %6.2f s  waiting for a core %6.2f s\n", who, n, cpu[n], wait[n] }' | sort -k4 -rn
}

mg_start switch
mg_loadgen_bg "$WORK/switch.json" --duration-s "$DURATION" --connections 8 --depth 32 ${RATE:+--rate "$RATE"}
sleep 2
switch_before="$(cpu_s "$SERVER_PID")"
postgres_before="$(postgres_cpu_s)"
threads "$SERVER_PID" >"$WORK/switch.threads.before"
threads "$LOADGEN_PID" >"$WORK/loadgen.threads.before"
if [[ "$PERF" == 0 ]]; then
  sleep $((DURATION - 4))
else
  perf record -F 499 ${PERF_G:--g} -p "$SERVER_PID" -o "$WORK/perf.data" -- sleep $((DURATION - 4)) 2>"$WORK/perf.err" >/dev/null
fi
switch_after="$(cpu_s "$SERVER_PID")"
postgres_after="$(postgres_cpu_s)"
threads "$SERVER_PID" >"$WORK/switch.threads.after"
threads "$LOADGEN_PID" >"$WORK/loadgen.threads.after"
loadgen_cpu="$(cpu_s "$LOADGEN_PID")"
mg_wait "$LOADGEN_PID"
mg_terminate

echo "multiguna profile: $(git describe --always --dirty 2>/dev/null || echo '?'), ${BACKEND:-sqlite}, $FAMILIES families, 8 x 32, ${RATE:+open loop $RATE/s, }${DURATION} s$([[ "$PERF" == 0 ]] || echo ', under perf')"
echo "throughput: $(mg_json "$WORK/switch.json" "r['throughput_per_s']") req/s; latency ms p50 $(mg_json "$WORK/switch.json" "r['latency_ms']['p50']"), p99 $(mg_json "$WORK/switch.json" "r['latency_ms']['p99']"), p99.9 $(mg_json "$WORK/switch.json" "r['latency_ms']['p999']")"
echo "switch CPU over the $((DURATION - 4)) s recorded: $(awk -v a="$switch_before" -v b="$switch_after" 'BEGIN { print b - a }') s; load generator, whole run: $loadgen_cpu s"
[[ "${BACKEND:-sqlite}" == postgres ]] &&
  echo "PostgreSQL server processes' CPU over the same $((DURATION - 4)) s: $(awk -v a="$postgres_before" -v b="$postgres_after" 'BEGIN { print b - a }') s"
echo "-- CPU and run-queue wait by thread over the recording (a thread waiting for a core"
echo "   as long as it runs: the machine is saturated, whatever the idle time says)"
thread_table "$WORK/switch.threads.before" "$WORK/switch.threads.after" switch
thread_table "$WORK/loadgen.threads.before" "$WORK/loadgen.threads.after" loadgen
[[ "$PERF" == 0 ]] && exit 0
echo "-- switch samples by thread"
perf report -i "$WORK/perf.data" --no-children --sort comm --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -12
echo "-- switch top functions"
perf report -i "$WORK/perf.data" --no-children --sort comm,sym --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -30
