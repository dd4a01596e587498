#!/usr/bin/env bash
# Judges a change by instructions per record: builds each given revision of
# this repository (each in its own build directory, kept between calls) and
# counts, for each, the instructions of whole runs at -p 1 (valgrind
# --tool=callgrind, or perf stat where the machine lets it count), divided
# by the records of the run. Instruction counts barely move with the
# machine's load, unlike times, so they can judge a change of a few percent
# on a busy machine.
#
#   bash bench/compare.sh [--lines N] [--workloads "W ..."] [--time R] REV [REV...]
#
# REV is a git revision, or "build" for the binaries already in $CSTREAM_BUILD
# (default build/, the working tree's). Workloads (default all):
#   wordcount    bench/wordcount_job.lua, N lines (default 100000), write_as_text
#   wc-null      the same with a discarding Lua sink
#   passthrough  bench/passthrough_job.lua over N "key,value" lines
#   average      bench/average_job.lua over N "key,value" lines, 10000 keys
# --time R also prints CPU and wall seconds of word count at -p 1 and -p 2
# (medians of R runs, interleaved) and the value state rates of
# bench/state_ops_job.lua on heap and RocksDB.
# Builds go to ${CSTREAM_COMPARE_DIR:-$TMPDIR/cstream-compare}/<sha>.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
lines=100000
workloads="wordcount wc-null passthrough average"
time_runs=0
revs=()
usage="usage: bash bench/compare.sh [--lines N] [--workloads \"W ...\"] [--time R] REV [REV...]"
while [ $# -gt 0 ]; do
  case "$1" in
    --lines) lines=$2; shift 2 ;;
    --workloads) workloads=$2; shift 2 ;;
    --time) time_runs=$2; shift 2 ;;
    -*) echo "$usage" >&2; exit 2 ;;
    *) revs+=("$1"); shift ;;
  esac
done
[ ${#revs[@]} -gt 0 ] || { echo "$usage" >&2; exit 2; }
for w in $workloads; do
  case " wordcount wc-null passthrough average " in *" $w "*) ;;
    *) echo "unknown workload '$w'" >&2; exit 2 ;; esac
done

tmp=${TMPDIR:-/tmp}
cache=${CSTREAM_COMPARE_DIR:-$tmp/cstream-compare}
mkdir -p "$cache"
work=$(mktemp -d "$tmp/cstream-compare.XXXXXX")
trap 'rm -rf "$work"' EXIT
lua5.4 "$root/bench/gen_words.lua" "$work/words.txt" "$lines" 10000
lua5.4 "$root/bench/gen_kv.lua" "$work/kv.txt" "$lines" 10000
words=$(( $(tr -cd ',' < "$work/words.txt" | wc -c) + $(wc -l < "$work/words.txt") ))

ir_tool=callgrind
if perf stat -x, -e instructions:u true > /dev/null 2> "$work/perf" &&
    ! grep -q "not supported\|not counted" "$work/perf"; then ir_tool=perf; fi

# Every revision's binary and sources: "build" is $CSTREAM_BUILD as it is;
# a git revision is built once into $cache/<sha>.
declare -A bin src name
for rev in "${revs[@]}"; do
  if [ "$rev" = build ]; then
    bin[$rev]=${CSTREAM_BUILD:-$root/build}/cstream-lua; src[$rev]=$root; name[$rev]="build (working tree)"
    [ -x "${bin[$rev]}" ] || { echo "no ${bin[$rev]}: bash scripts/build.sh" >&2; exit 1; }
    continue
  fi
  sha=$(git -C "$root" rev-parse --short "$rev")
  d=$cache/$sha
  if [ ! -x "$d/build/cstream-lua" ]; then
    rm -rf "$d"; mkdir -p "$d/src"
    git -C "$root" archive "$sha" | tar -x -C "$d/src"
    cmake -S "$d/src" -B "$d/build" -DCMAKE_BUILD_TYPE=RelWithDebInfo > "$work/cmake.log" 2>&1 &&
      cmake --build "$d/build" -j "$(nproc)" --target cstream-lua >> "$work/cmake.log" 2>&1 ||
      { echo "building $rev failed:" >&2; tail -20 "$work/cmake.log" >&2; exit 1; }
  fi
  bin[$rev]=$d/build/cstream-lua; src[$rev]=$d/src
  name[$rev]="$sha $(git -C "$root" log -1 --format=%s "$sha" | cut -c1-44)"
done

