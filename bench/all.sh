#!/usr/bin/env bash
# Runs every benchmark workload against its plain C and plain Lua 5.4
# baselines, measured in the same run on the same machine, and prints
# markdown tables (see bench/README.md for what each column means).
#
#   bash bench/all.sh [--quick] [--runs R] [--scale S] [--backends "B ..."]
#                     [--workloads "W ..."] [--incremental] [--no-checkpoint-bench]
#
# --runs R       runs of every measurement (default 3); medians are quoted
# --scale S      multiply every input size by S (default 1; 0.1 for a
#                rehearsal)
# --backends     state backends of the engine rows (default "memory
#                filesystem rocksdb")
# --workloads    a subset of "wordcount average keyed_process enrichment
#                passthrough"
# --incremental  also run RocksDB with incremental checkpoints
# --no-checkpoint-bench  skip bench/checkpoint.sh --runs 1 --updates 6 (1M keys, every
#                backend; a few minutes), which the full run ends with for
#                the checkpoint targets
# --quick        tiny inputs, one run, checkpoints every 50 ms, and the
#                quick modes of run.sh, checkpoint.sh and reload.sh: what CI
#                (ctest bench_all_quick) runs to check that the benchmarks
#                work; its figures mean nothing
#
# Each workload W is bench/W_job.lua (the cstream-lua job), bench/W_baseline.lua
# (plain Lua 5.4, one thread, state in a Lua table) and bench/W_baseline.c
# (plain C, built as build/bench_W_baseline). Every run's output is checked
# against the Lua baseline's as a multiset of lines (build/bench_msetsum);
# any difference, or any failing command, fails the script.
#
# Uses the build in $CSTREAM_BUILD (default build/); needs GNU time and lua5.4.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${CSTREAM_BUILD:-$root/build}
runs=3
scale=1
quick=0
backends="memory filesystem rocksdb"
workloads="wordcount average keyed_process enrichment passthrough"
interval=1s
usage="usage: bash bench/all.sh [--quick] [--runs R] [--scale S] [--backends \"B ...\"] [--workloads \"W ...\"] [--incremental] [--no-checkpoint-bench]"
ckpt_bench=1
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --scale) scale=$2; shift 2 ;;
    --backends) backends=$2; shift 2 ;;
    --workloads) workloads=$2; shift 2 ;;
    --incremental) backends="$backends rocksdb-incremental"; shift ;;
    --no-checkpoint-bench) ckpt_bench=0; shift ;;
    --quick) quick=1; runs=1; interval=50ms; shift ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
done
case "$runs" in ''|*[!0-9]*) echo "--runs takes a positive integer" >&2; exit 2 ;; esac
[ "$runs" -ge 1 ] || { echo "--runs takes a positive integer" >&2; exit 2; }
awk -v s="$scale" 'BEGIN { exit !(s + 0 > 0) }' || { echo "--scale takes a positive number" >&2; exit 2; }
for w in $workloads; do
  case " wordcount average keyed_process enrichment passthrough " in
    *" $w "*) ;; *) echo "unknown workload '$w'" >&2; exit 2 ;;
  esac
done
for be in $backends; do
  case "$be" in memory|filesystem|rocksdb|rocksdb-incremental) ;;
    *) echo "unknown backend '$be'" >&2; exit 2 ;; esac
done
bin=$build/cstream-lua
for t in cstream-lua bench_msetsum bench_latency; do
  [ -x "$build/$t" ] || { echo "build first: bash scripts/build.sh (or set CSTREAM_BUILD); missing $build/$t" >&2; exit 1; }
done
timecmd=/usr/bin/time
[ -x "$timecmd" ] || { echo "bench needs GNU time (apt-get install time)" >&2; exit 1; }
command -v lua5.4 > /dev/null || { echo "bench needs lua5.4" >&2; exit 1; }

# sizes: each engine run lasts a few seconds on a 2-core machine (several
# 1 s checkpoints); --scale multiplies them
sized() { awk -v n="$1" -v s="$scale" 'BEGIN { v = int(n * s); print (v < 10) ? 10 : v }'; }
if [ "$quick" = 1 ]; then
  wc_lines=2000; kv_records=6000; kv_keys=1000; orders=3000; distinct_lines=3000
  pass_copies=1; ops_n=20000; lat_seconds=1; lat_warmup=0.2; lat_rates="2000"
