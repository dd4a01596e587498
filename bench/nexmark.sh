#!/usr/bin/env bash
# The Nexmark benchmark: generates the events once, runs every query's
# engine job on them at -p 1 and prints a markdown table of events/s per
# core next to Flink 1.13's published per-core figures, with a baseline: a
# plain Lua 5.4 loop that only parses the same file.
#
#   bash bench/nexmark.sh [--quick] [--events N]
#
# --events N  the number of events (default 2000000; at the generator's
#             default 10000 events/s of event time that is 200 s)
# --quick     20000 events and one run instead of the median of three:
#             what CI (ctest bench_nexmark_quick) runs to check that the
#             jobs work; its figures mean nothing
#
# At -p 1 the job has one worker thread, so events/s per core is simply
# events / wall seconds; the CPU column (user + sys, GNU time) shows what
# the process used in all, its other threads included. Before timing
# anything, every job's output on 20000 events (the quick size) is checked
# against ref.lua's as a sorted multiset of lines; a difference or a failing
# command fails the script. The figures for Flink are the Nexmark
# repository README's Throughput/Cores (Flink 1.13): events per second per
# measured CPU core.
#
# Uses the build in $CSTREAM_BUILD (default build/); needs GNU time and
# lua5.4.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${CSTREAM_BUILD:-$root/build}
events=2000000
runs=3
quick=0
usage="usage: bash bench/nexmark.sh [--quick] [--events N]"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) quick=1; events=20000; runs=1; shift ;;
    --events) [ $# -ge 2 ] || { echo "$usage" >&2; exit 2; }; events=$2; shift 2 ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
done
case "$events" in ''|*[!0-9]*|0) echo "--events takes a positive integer" >&2; exit 2 ;; esac
bin=$build/cstream-lua
[ -x "$bin" ] || { echo "build first: bash scripts/build.sh (or set CSTREAM_BUILD); missing $bin" >&2; exit 1; }
timecmd=/usr/bin/time
[ -x "$timecmd" ] || { echo "bench needs GNU time (apt-get install time)" >&2; exit 1; }
command -v lua5.4 > /dev/null || { echo "bench needs lua5.4" >&2; exit 1; }

queries="q0 q1 q2 q3 q4 q5 q7 q8 q11 q12"
# Flink 1.13, events/s per core (github:nexmark/nexmark README)
flink() {
  case "$1" in
    q0) echo 155000 ;; q1) echo 158000 ;; q2) echo 175000 ;; q3) echo 152000 ;;
    q4) echo 34000 ;; q5) echo 22000 ;; q7) echo 12000 ;; q8) echo 146000 ;;
    q11) echo 40000 ;; q12) echo 76000 ;;
  esac
}
check_events=20000
seed=1

tmp=${TMPDIR:-/tmp}
work=$(mktemp -d "$tmp/cstream-nexmark.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
started_at=$(date -u '+%Y-%m-%d %H:%M UTC')
load_start=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")

# ------------------------------------------------------------ inputs --
lua5.4 "$root/bench/nexmark/gen.lua" "$check_events" "$seed" > "$work/check.tsv"
if [ "$events" = "$check_events" ]; then
  input=$work/check.tsv
else
  lua5.4 "$root/bench/nexmark/gen.lua" "$events" "$seed" > "$work/events.tsv"
  input=$work/events.tsv
fi

# sorted_output OUT: the lines of a job's output (a file, or a directory
# of files 1..N), sorted bytewise
sorted_output() {
  if [ -d "$1" ]; then cat "$1"/*; elif [ -f "$1" ]; then cat "$1"; fi | LC_ALL=C sort
}

# ------------------------------------------------------------ checks --
for q in $queries; do
  out=$work/check-$q.out
  if ! "$bin" -p 1 "$root/bench/nexmark/$q.lua" "$work/check.tsv" "$out" 2> "$work/err"; then
    echo "nexmark $q failed:" >&2; cat "$work/err" >&2; exit 1
  fi
  lua5.4 "$root/bench/nexmark/ref.lua" "$q" "$work/check.tsv" | LC_ALL=C sort > "$work/want"
  sorted_output "$out" > "$work/got"
  if ! cmp -s "$work/want" "$work/got"; then
    echo "nexmark $q: the engine's rows differ from ref.lua's on $check_events events:" >&2
    diff "$work/want" "$work/got" | head -5 >&2
    exit 1
  fi
  rm -rf "$out"
done

# ------------------------------------------------------------ timing --
# measure NAME CMD...: runs CMD $runs times; appends "NAME wall cpu" (the
# medians of the wall and of the user + sys seconds) to $work/results
median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
measure() {
  local name=$1; shift
  local walls=() cpus=()
  for _ in $(seq "$runs"); do
    rm -rf "$work/out"
    if ! "$timecmd" -f "%e %U %S" -o "$work/t" "$@" > /dev/null 2> "$work/err"; then
      echo "nexmark '$name' failed:" >&2; cat "$work/err" >&2; exit 1
    fi
    read -r e u s < "$work/t"
    walls+=("$e"); cpus+=("$(awk -v u="$u" -v s="$s" 'BEGIN { print u + s }')")
  done
  echo "$name $(printf '%s\n' "${walls[@]}" | median) $(printf '%s\n' "${cpus[@]}" | median)" \
    >> "$work/results"
}

: > "$work/results"
measure parse lua5.4 "$root/bench/nexmark/parse_baseline.lua" "$input"
for q in $queries; do
  measure "$q" "$bin" -p 1 "$root/bench/nexmark/$q.lua" "$input" "$work/out"
done

# ------------------------------------------------------------- table --
echo "Nexmark: $events events (seed $seed), cstream-lua -p 1, median of $runs run(s);" \
  "$(nproc) cores, load $load_start at the start; $started_at"
echo "outputs checked against ref.lua on $check_events events"
echo
printf '| %-34s | %7s | %7s | %16s | %14s | %8s |\n' "query" "wall s" "CPU s" \
  "events/s per core" "Flink 1.13" "ratio"
printf '|%s|%s|%s|%s|%s|%s|\n' "------------------------------------" "---------" "---------" \
  "-------------------" "----------------" "----------"
while read -r name wall cpu; do
  if [ "$name" = parse ]; then
    label="parse only (plain Lua 5.4 loop)"; ref="-"
  else
    label=$name; ref=$(flink "$name")
  fi
  awk -v n="$label" -v w="$wall" -v c="$cpu" -v e="$events" -v f="$ref" 'BEGIN {
    if (w <= 0) w = 0.005
    rate = e / w
    if (f == "-") { fs = "-"; ratio = "-" }
    else { fs = sprintf("%dK", f / 1000); ratio = sprintf("%.2fx", rate / f) }
    printf "| %-34s | %7.2f | %7.2f | %16.0f | %14s | %8s |\n", n, w, c, rate, fs, ratio }'
done < "$work/results"
