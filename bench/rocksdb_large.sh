#!/usr/bin/env bash
# RocksDB with state larger than the process could hold in its heap: writes
# N keys x 1 KiB of incompressible values into keyed value state
# (bench/rocksdb_large_job.lua, -p 1) with a small block cache, write buffer
# and value cache, checkpoints every 5 s, and prints one markdown table: the
# logical state size, the size of the last checkpoint, wall time, and peak
# resident memory (GNU time %M, and VmHWM as the job saw it once every value
# was written) against the same job on the filesystem (heap) backend at a
# tenth of the keys, whose memory grows with its state.
#
#   bash bench/rocksdb_large.sh [--keys N] [--quick]
#
# --keys N  keys written (default 2000000: 2 GiB of state and as much free
#           disk; about 3 minutes on a loaded 2-core machine)
# --quick   20000 keys: CI uses it to check that the benchmark works
#
# The test suite runs the same job at 200,000 keys and asserts that peak
# memory stays below half the state (spec/state/checkpoint_spec.lua).
# Uses the build in $CSTREAM_BUILD (default build/); needs GNU time.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${CSTREAM_BUILD:-$root/build}
keys=2000000
while [ $# -gt 0 ]; do
  case "$1" in
    --keys) keys=$2; shift 2 ;;
    --quick) keys=20000; shift ;;
    *) echo "usage: bench/rocksdb_large.sh [--keys N] [--quick]" >&2; exit 2 ;;
  esac
done
case "$keys" in ''|*[!0-9]*) echo "--keys takes a positive integer" >&2; exit 2 ;; esac
[ "$keys" -ge 10 ] || { echo "need --keys >= 10" >&2; exit 2; }
bin=$build/cstream-lua
job=$root/bench/rocksdb_large_job.lua
[ -x "$bin" ] || { echo "build first: bash scripts/build.sh (or set CSTREAM_BUILD)" >&2; exit 1; }
timecmd=/usr/bin/time
[ -x "$timecmd" ] || { echo "bench needs GNU time (apt-get install time)" >&2; exit 1; }
vlen=1024
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

# run NAME KEYS FLAGS...: one run; prints a table row
run() {
  local name=$1 n=$2; shift 2
  rm -rf "$work/chk" "$work/local"; mkdir -p "$work/local"
  if ! "$timecmd" -f "%e %M" -o "$work/t" "$bin" -p 1 --checkpoint-dir "$work/chk" \
       --checkpoint-interval 5s "$@" "$job" "$n" "$vlen" > /dev/null 2> "$work/err"; then
    echo "benchmark command failed:" >&2; cat "$work/err" >&2; exit 1
  fi
  local hwm ckpt
  hwm=$(sed -n 's/.*VmHWM \([0-9]*\) kB.*/\1/p' "$work/err")
  ckpt=$(du -sk "$work/chk" 2>/dev/null | cut -f1 || true) # none in a short run
  read -r wall peak < "$work/t"
  awk -v name="$name" -v n="$n" -v vl="$vlen" -v ck="$ckpt" -v w="$wall" -v p="$peak" -v h="$hwm" 'BEGIN {
    state = n * vl / 1048576
    printf "| %s | %d | %.0f | %s | %.1f | %.0f | %.0f | %.2f |\n",
      name, n, state, ck == "" ? "n/a" : sprintf("%.0f", ck / 1024), w, p / 1024,
      h / 1024, (p / 1024) / state }'
}

echo "| backend | keys | state MiB | last checkpoint MiB | wall s | peak RSS MiB | VmHWM at end MiB | peak RSS / state |"
echo "|---|---|---|---|---|---|---|---|"
run rocksdb "$keys" --state-backend rocksdb -D "state.backend.rocksdb.localdir=$work/local" \
  -D state.backend.rocksdb.block.cache-size=8mb -D state.backend.rocksdb.writebuffer.size=4mb \
  -D state.backend.rocksdb.value-cache.size=4mb
run filesystem "$(( keys / 10 ))" --state-backend filesystem
