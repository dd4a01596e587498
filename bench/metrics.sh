#!/usr/bin/env bash
# What the metrics cost: word count (bench/wordcount_job.lua) at -p 1 over
# LINES generated lines, counted in instructions by callgrind (a stable
# figure on a shared machine) and timed, in three variants:
#   metrics   this build, REST endpoint off (--quiet): the counters only
#   rest      this build with --rest-port 0, scraped every 200 ms meanwhile
#   base      a build without the metrics (--base-bin), when given
# Usage: bash bench/metrics.sh [--lines N] [--build DIR] [--base-bin BIN]
#                              [--runs N] [--no-callgrind]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$root/build
lines=100000
base_bin=
runs=3
callgrind=1
while [ $# -gt 0 ]; do
  case "$1" in
    --lines) lines=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --base-bin) base_bin=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --no-callgrind) callgrind=0; shift ;;
    *) echo "metrics.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
bin=$build/cstream-lua
[ -x "$bin" ] || { echo "metrics.sh: no $bin (bash scripts/build.sh)" >&2; exit 1; }
work=$(mktemp -d /tmp/cstream-bench-metrics.XXXXXX)
scraper=
cleanup() {
  [ -n "$scraper" ] && kill "$scraper" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
lua5.4 "$root/bench/gen_words.lua" "$work/words.txt" "$lines" 10000
job=$root/bench/wordcount_job.lua

# Scrapes the endpoint the run logs on stderr file $1 until it ends.
scrape() {
  local port=""
  for _ in $(seq 1 600); do
    port=$(sed -n 's|.*REST endpoint on http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$1" | head -1)
    [ -n "$port" ] && break
    sleep 0.05
  done
  [ -n "$port" ] || return 0
  while curl -s -m 2 -o /dev/null "http://127.0.0.1:$port/metrics"; do sleep 0.2; done
}

# run VARIANT TOOL...: runs the job; sets took (its seconds), leaves $work/err.
run() {
  local variant=$1; shift
  local b=$bin flags=(--quiet)
  case "$variant" in
    base) b=$base_bin; flags=() ;;
    rest) flags=(--quiet --rest-port 0) ;;
  esac
  : > "$work/err"
  if [ "$variant" = rest ]; then scrape "$work/err" & scraper=$!; fi
  local s0
  s0=$(date +%s.%N)
  "$@" "$b" -p 1 "${flags[@]}" "$job" "$work/words.txt" null 2>> "$work/err" > /dev/null
  took=$(awk -v a="$s0" -v b="$(date +%s.%N)" 'BEGIN {print b - a}')
  if [ -n "$scraper" ]; then wait "$scraper" 2>/dev/null || true; scraper=; fi
}

variants="metrics rest"
[ -n "$base_bin" ] && variants="base $variants"
echo "# word count, $lines lines, -p 1"
echo
echo "| variant | instructions (callgrind) | vs base | wall s (best of $runs) | vs base |"
echo "|---|---|---|---|---|"
declare -A ir wall
for v in $variants; do
  if [ "$callgrind" = 1 ]; then
    run "$v" valgrind --tool=callgrind --callgrind-out-file="$work/cg.%p" -q
    ir[$v]=$(cat "$work"/cg.* | awk '/^summary:/ {s += $2} END {printf "%.0f", s}')
    rm -f "$work"/cg.*
  else
    ir[$v]=-
  fi
done
# timed runs interleaved, so a busy moment of a shared machine hits every
# variant alike; the best of each
for _ in $(seq 1 "$runs"); do
  for v in $variants; do
    run "$v"
    if [ -z "${wall[$v]:-}" ] || awk -v t="$took" -v b="${wall[$v]}" 'BEGIN {exit !(t < b)}'; then
      wall[$v]=$took
    fi
  done
done
ref=${base_bin:+base}
ref=${ref:-metrics}
for v in $variants; do
  di=-; dw=-
  if [ "${ir[$v]}" != - ]; then
    di=$(awk -v a="${ir[$v]}" -v b="${ir[$ref]}" 'BEGIN {printf "%+.2f%%", (a - b) * 100 / b}')
  fi
  dw=$(awk -v a="${wall[$v]}" -v b="${wall[$ref]}" 'BEGIN {printf "%+.1f%%", (a - b) * 100 / b}')
  printf "| %s | %s | %s | %.3f | %s |\n" "$v" "${ir[$v]}" "$di" "${wall[$v]}" "$dw"
done
