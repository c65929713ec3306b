# Shared by the bench scripts (run.sh, crash_loop.sh, db_outage.sh, overload.sh,
# soak.sh): build, a work folder, a fresh database with a synthetic province, starting
# and stopping `multiguna serve`, reading loadgen's JSON, and checking recorded
# approvals against the ledger. Sourced, not run. Needs python3 (JSON, SQLite) and
# curl; psql for BACKEND=postgres.
#
# The sourcing script sets `set -euo pipefail` and calls `mg_init NAME` first. Every
# process started through these functions is killed, and the PostgreSQL database made
# here dropped, whatever way the script ends (trap on EXIT).

mg_say() { printf '%s: %s\n' "$MG_NAME" "$*" >&2; }

mg_init() {
  MG_NAME=$1
  cd "$(dirname "${BASH_SOURCE[0]}")/.."
  local tool
  for tool in python3 curl; do
    command -v "$tool" >/dev/null || { mg_say "needs $tool"; exit 2; }
  done
  mg_say "building release"
  cargo build --release --quiet
  BIN="$PWD/target/release/multiguna"
  WORK="$(mktemp -d -t "multiguna-$MG_NAME.XXXXXX")"
  MG_PIDS=()
  MG_CLEANUPS=()
  PG_ADMIN=""
  PG_DB=""
  SERVER_PID=""
  trap mg_cleanup EXIT
  trap 'exit 130' INT TERM
}

# Undo steps registered by a script (run first, newest first), then processes, then data.
mg_cleanup() {
  local status=$? i pid
  for ((i = ${#MG_CLEANUPS[@]} - 1; i >= 0; i--)); do
    eval "${MG_CLEANUPS[$i]}" || true
  done
  for pid in "${MG_PIDS[@]}"; do
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
  if [[ -n "$PG_DB" ]]; then
    psql "$PG_ADMIN" -qc "DROP DATABASE IF EXISTS $PG_DB WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  if [[ "${KEEP:-}" == 1 ]]; then mg_say "kept $WORK"; else rm -rf "$WORK"; fi
  return "$status"
}

mg_on_exit() { MG_CLEANUPS+=("$1"); }

# A process that has been waited for leaves the kill list, so the trap never signals
# a later process that was given the same id.
mg_forget() {
  local keep=() pid
  for pid in "${MG_PIDS[@]}"; do [[ "$pid" != "$1" ]] && keep+=("$pid"); done
  MG_PIDS=("${keep[@]}")
}

# `wait PID`, its status, and PID off the kill list.
mg_wait() {
  local status=0
  wait "$1" || status=$?
  mg_forget "$1"
  return "$status"
}

# A fresh database of BACKEND (sqlite | postgres); exports the switch's environment.
mg_database() {
  BACKEND=$1
  case "$BACKEND" in
    sqlite) DB_URL="sqlite://$WORK/multiguna.db" ;;
    postgres)
      command -v psql >/dev/null || { mg_say "BACKEND=postgres needs psql"; exit 2; }
      PG_ADMIN="${MULTIGUNA_TEST_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test}"
      PG_DB="mg_${MG_NAME//-/_}_$$"
      psql "$PG_ADMIN" -qc "CREATE DATABASE $PG_DB" >/dev/null
      DB_URL="${PG_ADMIN%/*}/$PG_DB"
      ;;
    *) mg_say "BACKEND must be sqlite or postgres"; exit 2 ;;
  esac
  export MULTIGUNA__DATABASE__URL="$DB_URL"
  export MULTIGUNA__LISTENERS__0__BIND=127.0.0.1:0
  export MULTIGUNA__ADMIN__BIND=127.0.0.1:0
  export MULTIGUNA_LOG="${MULTIGUNA_LOG:-warn}"
}

# The province `multiguna loadgen --province N --seed 42` regenerates.
mg_province() {
  FAMILIES=$1
  mg_say "province of $FAMILIES families into $BACKEND"
  "$BIN" province --families "$FAMILIES" --seed 42 --out "$WORK/province" >/dev/null
  "$BIN" import beneficiaries "$WORK/province/beneficiaries.csv" >/dev/null
  "$BIN" import providers "$WORK/province/providers.csv" >/dev/null
  "$BIN" disburse "$WORK/province/disbursements.csv" >/dev/null
}

