#!/usr/bin/env bash
# Where the CPU goes under the closed loop: `perf record` on the switch while
# `multiguna loadgen` (8 x 32) runs against it, then the switch's samples by thread and
# its top functions, and each process's CPU seconds (switch, load generator) from /proc.
#
#   benches/profile.sh                          # SQLite, 20 s
#   BACKEND=postgres MULTIGUNA_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test \
#     benches/profile.sh
#
# Needs perf (linux-perf). Thread names: tokio-runtime-w (network, codec, edge,
# authoriser), ledger-sqlite (the SQLite writer), ledger-wal (WAL copy-back),
# sqlx-sqlite-* (pooled reads, the projector on SQLite).
set -euo pipefail
source "$(dirname "$0")/common.sh"
mg_init profile

DURATION="${DURATION:-20}"
mg_database "${BACKEND:-sqlite}"
mg_province "${FAMILIES:-10000}"

cpu_s() { awk '{ print ($14 + $15) / 100 }' "/proc/$1/stat"; }

mg_start switch
mg_loadgen_bg "$WORK/switch.json" --duration-s "$DURATION" --connections 8 --depth 32
sleep 2
switch_before="$(cpu_s "$SERVER_PID")"
perf record -F 499 -g -p "$SERVER_PID" -o "$WORK/perf.data" -- sleep $((DURATION - 4)) 2>"$WORK/perf.err" >/dev/null
switch_after="$(cpu_s "$SERVER_PID")"
loadgen_cpu="$(cpu_s "$LOADGEN_PID")"
mg_wait "$LOADGEN_PID"
mg_terminate

echo "multiguna profile: $(git describe --always --dirty 2>/dev/null || echo '?'), ${BACKEND:-sqlite}, $FAMILIES families, closed loop 8 x 32, ${DURATION} s"
echo "throughput: $(mg_json "$WORK/switch.json" "r['throughput_per_s']") req/s"
echo "switch CPU over the $((DURATION - 4)) s recorded: $(awk -v a="$switch_before" -v b="$switch_after" 'BEGIN { print b - a }') s; load generator, whole run: $loadgen_cpu s"
echo "-- switch samples by thread"
perf report -i "$WORK/perf.data" --no-children --sort comm --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -12
echo "-- switch top functions"
perf report -i "$WORK/perf.data" --no-children --sort comm,sym --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -30