else
  wc_lines=$(sized 1000000); kv_records=$(sized 2000000); kv_keys=$(sized 100000)
  orders=$(sized 250000); distinct_lines=$(sized 600000)
  pass_copies=3; ops_n=$(sized 2000000); lat_seconds=3; lat_warmup=1; lat_rates="10000 100000"
fi

load() { cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?"; }
load_start=$(load)
started=$(date +%s)
started_at=$(date -u '+%Y-%m-%d %H:%M UTC')
# the work directory (inputs, outputs, checkpoints, RocksDB's files): on
# disk under $TMPDIR or /tmp; --quick uses /dev/shm when it can, as fsyncs
# to a busy disk would dominate its tiny runs
tmp=${TMPDIR:-/tmp}
[ "$quick" = 1 ] && [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ] && tmp=/dev/shm
work=$(mktemp -d "$tmp/cstream-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

# ============================================================ inputs
lua5.4 "$root/bench/gen_words.lua" "$work/words.txt" "$wc_lines" 10000
lua5.4 "$root/bench/gen_words.lua" "$work/words100k.txt" "$distinct_lines" 100000
lua5.4 "$root/bench/gen_kv.lua" "$work/kv.txt" "$kv_records" "$kv_keys"
# the pass-through map is cheap per record: its input is the key,value
# file pass_copies times over
for _ in $(seq "$pass_copies"); do cat "$work/kv.txt"; done > "$work/pass.txt"
lua5.4 "$root/bench/gen_orders.lua" "$work/info1.txt" "$work/info2.txt" "$orders"
count_words() { echo $(( $(tr -cd ',' < "$1" | wc -c) + $(wc -l < "$1") )); }
lines_of() { wc -l < "$1" | tr -d ' '; }

# inputs_of W: the input arguments of workload W; records_of W: what its
# records/s counts (words for the word count, input lines otherwise)
inputs_of() {
  case "$1" in
    wordcount) echo "$work/words.txt" ;;
    wordcount100k) echo "$work/words100k.txt" ;;
    enrichment) echo "$work/info1.txt $work/info2.txt" ;;
    passthrough) echo "$work/pass.txt" ;;
    *) echo "$work/kv.txt" ;;
  esac
}
records_of() {
  case "$1" in
    wordcount) count_words "$work/words.txt" ;;
    wordcount100k) count_words "$work/words100k.txt" ;;
    enrichment) echo $(( $(lines_of "$work/info1.txt") + $(lines_of "$work/info2.txt") )) ;;
    passthrough) lines_of "$work/pass.txt" ;;
    *) lines_of "$work/kv.txt" ;;
  esac
}
job_of() { case "$1" in wordcount100k) echo wordcount ;; *) echo "$1" ;; esac; }

# backend NAME -> the cstream-lua flags of that variant
flags_of() {
  case "$1" in
    memory) echo "--state-backend memory -D state.backend.memory.max-state-size=2gb" ;;
    filesystem) echo "--state-backend filesystem --checkpoint-dir $work/ckpt" ;;
    rocksdb) echo "--state-backend rocksdb --checkpoint-dir $work/ckpt -D state.backend.rocksdb.localdir=$work/rocksdb-local" ;;
    rocksdb-incremental) echo "--state-backend rocksdb --checkpoint-dir $work/ckpt -D state.backend.rocksdb.localdir=$work/rocksdb-local -D state.backend.incremental=true" ;;
  esac
}

