#!/usr/bin/env bash
# Measures the effect of changes: builds each given revision of this
# repository (in a temporary directory) and runs the same workloads on each,
# interleaved run by run so that machine load hits every revision alike.
# Prints CPU seconds (user + sys, less sensitive to a busy machine than wall
# time) and wall seconds per workload and revision, medians of R runs.
#
#   bash bench/compare.sh [--runs R] [--lines N] REV [REV...]
#
# Workloads: word count at -p 1 and -p 2 (heap state, file sink), and the
# state API rates of bench/state_ops_job.lua on heap and RocksDB.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
runs=5
lines=500000
revs=()
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --lines) lines=$2; shift 2 ;;
    -*) echo "usage: bench/compare.sh [--runs R] [--lines N] REV [REV...]" >&2; exit 2 ;;
    *) revs+=("$1"); shift ;;
  esac
done
[ ${#revs[@]} -gt 0 ] || { echo "usage: bench/compare.sh [--runs R] [--lines N] REV [REV...]" >&2; exit 2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
lua5.4 "$root/bench/gen_words.lua" "$work/words.txt" "$lines" 10000

# Build every revision from its own tree.
for rev in "${revs[@]}"; do
  sha=$(git -C "$root" rev-parse --short "$rev")
  mkdir -p "$work/src-$sha"
  git -C "$root" archive "$sha" | tar -x -C "$work/src-$sha"
  cmake -S "$work/src-$sha" -B "$work/build-$sha" -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  cmake --build "$work/build-$sha" -j "$(nproc)" --target cstream-lua >/dev/null
done

# run OUT CMD...: appends "cpu wall" of one run of CMD to OUT.
run() {
  local out=$1; shift
  /usr/bin/time -f "%U %S %e" -o "$work/t" "$@" > "$work/stdout" 2> "$work/stderr" ||
    { echo "failed: $*" >&2; cat "$work/stderr" >&2; exit 1; }
  awk '{printf "%.3f %.3f\n", $1 + $2, $3}' "$work/t" >> "$out"
}

for _ in $(seq "$runs"); do
  for rev in "${revs[@]}"; do
    sha=$(git -C "$root" rev-parse --short "$rev")
    bin=$work/build-$sha/cstream-lua
    src=$work/src-$sha
    for p in 1 2; do
      rm -rf "$work/out"
      run "$work/wc$p-$sha" "$bin" -p "$p" "$src/bench/wordcount_job.lua" "$work/words.txt" "$work/out"
    done
    for be in memory rocksdb; do
      "$bin" -p 1 --state-backend "$be" "$src/bench/state_ops_job.lua" 1000000 1000 \
        > "$work/ops" 2>/dev/null
      awk '/^value/ {print $NF}' "$work/ops" >> "$work/ops-$be-$sha"
    done
  done
done

med() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

echo "word count: $lines lines; state ops: value()+update() pairs/s; median of $runs run(s); $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
printf '| %-10s | %-50s | %12s | %12s | %12s | %12s | %14s | %14s |\n' rev subject \
  "wc -p1 cpu s" "wc -p1 wall s" "wc -p2 cpu s" "wc -p2 wall s" "value ops heap" "value ops rocks"
printf '|%s|%s|%s|%s|%s|%s|%s|%s|\n' ------------ "$(printf -- '-%.0s' {1..52})" \
  -------------- -------------- -------------- -------------- ---------------- ----------------
for rev in "${revs[@]}"; do
  sha=$(git -C "$root" rev-parse --short "$rev")
  subject=$(git -C "$root" log -1 --format=%s "$sha" | cut -c1-50)
  printf '| %-10s | %-50s | %12s | %12s | %12s | %12s | %14s | %14s |\n' "$sha" "$subject" \
    "$(cut -d' ' -f1 "$work/wc1-$sha" | med)" "$(cut -d' ' -f2 "$work/wc1-$sha" | med)" \
    "$(cut -d' ' -f1 "$work/wc2-$sha" | med)" "$(cut -d' ' -f2 "$work/wc2-$sha" | med)" \
    "$(med < "$work/ops-memory-$sha")" "$(med < "$work/ops-rocksdb-$sha")"
done
