#!/usr/bin/env bash
# The disk's own floor under the ledger's kind of writes, with no switch running: what
# a commit's fsync costs here, and what makes it slow. Appends of PAGES 4 KiB pages, each
# followed by an fdatasync, back to back (the SQLite writer's WAL appends at
# synchronous = FULL), for DURATION seconds in each of three settings:
#
#   alone   nothing else running
#   cpu     beside three busy loops (two cores: the syncing thread waits for a core
#           after each wake-up, as the writer does beside the runtime, the projector and
#           the load generator)
#   burst   beside a writer of 80 MiB and one fdatasync every 5 s (the projector's step
#           and its checkpoint, every 10 s in the switch, at ten times its size)
#
# Prints, for each setting, the syncs a second, their latency p50/p99/p99.9/max and how
# many took over 5, 10 and 25 ms. The open loop's tail (benches/run.sh with RATE) is
# read against these: what the disk alone never does is not the disk's.
#
#   benches/disk_floor.sh                       # 30 s each, 8 pages a sync
#   DURATION=60 PAGES=16 benches/disk_floor.sh
#
# Settings (environment): DURATION (s, 30), PAGES (8), DIR (the folder to write in: the
# file system of the benches' work folders, $TMPDIR or /tmp). Needs python3.
set -euo pipefail
DURATION="${DURATION:-30}"
PAGES="${PAGES:-8}"
WORK="$(mktemp -d -p "${DIR:-${TMPDIR:-/tmp}}" multiguna-disk.XXXXXX)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Appends and syncs back to back; prints one line.
syncs() {
  python3 - "$WORK/wal" "$DURATION" "$PAGES" <<'EOF'
import os, sys, time
path, duration_s, pages = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
block = os.urandom(4096 * pages)
wrap_bytes = 256 << 20  # written over from the start, as a WAL is after a restart
latencies_s, offset = [], 0
end = time.monotonic() + duration_s
while (start := time.monotonic()) < end:
    os.pwrite(fd, block, offset)
    os.fdatasync(fd)
    latencies_s.append(time.monotonic() - start)
    offset = (offset + len(block)) % wrap_bytes
os.close(fd)
latencies_s.sort()
n = len(latencies_s)
ms = lambda q: 1000 * latencies_s[min(n - 1, int(q * n))]
over = lambda limit_ms: sum(1 for s in latencies_s if s * 1000 > limit_ms)
print(f"{n / duration_s:8.0f} {ms(.5):7.3f} {ms(.99):7.3f} {ms(.999):7.3f} "
      f"{1000 * latencies_s[-1]:7.1f} {over(5):7d} {over(10):7d} {over(25):7d}")
EOF
}

# Writes 80 MiB and syncs it every 5 s until killed.
burst() {
  exec python3 - "$WORK/burst" <<'EOF'
import os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
mib = os.urandom(1 << 20)
while True:
    time.sleep(5)
    for i in range(80):
        os.pwrite(fd, mib, i << 20)
    os.fdatasync(fd)
EOF
}

echo "multiguna disk floor: $(df -P "$WORK" | awk 'NR == 2 { print $1 }') ($WORK), $PAGES pages a sync, ${DURATION} s each"
echo "machine: $(nproc) cores; load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
printf '%-7s %8s %7s %7s %7s %7s %7s %7s %7s\n' "" "syncs/s" "p50 ms" "p99 ms" "p99.9" "max ms" ">5 ms" ">10 ms" ">25 ms"
for setting in alone cpu burst; do
  PIDS=()
  case $setting in
    cpu) for _ in 1 2 3; do python3 -c 'while True: pass' & PIDS+=($!); done ;;
    burst) burst & PIDS+=($!) ;;
  esac
  printf '%-7s %s\n' "$setting" "$(syncs)"
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  PIDS=()
done
