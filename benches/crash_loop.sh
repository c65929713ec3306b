#!/usr/bin/env bash
# Crash loop: under load, SIGKILL the switch a few seconds into each cycle and start it
# again, CYCLES times. After each kill (switch down, so only what is durable counts):
# every 00 the load generator received is in the ledger exactly once with rc 00, no
# load key is posted twice, and `multiguna ledger verify` passes. At the end every
# cycle's approvals are checked again together.
#
#   benches/crash_loop.sh                       # SQLite, 20 cycles
#   BACKEND=postgres CYCLES=5 benches/crash_loop.sh
#
# Settings (environment): BACKEND (sqlite | postgres; postgres uses
# MULTIGUNA_TEST_DATABASE_URL's server, default postgres://postgres@127.0.0.1:5432/test),
# CYCLES (20), FAMILIES (10000), CONNECTIONS (8), DEPTH (16), KILL_MIN_S/KILL_MAX_S
# (2/4: the kill comes this long after the load starts), KEEP=1 keeps the work folder.
# Exit status 0 only if every check passed.
set -euo pipefail
source "$(dirname "$0")/common.sh"
mg_init crash-loop

CYCLES="${CYCLES:-20}"
CONNECTIONS="${CONNECTIONS:-8}"
DEPTH="${DEPTH:-16}"
KILL_MIN_S="${KILL_MIN_S:-2}"
KILL_MAX_S="${KILL_MAX_S:-4}"
# Load outlasts the kill, so the kill always lands mid-load.
LOAD_S=$((KILL_MAX_S + 10))

mg_database "${BACKEND:-sqlite}"
mg_province "${FAMILIES:-10000}"

echo "crash loop: $BACKEND, $CYCLES cycles, $FAMILIES families, loadgen $CONNECTIONS connections x depth $DEPTH closed loop, SIGKILL ${KILL_MIN_S}-${KILL_MAX_S} s into the load"
printf '%-5s %6s %7s %9s %9s %7s %8s %5s %6s  %s\n' cycle kill_s sent approved checked missing dup_keys bad_rc ledgdup verify
failed=0
records=()
tot_seen=0 tot_checked=0 tot_missing=0 tot_dups=0 tot_wrong=0 tot_sent=0
for ((cycle = 1; cycle <= CYCLES; cycle++)); do
  mg_start "serve-$cycle"
  record="$WORK/approved-$cycle.csv"
  records+=("$record")
  mg_loadgen_bg "$WORK/load-$cycle.json" --connections "$CONNECTIONS" --depth "$DEPTH" \
    --duration-s "$LOAD_S" --timeout-s 5 --record "$record"
  # The clock starts when answers flow, not while loadgen builds its PIN blocks.
  for ((i = 0; i < 300; i++)); do
    [[ "$(mg_answered)" -gt 0 ]] && break
    sleep 0.1
  done
  kill_ms=$((KILL_MIN_S * 1000 + RANDOM % ((KILL_MAX_S - KILL_MIN_S) * 1000 + 1)))
  sleep "$(awk -v ms="$kill_ms" 'BEGIN { printf "%.3f", ms / 1000 }')"
  mg_kill9
  mg_wait "$LOADGEN_PID" || { mg_say "loadgen failed in cycle $cycle"; exit 1; }
  read -r seen checked missing dups wrong < <(mg_check_approvals "$record")
  ledger_dups="$(mg_ledger_duplicates)"
  if verify="$(mg_verify)"; then verdict=ok; else verdict=FAILED; failed=1; fi
  sent="$(mg_json "$WORK/load-$cycle.json" 'r["sent"]')"
  printf '%-5s %6s %7s %9s %9s %7s %8s %5s %6s  %s\n' "$cycle" \
    "$(awk -v ms="$kill_ms" 'BEGIN { printf "%.1f", ms / 1000 }')" "$sent" "$seen" "$checked" \
    "$missing" "$dups" "$wrong" "$ledger_dups" "$verdict"
  [[ "$verdict" == ok ]] || mg_say "cycle $cycle verify: $verify"
  if ((missing + dups + wrong + ledger_dups > 0 || seen == 0)); then failed=1; fi
  tot_seen=$((tot_seen + seen)) tot_checked=$((tot_checked + checked))
  tot_missing=$((tot_missing + missing)) tot_dups=$((tot_dups + dups))
  tot_wrong=$((tot_wrong + wrong)) tot_sent=$((tot_sent + sent))
done

# Nothing a later start did may have lost or doubled an earlier cycle's approvals.
read -r all_seen all_checked all_missing all_dups all_wrong < <(mg_check_approvals "${records[@]}")
echo "totals: sent $tot_sent, approvals seen $tot_seen, checked $tot_checked, missing $tot_missing, duplicates $tot_dups, rc other than 00 $tot_wrong"
echo "re-checked at the end, all cycles together: seen $all_seen, checked $all_checked, missing $all_missing, duplicates $all_dups, rc other than 00 $all_wrong"
echo "ledger: $(mg_sql "SELECT COUNT(*) FROM transfers") transfers, $(mg_sql "SELECT COUNT(*) FROM ledger_batches") batches; verify: $(mg_verify || echo FAILED)"
if ((all_missing + all_dups + all_wrong > 0 || all_checked != tot_seen)); then failed=1; fi
if ((failed)); then
  echo "crash loop: FAILED"
  exit 1
fi
echo "crash loop: passed"
