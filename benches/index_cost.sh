#!/usr/bin/env bash
# What the two random-order indexes of the hot tables cost the SQLite switch: the card
# index `transfers_card (card_sha, at_ms)` (card history reads it) and the account index
# `entries_account (account_id)` (family balances and the refund ceiling read it). One
# database, one province; the switch runs the same closed loop five times: with both,
# without the account index, without the card index, with the card index on a 16-hex
# prefix of the card hash instead (a quarter of the key: is it the key's size or its
# random order?), without both. Each run appends to
# the same ledger, so later runs meet a larger table: read the ratios, not the figures.
#
#   benches/index_cost.sh                 # 20 s each, 10,000 families
#   DURATION=60 benches/index_cost.sh
#
# An experiment, not a configuration: the switch's schema keeps both indexes.
set -euo pipefail
source "$(dirname "$0")/common.sh"
mg_init index-cost

DURATION="${DURATION:-20}"
mg_database sqlite
mg_province "${FAMILIES:-10000}"

num() { sed -n "s/.*\"$2\":\([-0-9.eE+]*\).*/\1/p" "$WORK/$1.json"; }

mg_closed_loop_run both
mg_sqlite_exec "DROP INDEX entries_account"
mg_closed_loop_run no_account_index
mg_sqlite_exec "CREATE INDEX entries_account ON entries (account_id)"
mg_sqlite_exec "DROP INDEX transfers_card"
mg_closed_loop_run no_card_index
mg_sqlite_exec "CREATE INDEX transfers_card16 ON transfers (substr(card_sha, 1, 16), at_ms)"
mg_closed_loop_run card_prefix16
mg_sqlite_exec "DROP INDEX transfers_card16"
mg_sqlite_exec "DROP INDEX entries_account"
mg_closed_loop_run neither
mg_sqlite_exec "CREATE INDEX entries_account ON entries (account_id)"
mg_sqlite_exec "CREATE INDEX transfers_card ON transfers (card_sha, at_ms)"

echo "multiguna index cost: $(git describe --always --dirty 2>/dev/null || echo '?'), SQLite, $FAMILIES families, closed loop 8 x 32, ${DURATION} s each"
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
base="$(num both throughput_per_s)"
for run in both no_account_index no_card_index card_prefix16 neither; do
  printf '%-17s %10.1f req/s  ratio %.3f  p50 %8.3f ms  p99 %8.3f ms\n' "$run" \
    "$(num "$run" throughput_per_s)" \
    "$(awk -v a="$(num "$run" throughput_per_s)" -v b="$base" 'BEGIN { print a / b }')" \
    "$(num "$run" p50)" "$(num "$run" p99)"
done