median() { sort -g | awk '{a[NR] = $1} END { if (NR == 0) print "nan"; else print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
maxof() { sort -g | tail -1; }

# timed CMD...: runs CMD under GNU time with stdout to $work/stdout and
# stderr to $work/err; appends "wall_s peak_kib" to $work/t.all; fails the
# benchmark if CMD fails
timed() {
  if ! "$timecmd" -f "%e %M" -o "$work/t" "$@" > "$work/stdout" 2> "$work/err"; then
    echo "benchmark command failed: $*" >&2; tail -20 "$work/err" >&2; exit 1
  fi
  cat "$work/t" >> "$work/t.all"
}

# check_output W VARIANT OUT: OUT's lines must be the Lua baseline's
check_output() {
  local got
  got=$("$build/bench_msetsum" "$3")
  if [ ! -s "$work/ref-$1" ]; then echo "$got" > "$work/ref-$1"; return; fi
  if [ "$got" != "$(cat "$work/ref-$1")" ]; then
    echo "$1: the output of $2 differs from the Lua baseline's (lines, sum, xor of line hashes: $got vs $(cat "$work/ref-$1"))" >&2
    exit 1
  fi
}

# run_once KEY W VARIANT BACKEND P CMD...: runs CMD (which writes
# $work/out) once, checks its output, appends "wall_s peak_kib" to
# $work/t-KEY and its checkpoint durations (CSTREAM_VERBOSE=1 lines) to
# $work/c-KEY
run_once() {
  local key=$1 w=$2 variant=$3 be=$4 p=$5 label; shift 5
  rm -rf "$work/out" "$work/ckpt" "$work/rocksdb-local"
  : > "$work/t.all"
  CSTREAM_VERBOSE=1 timed "$@"
  cat "$work/t.all" >> "$work/t-$key"
  sed -n 's/^cstream-lua: checkpoint [0-9]* completed in \([0-9.]*\) ms.*/\1/p' "$work/err" >> "$work/c-$key"
  if [ "$be" = - ]; then label="the $variant baseline"; else label="cstream-lua -p $p on $be"; fi
  check_output "$w" "$label" "$work/out"
  rm -rf "$work/out" "$work/ckpt" "$work/rocksdb-local"
}

# summarize KEY W VARIANT BACKEND P: appends the result line "W VARIANT
# BACKEND P median_s max_rss_kib ckpt_median_ms ckpts" to $work/results
summarize() {
  local key=$1 t m c n; shift
  t=$(awk '{print $1}' "$work/t-$key" | median)
  m=$(awk '{print $2}' "$work/t-$key" | maxof)
  n=$(wc -l < "$work/c-$key" | tr -d ' ')
  c=$(median < "$work/c-$key")
  echo "$* $t $m $c $n" >> "$work/results"
}

# parallelisms BACKEND: -p 1 and 2; --quick (a check that the benchmarks
# work, where starting processes dominates) runs -p 1 on memory only
parallelisms() {
  if [ "$quick" = 1 ] && [ "$1" != memory ]; then echo 2; else echo 1 2; fi
}

# run_workload W [BACKENDS]: the Lua baseline (first: its output is the
# reference), the C baseline, then the engine at -p 1 and -p 2 on every
# backend; the runs are interleaved (run 1 of every variant, then run 2,
# ...) so that a change in the machine's load hits every variant alike
run_workload() {
  local w=$1 job backends=${2:-$backends} variants=() v
  job=$(job_of "$w")
  variants+=("lua - 1" "c - 1")
  for be in $backends; do
    for p in $(parallelisms "$be"); do variants+=("cstream-lua $be $p"); done
  done
  for v in "${variants[@]}"; do
    : > "$work/t-$w-${v// /-}"; : > "$work/c-$w-${v// /-}"
  done
  for _ in $(seq "$runs"); do
    for v in "${variants[@]}"; do
      set -- $v
      # shellcheck disable=SC2046
      case "$1" in
        lua) run_once "$w-${v// /-}" "$w" $v lua5.4 "$root/bench/${job}_baseline.lua" $(inputs_of "$w") "$work/out" ;;
        c) run_once "$w-${v// /-}" "$w" $v "$build/bench_${job}_baseline" $(inputs_of "$w") "$work/out" ;;
        *) run_once "$w-${v// /-}" "$w" $v "$bin" -p "$3" $(flags_of "$2") \
             --checkpoint-interval "$interval" "$root/bench/${job}_job.lua" $(inputs_of "$w") "$work/out" ;;
      esac
    done
  done
  for v in "${variants[@]}"; do summarize "$w-${v// /-}" "$w" $v; done
}