# Starts `multiguna serve [ARGS...]` with its output in NAME.out / NAME.err; sets
# SERVER_PID, ADDR (ISO 8583) and ADMIN (HTTP) from its stdout lines.
mg_start() {
  local name=$1 i
  shift
  # Made before the child opens them, so the first read below cannot miss the file.
  : >"$WORK/$name.out"
  : >"$WORK/$name.err"
  "$BIN" serve "$@" >>"$WORK/$name.out" 2>>"$WORK/$name.err" &
  SERVER_PID=$!
  MG_PIDS+=("$SERVER_PID")
  ADDR=""
  ADMIN=""
  for ((i = 0; i < 1200; i++)); do
    ADDR="$(sed -n 's/^multiguna: listener iso on //p' "$WORK/$name.out")"
    ADMIN="$(sed -n 's/^multiguna: admin on //p' "$WORK/$name.out")"
    [[ -n "$ADDR" && -n "$ADMIN" ]] && return 0
    if ! kill -0 "$SERVER_PID" 2>/dev/null; then
      mg_say "serve exited before listening: $(tail -n 3 "$WORK/$name.err")"
      exit 1
    fi
    sleep 0.1
  done
  mg_say "serve did not start within 120 s"
  exit 1
}

mg_kill9() {
  kill -KILL "$SERVER_PID" 2>/dev/null || true
  mg_wait "$SERVER_PID" 2>/dev/null || true
}

mg_terminate() {
  kill -TERM "$SERVER_PID" 2>/dev/null || true
  mg_wait "$SERVER_PID" 2>/dev/null || mg_say "serve exited with $?"
}

# `multiguna loadgen` against ADDR in the background, JSON report to FILE; sets
# LOADGEN_PID. Waited for with `mg_wait "$LOADGEN_PID"`.
mg_loadgen_bg() {
  local file=$1
  shift
  "$BIN" loadgen --to "$ADDR" --province "$FAMILIES" --seed 42 --json "$@" >"$file" &
  LOADGEN_PID=$!
  MG_PIDS+=("$LOADGEN_PID")
}

# Runs loadgen in the background and waits, so a signal runs the trap at once.
mg_loadgen() {
  mg_loadgen_bg "$@"
  mg_wait "$LOADGEN_PID"
}

# A value from a JSON file by a Python expression on `r`, e.g. mg_json f.json 'r["sent"]'.
mg_json() {
  python3 - "$1" "$2" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
v = eval(sys.argv[2], {"r": r})
print(f"{v:.3f}" if isinstance(v, float) else v)
EOF
}

# The switch's resident memory, KiB (0 once it is gone).
mg_rss_kib() {
  awk '/^VmRSS:/ { print $2; found = 1 } END { if (!found) print 0 }' "/proc/$1/status" 2>/dev/null || echo 0
}

# HTTP status of GET /healthz (000 when nothing answers within 3 s).
mg_healthz() {
  curl -s -o /dev/null -m 3 -w '%{http_code}' "http://$ADMIN/healthz" || true
}

# Requests the switch has answered, from /metrics (0 when it does not answer).
mg_answered() {
  curl -s -m 3 "http://$ADMIN/metrics" 2>/dev/null |
    awk '/^multiguna_requests_total/ { n += $NF } END { printf "%d\n", n }' || echo 0
}

# SQL against the ledger; prints rows as `a|b|c`.
mg_sql() {
  case "$BACKEND" in
    sqlite)
      python3 - "$WORK/multiguna.db" "$1" <<'EOF'
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True, timeout=30)
for row in db.execute(sys.argv[2]):
    print("|".join(str(v) for v in row))
EOF
      ;;
    postgres) psql "$DB_URL" -qAt -c "$1" ;;
  esac
}

# Changes a SQLite bench database (mg_sql only reads): each argument one statement, in
# autocommit. For schema experiments, with no switch running.
mg_sqlite_exec() {
  python3 -c 'import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None); [c.execute(s).fetchall() for s in sys.argv[2:]]' \
    "$WORK/multiguna.db" "$@"
}

