#!/usr/bin/env bash
# What the two random-order indexes the hot tables had until migration 0004 cost the
# SQLite switch: the card index `transfers_card (card_sha, at_ms)` and the account index
# `entries_account (account_id)`, whose readers now read the projections
# (src/ledger/projection.rs). One database, one province; the switch runs the same
# closed loop four times: as shipped (neither index), with the card index re-created,
# with both, with the account index only. Each run appends to the same ledger, so later
# runs meet a larger table: read the ratios, not the figures.
#
#   benches/index_cost.sh                 # 20 s each, 10,000 families
#   DURATION=60 benches/index_cost.sh
#
# An experiment, not a configuration: the shipped schema has neither index.
set -euo pipefail
source "$(dirname "$0")/common.sh"
mg_init index-cost

DURATION="${DURATION:-20}"
mg_database sqlite
mg_province "${FAMILIES:-10000}"

num() { sed -n "s/.*\"$2\":\([-0-9.eE+]*\).*/\1/p" "$WORK/$1.json"; }

mg_closed_loop_run shipped
mg_sqlite_exec "CREATE INDEX transfers_card ON transfers (card_sha, at_ms)"
mg_closed_loop_run card_index
mg_sqlite_exec "CREATE INDEX entries_account ON entries (account_id)"
mg_closed_loop_run both
mg_sqlite_exec "DROP INDEX transfers_card"
mg_closed_loop_run account_index
mg_sqlite_exec "DROP INDEX entries_account"

echo "multiguna index cost: $(git describe --always --dirty 2>/dev/null || echo '?'), SQLite, $FAMILIES families, closed loop 8 x 32, ${DURATION} s each"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
base="$(num shipped throughput_per_s)"
for run in shipped card_index both account_index; do
  printf '%-17s %10.1f req/s  ratio %.3f  p50 %8.3f ms  p99 %8.3f ms\n' "$run" \
    "$(num "$run" throughput_per_s)" \
    "$(awk -v a="$(num "$run" throughput_per_s)" -v b="$base" 'BEGIN { print a / b }')" \
    "$(num "$run" p50)" "$(num "$run" p99)"
done