: > "$work/results"
for w in $workloads; do run_workload "$w"; done

# word count over 100k distinct words: peak memory on heap and RocksDB
mem_backends=
for be in memory rocksdb; do case " $backends " in *" $be "*) mem_backends="$mem_backends $be" ;; esac; done
[ -n "$mem_backends" ] && run_workload wordcount100k "$mem_backends"

# value state read+update pairs per second, one subtask (-p 1), from Lua
: > "$work/ops"
for be in memory rocksdb; do
  case " $backends " in *" $be "*) ;; *) continue ;; esac
  : > "$work/ops-$be"
  for _ in $(seq "$runs"); do
    rm -rf "$work/rocksdb-local"
    # shellcheck disable=SC2046
    timed "$bin" -p 1 $(flags_of "$be") "$root/bench/state_ops_job.lua" "$ops_n" 1000 value
    v=$(sed -n 's/^value value()+update() pairs\/s \([0-9.]*\)$/\1/p' "$work/stdout")
    [ -n "$v" ] || { echo "state_ops_job.lua printed no value rate: $(cat "$work/stdout")" >&2; exit 1; }
    echo "$v" >> "$work/ops-$be"
  done
  echo "$be $(median < "$work/ops-$be")" >> "$work/ops"
done
rm -rf "$work/rocksdb-local"

# end-to-end latency through a loopback socket source at fixed rates
: > "$work/lat"
for be in $backends; do
  [ "$quick" = 1 ] && [ "$be" = filesystem ] && continue
  for p in $(parallelisms "$be"); do
    for rate in $lat_rates; do
      : > "$work/lat-runs"
      for _ in $(seq "$runs"); do
        rm -rf "$work/ckpt" "$work/rocksdb-local"
        # shellcheck disable=SC2046
        if ! "$build/bench_latency" --rate "$rate" --seconds "$lat_seconds" --warmup "$lat_warmup" -- \
            "$bin" -p "$p" $(flags_of "$be") --checkpoint-interval "$interval" \
            "$root/bench/latency_job.lua" > "$work/stdout" 2> "$work/err"; then
          echo "latency benchmark failed ($be, -p $p, $rate/s):" >&2; tail -20 "$work/err" >&2; exit 1
        fi
        awk '{ print $8, $10, $12 }' "$work/stdout" >> "$work/lat-runs"
      done
      echo "$be $p $rate $(awk '{print $1}' "$work/lat-runs" | median) $(awk '{print $2}' "$work/lat-runs" | median) $(awk '{print $3}' "$work/lat-runs" | maxof)" >> "$work/lat"
    done
  done
done
rm -rf "$work/ckpt" "$work/rocksdb-local"

# ============================================================ output
echo "# cstream-lua benchmarks"
echo
echo "started $started_at, commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?'), $(nproc) cores, load average $load_start at the start"
[ "$quick" = 1 ] && echo "QUICK MODE: tiny inputs, one run; the figures mean nothing."
echo "median of $runs run(s), interleaved; engine rows: checkpoints every $interval; every output checked against the Lua baseline's (as a multiset of lines)"
echo "inputs: word count $(records_of wordcount) words ($wc_lines lines, 10000 distinct); average and keyed_process $(records_of average) \"key,value\" lines over $kv_keys keys; passthrough the same lines $pass_copies time(s) over ($(records_of passthrough) lines); enrichment $orders orders ($(records_of enrichment) lines in two files)"
echo
printf '| %-13s | %-11s | %-19s | %1s | %10s | %6s | %12s | %12s | %5s |\n' \
  workload variant backend p "records/s" "vs Lua" "peak RSS MiB" "ckpt ms med" ckpts
