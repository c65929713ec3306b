#!/usr/bin/env bash
# Two probes beside benches/index_cost.sh, each against a fresh province and the same
# closed loop (8 x 32, DURATION s) as a first run with the schema as shipped:
#   page_size  the database copied to 1 KiB pages (is it the WAL's volume per scattered page?)
#   bulk       both random-order indexes dropped, their rows appended instead by a process
#              beside the switch, once a second, sorted, into WITHOUT ROWID tables of the
#              same file (does deferring and sorting the index work pay?)
#
#   benches/index_probes.sh              # 20 s each
set -euo pipefail
source "$(dirname "$0")/common.sh"
mg_init index-probes
DURATION="${DURATION:-20}"
FAMILIES="${FAMILIES:-10000}"

num() { sed -n "s/.*\"$2\":\([-0-9.eE+]*\).*/\1/p" "$WORK/$1.json"; }
fresh() { rm -f "$WORK"/multiguna.db*; mg_province "$FAMILIES"; }

mg_database sqlite
fresh
mg_closed_loop_run shipped_4k
mg_sqlite_exec "PRAGMA journal_mode=DELETE" "PRAGMA page_size=1024" "VACUUM" "PRAGMA journal_mode=WAL"
mg_closed_loop_run pages_1k

fresh
mg_closed_loop_run shipped
mg_sqlite_exec "DROP INDEX transfers_card" "DROP INDEX entries_account" \
  "CREATE TABLE card_hist (card_sha TEXT, at_ms INT, batch_seq INT, idx INT, PRIMARY KEY (card_sha, at_ms, batch_seq, idx)) WITHOUT ROWID" \
  "CREATE TABLE acct_hist (account_id INT, batch_seq INT, transfer_idx INT, entry_idx INT, amount INT, PRIMARY KEY (account_id, batch_seq, transfer_idx, entry_idx)) WITHOUT ROWID"
cat >"$WORK/indexer.py" <<'PY'
import sqlite3, sys, time
c = sqlite3.connect(sys.argv[1], isolation_level=None)
c.execute("PRAGMA busy_timeout=5000")
head = lambda: c.execute("SELECT COALESCE(MAX(batch_seq), 0) FROM ledger_batches").fetchone()[0]
cursor, busy, longest, end = head(), 0.0, 0.0, time.time() + float(sys.argv[2])
while time.time() < end:
    time.sleep(1)
    started = time.time()
    c.execute("BEGIN IMMEDIATE")
    top = head()
    c.execute("INSERT INTO card_hist SELECT card_sha, at_ms, batch_seq, idx FROM transfers "
              "WHERE batch_seq > ? AND batch_seq <= ? ORDER BY 1, 2, 3, 4", (cursor, top))
    c.execute("INSERT INTO acct_hist SELECT account_id, batch_seq, transfer_idx, entry_idx, amount_minor "
              "FROM entries WHERE batch_seq > ? AND batch_seq <= ? ORDER BY 1, 2, 3, 4", (cursor, top))
    c.execute("COMMIT")
    took = time.time() - started
    busy, longest, cursor = busy + took, max(longest, took), top
print(f"indexer: {busy:.2f} s busy, longest {longest:.3f} s")
PY
mg_start bulk
python3 "$WORK/indexer.py" "$WORK/multiguna.db" "$DURATION" >"$WORK/indexer.out" &
INDEXER=$!
MG_PIDS+=("$INDEXER")
mg_loadgen "$WORK/bulk.json" --duration-s "$DURATION" --connections 8 --depth 32
mg_wait "$INDEXER"
mg_terminate

echo "multiguna index probes: $(git describe --always --dirty 2>/dev/null || echo '?'), SQLite, $FAMILIES families, closed loop 8 x 32, ${DURATION} s each"
for r in shipped_4k pages_1k shipped bulk; do
  printf '%-11s %10.1f req/s  p50 %8.3f ms  p99 %8.3f ms  p99.9 %8.3f ms\n' "$r" \
    "$(num "$r" throughput_per_s)" "$(num "$r" p50)" "$(num "$r" p99)" "$(num "$r" p999)"
done
cat "$WORK/indexer.out"
