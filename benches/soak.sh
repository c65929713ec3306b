#!/usr/bin/env bash
# Soak: a steady open-loop rate for DURATION seconds (30 minutes by default), run as
# back-to-back loadgen slices of SAMPLE_S seconds so that latency is measured per
# slice; after each slice the switch's resident memory is read. Prints one row per
# slice, then start vs end (first and last slice), the approvals of every slice checked
# against the ledger, and ledger verify. A script for a long run, not for CI.
#
#   benches/soak.sh                          # SQLite, 1800 s at 500/s
#   DURATION=120 benches/soak.sh             # a short run
#   BACKEND=postgres RATE=1000 benches/soak.sh
#
# Settings (environment): BACKEND (sqlite | postgres), DURATION (1800), SAMPLE_S (60),
# RATE (500 requests/s), CONNECTIONS (8), FAMILIES (10000), KEEP=1.
set -euo pipefail
source "$(dirname "$0")/common.sh"
mg_init soak

DURATION="${DURATION:-1800}"
SAMPLE_S="${SAMPLE_S:-60}"
RATE="${RATE:-500}"
CONNECTIONS="${CONNECTIONS:-8}"
SLICES=$(((DURATION + SAMPLE_S - 1) / SAMPLE_S))

mg_database "${BACKEND:-sqlite}"
mg_province "${FAMILIES:-10000}"
mg_start switch
rss_start="$(mg_rss_kib "$SERVER_PID")"

echo "soak: $BACKEND, $FAMILIES families, open loop $RATE/s over $CONNECTIONS connections, $SLICES slices of $SAMPLE_S s; switch RSS at start $(awk -v k="$rss_start" 'BEGIN { printf "%.1f MiB", k / 1024 }')"
printf '%-5s %6s %8s %8s %7s %8s %8s %8s %9s  %s\n' slice t_s sent "req/s" errors "p50 ms" "p99 ms" "max ms" "RSS MiB" codes
started=$(date +%s)
records=()
for ((slice = 1; slice <= SLICES; slice++)); do
  records+=("$WORK/approved-$slice.csv")
  mg_loadgen "$WORK/slice-$slice.json" --rate "$RATE" --connections "$CONNECTIONS" \
    --depth 256 --duration-s "$SAMPLE_S" --timeout-s 30 --record "$WORK/approved-$slice.csv"
  rss="$(mg_rss_kib "$SERVER_PID")"
  echo "$slice $rss" >>"$WORK/rss.txt"
  printf '%-5s %6s %s %9s  %s\n' "$slice" "$(($(date +%s) - started))" \
    "$(mg_json "$WORK/slice-$slice.json" '"%8d %8.1f %7d %8.2f %8.2f %8.2f" % (r["sent"], r["throughput_per_s"], r["errors"], r["latency_ms"]["p50"], r["latency_ms"]["p99"], r["latency_ms"]["max"])')" \
    "$(awk -v k="$rss" 'BEGIN { printf "%.1f", k / 1024 }')" \
    "$(mg_json "$WORK/slice-$slice.json" '" ".join(f"{k}={v}" for k, v in r["response_codes"].items())')"
done
mg_terminate

figures() {
  local f="$WORK/slice-$1.json"
  printf 'RSS %s MiB, %s' "$(awk -v s="$1" '$1 == s { printf "%.1f", $2 / 1024 }' "$WORK/rss.txt")" \
    "$(mg_json "$f" '"%.1f req/s, latency ms p50 %.2f p99 %.2f max %.2f, errors %d" % (r["throughput_per_s"], r["latency_ms"]["p50"], r["latency_ms"]["p99"], r["latency_ms"]["max"], r["errors"])')"
}
read -r seen checked missing dups wrong < <(mg_check_approvals "${records[@]}")
echo "start (slice 1): $(figures 1)"
echo "end (slice $SLICES): $(figures "$SLICES")"
echo "approvals seen $seen, checked $checked, missing $missing, duplicates $dups, rc other than 00 $wrong; load keys posted twice: $(mg_ledger_duplicates)"
echo "ledger: $(mg_sql "SELECT COUNT(*) FROM transfers") transfers; verify: $(mg_verify)"
if ((missing + dups + wrong > 0)); then
  echo "soak: FAILED"
  exit 1
fi