echo "|---------------|-------------|---------------------|---|------------|--------|--------------|--------------|-------|"
print_rows() {
  local w
  for w in "$@"; do
    awk -v w="$w" -v rec="$(records_of "$w")" '
      $1 == w && $2 == "lua" { lua = $5 }
      $1 == w { row[++n] = $0 }
      END {
        for (i = 1; i <= n; i++) {
          split(row[i], f, " ")
          t = (f[5] <= 0) ? 0.005 : f[5]
          ck = (f[7] == "nan") ? "-" : sprintf("%.1f", f[7])
          nck = (f[2] == "cstream-lua") ? f[8] : "-"
          if (f[2] != "cstream-lua") ck = "-"
          printf "| %-13s | %-11s | %-19s | %1s | %10.0f | %5.2fx | %12.1f | %12s | %5s |\n",
            f[1], f[2], f[3], f[4], rec / t, lua / t, f[6] / 1024, ck, nck
        }
      }' "$work/results"
  done
}
# shellcheck disable=SC2086
print_rows $workloads

# ------------------------------------------------------------ others
if [ "$quick" = 1 ]; then
  # the older single-purpose script's quick mode, so CI checks it too
  echo
  echo "## bench/run.sh --quick"
  echo
  bash "$root/bench/run.sh" --quick
fi

# ------------------------------------------------------------ memory
if [ -n "$mem_backends" ]; then
  echo
  echo "## Word count over 100k distinct words: peak memory"
  echo
  echo "$(records_of wordcount100k) words ($distinct_lines lines, 100000 distinct), checkpoints every $interval; peak RSS: highest over runs"
  echo
  printf '| %-13s | %-11s | %-19s | %1s | %10s | %6s | %12s | %12s | %5s |\n' \
    workload variant backend p "records/s" "vs Lua" "peak RSS MiB" "ckpt ms med" ckpts
  echo "|---------------|-------------|---------------------|---|------------|--------|--------------|--------------|-------|"
  print_rows wordcount100k
fi

# ------------------------------------------------------------ state ops
if [ -s "$work/ops" ]; then
  echo
  echo "## Value state read+update from Lua, one subtask"
  echo
  echo "cstream-lua -p 1 bench/state_ops_job.lua $ops_n 1000 value: value():update() pairs per second of the operator's CPU time, 1000 keys, each key's rounds back to back; median of $runs run(s)"
  echo
  echo "| backend    | pairs/s per core |"
  echo "|------------|------------------|"
  awk '{ printf "| %-10s | %16.0f |\n", $1, $2 }' "$work/ops"
fi

# ------------------------------------------------------------ latency
if [ -s "$work/lat" ]; then
  echo
  echo "## Latency through a loopback socket source"
  echo
  echo "bench_latency: lines \"key,due time\" sent at a fixed rate for ${lat_seconds} s over loopback TCP to bench/latency_job.lua (socket_text_stream, key_by, a value-state update per record, print); latency = time the printed line is read back - time the line was due to be sent; lines due in the first ${lat_warmup} s are not counted; checkpoints every $interval. p50 and p99: median over $runs run(s); max: highest."
  echo
  echo "| backend             | p | records/s | p50 ms | p99 ms | max ms |"
  echo "|---------------------|---|-----------|--------|--------|--------|"
  awk '{ printf "| %-19s | %1s | %9s | %6.2f | %6.2f | %6.2f |\n", $1, $2, $3, $4 / 1000, $5 / 1000, $6 / 1000 }' "$work/lat"
fi

# ------------------------------------------------------------ checkpoints
# 1M keys per backend (CI runs checkpoint.sh --quick as its own test)
: > "$work/ckpt-bench"
if [ "$quick" = 0 ] && [ "$ckpt_bench" = 1 ]; then
  echo
  echo "## Checkpoints: bench/checkpoint.sh --runs 1 --keys $(sized 1000000) --updates 6"
  echo
  bash "$root/bench/checkpoint.sh" --runs 1 --keys "$(sized 1000000)" --updates 6 | tee "$work/ckpt-bench"
fi

