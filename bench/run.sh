#!/usr/bin/env bash
# Runs the benchmarks and prints a table of medians, with baselines measured
# in the same run: a C loop and a plain Lua 5.4 loop doing the same work.
#
#   bash bench/run.sh [--lines N] [--runs R] [--quick]
#
# --quick: tiny input, one run (CI uses it to check the benchmarks work).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${CSTREAM_BUILD:-$root/build}
lines=1000000
runs=5
while [ $# -gt 0 ]; do
  case "$1" in
    --lines) lines=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --quick) lines=2000; runs=1; shift ;;
    *) echo "usage: bench/run.sh [--lines N] [--runs R] [--quick]" >&2; exit 2 ;;
  esac
done
bin=$build/cstream-lua
cbase=$build/bench_wordcount_baseline
[ -x "$bin" ] && [ -x "$cbase" ] || { echo "build first: bash scripts/build.sh" >&2; exit 1; }
timecmd=/usr/bin/time
[ -x "$timecmd" ] || { echo "bench needs GNU time (apt-get install time)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
input=$work/words.txt
lua5.4 "$root/bench/gen_words.lua" "$input" "$lines" 10000
words=$(( $(tr -cd ',' < "$input" | wc -c) + $(wc -l < "$input") ))

# measure NAME CMD...: runs CMD $runs times; prints "NAME median_s peak_kib"
measure() {
  local name=$1; shift
  local ts=() ms=()
  for _ in $(seq "$runs"); do
    if ! "$timecmd" -f "%e %M" -o "$work/t" "$@" > /dev/null 2> "$work/err"; then
      echo "benchmark '$name' failed:" >&2; cat "$work/err" >&2; exit 1
    fi
    read -r e m < "$work/t"
    ts+=("$e"); ms+=("$m")
  done
  local med mem
  med=$(printf '%s\n' "${ts[@]}" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}')
  mem=$(printf '%s\n' "${ms[@]}" | sort -g | tail -1)
  echo "$name $med $mem"
}

results=$work/results
{
  measure "C loop (1 thread)" "$cbase" "$input" "$work/out-c"
  measure "Lua 5.4 loop (1 thread)" lua5.4 "$root/bench/wordcount_baseline.lua" "$input" "$work/out-lua"
  measure "cstream-lua -p 1" "$bin" -p 1 "$root/bench/wordcount_job.lua" "$input" "$work/out-p1"
  measure "cstream-lua -p 2" "$bin" -p 2 "$root/bench/wordcount_job.lua" "$input" "$work/out-p2"
  measure "Lua 5.4 loop, no output" lua5.4 "$root/bench/wordcount_baseline.lua" "$input" null
  measure "cstream-lua -p 1, no output" "$bin" -p 1 "$root/bench/wordcount_job.lua" "$input" null
  measure "cstream-lua -p 2, no output" "$bin" -p 2 "$root/bench/wordcount_job.lua" "$input" null
} > "$results"

# the engine's output must be the baseline's, as multisets
sort "$work/out-lua" > "$work/a"
cat "$work/out-p2"/* 2>/dev/null | sort > "$work/b" || true
[ -s "$work/b" ] || sort "$work/out-p2" > "$work/b"
cmp -s "$work/a" "$work/b" || { echo "engine output differs from the Lua baseline" >&2; exit 1; }

echo "word count: $lines lines, $words words, 10000 distinct; median of $runs run(s); $(nproc) cores"
echo
printf '| %-30s | %9s | %12s | %11s | %12s |\n' "variant" "median s" "words/s" "vs Lua loop" "peak RSS MiB"
printf '|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..32})" "-----------" "--------------" "-------------" "--------------"
lua_t=$(awk '$0 ~ /^Lua 5.4 loop \(1 thread\)/ {print $(NF-1)}' "$results")
lua_null=$(awk '$0 ~ /^Lua 5.4 loop, no output/ {print $(NF-1)}' "$results")
while read -r line; do
  mem=${line##* }; rest=${line% *}; t=${rest##* }; name=${rest% *}
  base=$lua_t; case "$name" in *"no output"*) base=$lua_null ;; esac
  awk -v n="$name" -v t="$t" -v m="$mem" -v w="$words" -v b="$base" 'BEGIN {
    if (t <= 0) t = 0.005
    printf "| %-30s | %9.2f | %12.0f | %10.2fx | %12.1f |\n", n, t, w / t, b / t, m / 1024 }'
done < "$results"