# The switch as it stands under the closed loop of benches/run.sh (8 x 32) for DURATION
# s; the loadgen report goes to NAME.json.
mg_closed_loop_run() {
  mg_start "$1"
  mg_loadgen "$WORK/$1.json" --duration-s "$DURATION" --connections 8 --depth 32
  mg_terminate
}

# Checks approvals recorded by `loadgen --record` (CSV files) against the ledger: each
# key (F32, F41, F11, F7) must be in `transfers` exactly once, and that row must say 00.
# Prints `seen checked missing duplicates wrong_rc`; checked = seen - missing -
# duplicates - wrong_rc.
mg_check_approvals() {
  case "$BACKEND" in
    sqlite)
      python3 - "$WORK/multiguna.db" "$@" <<'EOF'
import csv, sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True, timeout=30)
# One pass over the ledger into a map: the ledger keeps no index by request key (the
# switch finds keys in memory), so a query per approval would scan the table each time.
rcs_by_key = {}
for key in db.execute("SELECT acquirer, terminal, stan, transmitted, rc FROM transfers WHERE mti <> ''"):
    rcs_by_key.setdefault(key[:4], []).append(key[4])
seen = checked = missing = dups = wrong = 0
for path in sys.argv[2:]:
    with open(path) as f:
        for row in csv.DictReader(f):
            seen += 1
            rcs = rcs_by_key.get((row["acquirer"], row["terminal"], row["stan"], row["transmitted"]), [])
            if not rcs: missing += 1
            elif len(rcs) > 1: dups += 1
            elif rcs[0] != "00": wrong += 1
            else: checked += 1
print(seen, checked, missing, dups, wrong)
EOF
      ;;
    postgres)
      local f copies=""
      for f in "$@"; do copies+="\\copy rec FROM '$f' WITH (FORMAT csv, HEADER true)"$'\n'; done
      psql "$DB_URL" -qAt -F ' ' <<EOF
CREATE TEMP TABLE rec (acquirer TEXT, terminal TEXT, stan TEXT, transmitted TEXT);
$copies
SELECT COUNT(*),
       COUNT(*) FILTER (WHERE n = 1 AND ok = 1),
       COUNT(*) FILTER (WHERE n = 0),
       COUNT(*) FILTER (WHERE n > 1),
       COUNT(*) FILTER (WHERE n = 1 AND ok = 0)
FROM (SELECT COUNT(t.rc) AS n, COUNT(t.rc) FILTER (WHERE t.rc = '00') AS ok
      FROM rec r LEFT JOIN transfers t ON t.acquirer = r.acquirer AND t.terminal = r.terminal
          AND t.stan = r.stan AND t.transmitted = r.transmitted
      GROUP BY r.acquirer, r.terminal, r.stan, r.transmitted) x;
EOF
      ;;
  esac
}

# Keys of load generator traffic (terminals LG...) posted more than once: must be 0.
mg_ledger_duplicates() {
  mg_sql "SELECT COUNT(*) FROM (SELECT 1 FROM transfers WHERE terminal LIKE 'LG%'
    GROUP BY mti, acquirer, terminal, stan, transmitted HAVING COUNT(*) > 1) d"
}

# `multiguna ledger verify`, its last line; fails the script when it fails.
mg_verify() {
  local out
  if ! out="$("$BIN" ledger verify 2>&1)"; then
    mg_say "ledger verify FAILED: $out"
    return 1
  fi
  printf '%s\n' "$out" | tail -n 1
}

# `p50 .. p99 .. max ..` (ms) of the answers with response code CODE in a loadgen report.
mg_code_latency() {
  mg_json "$1" "(lambda l: 'p50 %.1f p99 %.1f max %.1f (%d answers)' % (l['p50_ms'], l['p99_ms'], l['max_ms'], l['count']) if l else 'none')(r['latency_by_code'].get('$2'))"
}

# The machine's 1-minute load average: other work on the shared cores skews figures.
mg_loadavg() { cut -d' ' -f1 /proc/loadavg; }