# ------------------------------------------------------------ targets
# issue #6's targets, each from a row above ("-" when that row was not run)
rate_of() { # W BACKEND P -> records/s and the ratio to the Lua loop
  awk -v w="$1" -v be="$2" -v p="$3" -v rec="$(records_of "$1")" '
    $1 == w && $2 == "lua" { lua = $5 }
    $1 == w && $2 == "cstream-lua" && $3 == be && $4 == p { t = $5; m = $6 }
    END { if (t == "") print "- - -"; else { if (t <= 0) t = 0.005; printf "%.0f %.2f %.1f\n", rec / t, lua / t, m / 1024 } }' "$work/results"
}
unit() { if [ "$1" = - ] || [ -z "$1" ]; then echo -; else echo "$1$2"; fi; } # VALUE UNIT
verdict() { # VALUE OP LIMIT -> met / NOT met / -
  awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN {
    if (v == "-" || v == "") { print "-"; exit }
    ok = (op == ">=") ? v + 0 >= l + 0 : v + 0 < l + 0
    print ok ? "met" : "NOT met" }'
}
echo
echo "## Targets (issue #6)"
echo
[ "$quick" = 1 ] && echo "QUICK MODE: tiny inputs; met / NOT met below means nothing." && echo
echo "| target | measured | |"
echo "|---|---|---|"
read -r _ r_heap _ <<< "$(rate_of wordcount memory 2)"
read -r _ r_rdb _ <<< "$(rate_of wordcount rocksdb 2)"
echo "| word count, heap (memory), -p 2, checkpoints every $interval: >= 1.6x the Lua loop | $(unit "$r_heap" x) | $(verdict "$r_heap" ">=" 1.6) |"
echo "| word count, RocksDB, -p 2, checkpoints every $interval: >= 1.0x the Lua loop | $(unit "$r_rdb" x) | $(verdict "$r_rdb" ">=" 1.0) |"
ops_heap=$(awk '$1 == "memory" { printf "%.0f", $2 }' "$work/ops"); ops_heap=${ops_heap:--}
ops_rdb=$(awk '$1 == "rocksdb" { printf "%.0f", $2 }' "$work/ops"); ops_rdb=${ops_rdb:--}
echo "| value state read+update from Lua, heap: >= 5M pairs/s per core | $ops_heap | $(verdict "$ops_heap" ">=" 5000000) |"
echo "| value state read+update from Lua, RocksDB: >= 1M pairs/s per core | $ops_rdb | $(verdict "$ops_rdb" ">=" 1000000) |"
for be in memory rocksdb; do
  p99=$(awk -v be="$be" '$1 == be && $2 == 2 && $3 == 100000 { printf "%.2f", $5 / 1000 }' "$work/lat"); p99=${p99:--}
  echo "| p99 latency at 100k records/s through the socket source ($be, -p 2): < 5 ms | $(unit "$p99" " ms") | $(verdict "$p99" "<" 5) |"
done
for be in memory rocksdb; do
  read -r _ _ rss <<< "$(rate_of wordcount100k "$be" 2)"
  echo "| peak RSS, word count over 100k distinct words ($be, -p 2): < 50 MiB | $(unit "$rss" " MiB") | $(verdict "$rss" "<" 50) |"
done
for be in memory filesystem; do
  ms=$(awk -F'|' -v be="$be" '{ gsub(/ /, "", $2) } $2 == be { gsub(/ /, "", $6); print $6 }' "$work/ckpt-bench")
  s_=$(awk -v m="${ms:--}" 'BEGIN { if (m == "-" || m == "n/a") print "-"; else printf "%.3f", m / 1000 }')
  echo "| checkpoint of $(sized 1000000) keys, heap ($be; checkpoint.sh, median trigger to completion): < 0.5 s | $(unit "$s_" " s") | $(verdict "$s_" "<" 0.5) |"
done
pause=$(sed -n 's/^RocksDB incremental, 1% of the keys.*longest snapshot \([0-9.]*\) ms.*/\1/p' "$work/ckpt-bench")
s_=$(awk -v m="${pause:--}" 'BEGIN { if (m == "-") print "-"; else printf "%.3f", m / 1000 }')
echo "| checkpoint of $(sized 1000000) keys, RocksDB incremental after 1% change (checkpoint.sh, median longest subtask snapshot): < 0.1 s of pause | $(unit "$s_" " s") | $(verdict "$s_" "<" 0.1) |"
echo
echo "$(nproc) cores; load average $load_start at the start, $(load) at the end; $(( $(date +%s) - started )) s"
