#!/usr/bin/env bash
# What the projector's two statements (src/ledger/projection.rs) cost PostgreSQL in each
# layout of the projection tables. One database, one province, one closed loop with the
# projector held off; then the backlog it left is projected into copies of the two
# tables, in steps of STEP batches (one transaction each, `synchronous_commit = off`, as
# the projector does), once per layout and round, after a CHECKPOINT each:
#
#   logged      as shipped: logged tables, the card hash as its 32 bytes (BYTEA)
#   text        as shipped before session 10: the card hash as 64 hex characters,
#               compared by the database's collation (here C.UTF-8)
#   text_icu    hex text compared by an English ICU collation, as in a database
#               created with such a locale (COLLATE "en-US-x-icu")
#   text_c      hex text compared byte by byte (COLLATE "C")
#   unlogged    unlogged tables (no write-ahead log), BYTEA
#
# Prints the seconds each layout took for the card step and the account step, the
# ratio of each to `logged`, and the card table's size (table and key) after the last
# round: the server's work only, no switch running.
#
#   benches/projection_cost.sh                  # 20 s of load, 10,000 families
#   FAMILIES=100000 DURATION=30 ROUNDS=2 benches/projection_cost.sh
#
# Settings: DURATION (s, 20), FAMILIES (10000), STEP (batches a step, 2400: the ten
# seconds between the projector's steps at about 240 batches a second), ROUNDS (2).
#
# An experiment, not a configuration: the shipped layout is `logged`. Unlogged tables
# are emptied by any crash of the server (a backend killed by the OOM killer is enough)
# and are empty on a promoted standby; the switch then projects the whole ledger again
# before it serves (docs/performance.md, session 8).
set -euo pipefail
source "$(dirname "$0")/common.sh"
mg_init projection-cost

DURATION="${DURATION:-20}"
STEP="${STEP:-2400}"
ROUNDS="${ROUNDS:-2}"
mg_database postgres
mg_province "${FAMILIES:-10000}"

export MULTIGUNA__SWITCH__PROJECTION_INTERVAL_MS=3600000
LOAD_BEFORE_RUN="$(cut -d" " -f1-3 /proc/loadavg)"
mg_closed_loop_run load
head="$(mg_sql "SELECT batch_seq FROM projection_head")"
last="$(mg_sql "SELECT MAX(batch_seq) FROM ledger_batches")"
cards="$(mg_sql "SELECT COUNT(*) FROM transfers WHERE batch_seq > $head AND card_sha <> ''")"
legs="$(mg_sql "SELECT COUNT(*) FROM entries WHERE batch_seq > $head")"
mg_say "backlog: batches $head..$last, $cards card transfers, $legs entries"

# The two tables of a layout, as `ch_NAME` and `ah_NAME`.
create() {
  local name=$1 persistence=$2 card_type=$3
  mg_sql "
    CREATE $persistence TABLE ch_$name (card_sha $card_type NOT NULL, at_ms BIGINT NOT NULL,
      batch_seq BIGINT NOT NULL, idx INTEGER NOT NULL, PRIMARY KEY (card_sha, at_ms, batch_seq, idx));
    CREATE $persistence TABLE ah_$name (account_id BIGINT NOT NULL, batch_seq BIGINT NOT NULL,
      transfer_idx INTEGER NOT NULL, entry_idx INTEGER NOT NULL, amount_minor BIGINT NOT NULL,
      PRIMARY KEY (account_id, batch_seq, transfer_idx, entry_idx));" >/dev/null
}

# The projector's statements for the backlog, in steps, into table TABLE of a layout.
steps() {
  local table=$1 from to
  for ((from = head; from < last; from += STEP)); do
    to=$((from + STEP < last ? from + STEP : last))
    echo "BEGIN; SET LOCAL synchronous_commit = off;"
    if [[ $table == ch_text* ]]; then
      echo "INSERT INTO $table SELECT card_sha, at_ms, batch_seq, idx FROM transfers
        WHERE batch_seq > $from AND batch_seq <= $to AND card_sha <> ''
        ORDER BY card_sha, at_ms, batch_seq, idx;"
    elif [[ $table == ch_* ]]; then
      echo "INSERT INTO $table SELECT decode(card_sha, 'hex'), at_ms, batch_seq, idx FROM transfers
        WHERE batch_seq > $from AND batch_seq <= $to AND card_sha <> ''
        ORDER BY 1, 2, 3, 4;"
    else
      echo "INSERT INTO $table SELECT account_id, batch_seq, transfer_idx, entry_idx, amount_minor
        FROM entries WHERE batch_seq > $from AND batch_seq <= $to
        ORDER BY account_id, batch_seq, transfer_idx, entry_idx;"
    fi
    echo "COMMIT;"
  done
}

# Seconds the steps into TABLE took, from an empty table after a checkpoint.
timed() {
  local table=$1 start end
  mg_sql "TRUNCATE $table; CHECKPOINT" >/dev/null
  steps "$table" >"$WORK/steps.sql"
  start="$(date +%s.%N)"
  psql "$DB_URL" -q -v ON_ERROR_STOP=1 -f "$WORK/steps.sql" >/dev/null
  end="$(date +%s.%N)"
  awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }'
}

LAYOUTS=(logged text text_icu text_c unlogged)
create logged "" BYTEA
create text "" TEXT
create text_icu "" 'TEXT COLLATE "en-US-x-icu"'
create text_c "" 'TEXT COLLATE "C"'
create unlogged UNLOGGED BYTEA
declare -A card_s account_s
for ((round = 1; round <= ROUNDS; round++)); do
  for layout in "${LAYOUTS[@]}"; do
    card_s[$layout]+="$(timed "ch_$layout") "
    account_s[$layout]+="$(timed "ah_$layout") "
  done
done

echo "multiguna projection cost: $(git describe --always --dirty 2>/dev/null || echo '?'), PostgreSQL, $FAMILIES families, ${DURATION} s of load, steps of $STEP batches, $ROUNDS rounds"
echo "load average before: $LOAD_BEFORE_RUN; backlog: $cards card transfers, $legs entries"
mean() { awk '{ s = 0; for (i = 1; i <= NF; i++) s += $i; printf "%.2f", s / NF }' <<<"$1"; }
base_card="$(mean "${card_s[logged]}")"
base_account="$(mean "${account_s[logged]}")"
printf '%-11s %-22s %-7s %-9s %-22s %-7s\n' layout "card step s" ratio "card MiB" "account step s" ratio
for layout in "${LAYOUTS[@]}"; do
  printf '%-11s %-22s %-7s %-9s %-22s %-7s\n' "$layout" "${card_s[$layout]}" \
    "$(awk -v a="$(mean "${card_s[$layout]}")" -v b="$base_card" 'BEGIN { printf "%.3f", a / b }')" \
    "$(mg_sql "SELECT round(pg_total_relation_size('ch_$layout') / 1048576.0, 1)")" \
    "${account_s[$layout]}" \
    "$(awk -v a="$(mean "${account_s[$layout]}")" -v b="$base_account" 'BEGIN { printf "%.3f", a / b }')"
done