# count REV W: instructions per record of one run of workload W by REV
count() {
  local rev=$1 w=$2 n recs cmd
  case "$w" in
    wordcount) cmd=("${bin[$rev]}" -p 1 "${src[$rev]}/bench/wordcount_job.lua" "$work/words.txt" "$work/out"); recs=$words ;;
    wc-null) cmd=("${bin[$rev]}" -p 1 "${src[$rev]}/bench/wordcount_job.lua" "$work/words.txt" null); recs=$words ;;
    passthrough) cmd=("${bin[$rev]}" -p 1 "${src[$rev]}/bench/passthrough_job.lua" "$work/kv.txt" "$work/out"); recs=$lines ;;
    average) cmd=("${bin[$rev]}" -p 1 -D state.backend.memory.max-state-size=2gb "${src[$rev]}/bench/average_job.lua" "$work/kv.txt" "$work/out"); recs=$lines ;;
  esac
  rm -rf "$work/out"
  if [ "$ir_tool" = perf ]; then
    perf stat -x, -e instructions:u -o "$work/log" "${cmd[@]}" > /dev/null 2> "$work/err" ||
      { echo "failed: ${cmd[*]}" >&2; cat "$work/err" >&2; exit 1; }
    n=$(awk -F, '$3 ~ /^instructions/ { print $1 }' "$work/log")
  else
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "${cmd[@]}" > /dev/null 2> "$work/log" ||
      { echo "failed: ${cmd[*]}" >&2; tail -20 "$work/log" >&2; exit 1; }
    n=$(sed -n 's/^==[0-9]*== Collected : \([0-9]*\)$/\1/p' "$work/log")
  fi
  [ -n "$n" ] || { echo "no instruction count from ${cmd[*]}" >&2; exit 1; }
  rm -rf "$work/out"
  awk -v n="$n" -v r="$recs" 'BEGIN { printf "%.0f", n / r }'
}

echo "instructions per record of the whole process at -p 1 ($ir_tool), heap state, no checkpoints; word count: $lines lines ($words words, 10000 distinct); passthrough and average: $lines \"key,value\" lines over 10000 keys"
echo
hdr="| rev | "; sep="|---|"
for w in $workloads; do hdr="$hdr$w | vs first | "; sep="$sep---:|---:|"; done
echo "$hdr" | sed 's/ $//'; echo "$sep"
declare -A first
for rev in "${revs[@]}"; do
  row="| ${name[$rev]} |"
  for w in $workloads; do
    v=$(count "$rev" "$w")
    [ -n "${first[$w]:-}" ] || first[$w]=$v
    row="$row $v | $(awk -v a="$v" -v b="${first[$w]}" 'BEGIN { printf "%+.1f%%", (a - b) * 100 / b }') |"
  done
  echo "$row"
done

[ "$time_runs" -gt 0 ] || exit 0
# ------------------------------------------------------------ --time R
run() { # OUT CMD...: appends "cpu wall" of one run of CMD to OUT
  local out=$1; shift
  /usr/bin/time -f "%U %S %e" -o "$work/t" "$@" > "$work/stdout" 2> "$work/stderr" ||
    { echo "failed: $*" >&2; cat "$work/stderr" >&2; exit 1; }
  awk '{printf "%.3f %.3f\n", $1 + $2, $3}' "$work/t" >> "$out"
}
declare -A key
i=0
for rev in "${revs[@]}"; do key[$rev]=r$i; i=$((i + 1)); done
for _ in $(seq "$time_runs"); do
  for rev in "${revs[@]}"; do
    k=${key[$rev]}
    for p in 1 2; do
      rm -rf "$work/out"
      run "$work/wc$p-$k" "${bin[$rev]}" -p "$p" "${src[$rev]}/bench/wordcount_job.lua" "$work/words.txt" "$work/out"
    done
    for be in memory rocksdb; do
      "${bin[$rev]}" -p 1 --state-backend "$be" "${src[$rev]}/bench/state_ops_job.lua" 1000000 1000 \
        > "$work/ops" 2>/dev/null
      awk '/^value/ {print $NF}' "$work/ops" >> "$work/ops-$be-$k"
    done
  done
done
med() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
echo
echo "word count: $lines lines; state ops: value()+update() pairs/s; median of $time_runs run(s); $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg)"
echo
echo "| rev | wc -p1 cpu s | wc -p1 wall s | wc -p2 cpu s | wc -p2 wall s | value ops heap | value ops rocks |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for rev in "${revs[@]}"; do
  k=${key[$rev]}
  echo "| ${name[$rev]} | $(cut -d' ' -f1 "$work/wc1-$k" | med) | $(cut -d' ' -f2 "$work/wc1-$k" | med) | $(cut -d' ' -f1 "$work/wc2-$k" | med) | $(cut -d' ' -f2 "$work/wc2-$k" | med) | $(med < "$work/ops-memory-$k") | $(med < "$work/ops-rocksdb-$k") |"
done
