#!/usr/bin/env bash
# Runs every benchmark workload against its plain C and plain Lua 5.4
# baselines, measured in the same run on the same machine, and prints
# markdown tables (see bench/README.md for what each column means).
#
#   bash bench/all.sh [--quick] [--runs R] [--scale S] [--backends "B ..."]
#                     [--workloads "W ..."] [--incremental] [--no-checkpoint-bench]
#                     [--no-instructions]
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
# --no-instructions  skip the instructions-per-record column (valgrind)
# --quick        tiny inputs, one run, checkpoints every 50 ms, and the
#                quick modes of run.sh, checkpoint.sh and reload.sh: what CI
#                (ctest bench_all_quick) runs to check that the benchmarks
#                work; its figures mean nothing
#
# Each workload W is bench/W_job.lua (the cstream-lua job), bench/W_baseline.lua
# (plain Lua 5.4, one thread, state in a Lua table) and bench/W_baseline.c
# (plain C, built as build/bench_W_baseline). The Lua baseline is run three
# ways, the yardsticks: the work alone with no output (lua-work), the job's
# semantics with each output record handed to a Lua sink function
# (lua-sink), and the formatted lines written to a file (lua-file); the
# engine with write_as_text on every backend, and on the heap with a
# discarding Lua sink (cs-null) and with print (cs-print, stdout to a file).
# Every run that writes lines is checked against the Lua baseline's as a
# multiset of lines (build/bench_msetsum); any difference, or any failing
# command, fails the script. The instructions column counts instructions
# per record at -p 1 (perf stat when the machine lets it count, else
# valgrind --tool=callgrind on an input a tenth the size).
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
usage="usage: bash bench/all.sh [--quick] [--runs R] [--scale S] [--backends \"B ...\"] [--workloads \"W ...\"] [--incremental] [--no-checkpoint-bench] [--no-instructions]"
ckpt_bench=1
instructions=1
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs=$2; shift 2 ;;
    --scale) scale=$2; shift 2 ;;
    --backends) backends=$2; shift 2 ;;
    --workloads) workloads=$2; shift 2 ;;
    --incremental) backends="$backends rocksdb-incremental"; shift ;;
    --no-checkpoint-bench) ckpt_bench=0; shift ;;
    --no-instructions) instructions=0; shift ;;
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
# the instruction counts' inputs ("-s"): under valgrind a tenth of the
# default sizes (the same files in --quick mode and under perf)
ir_tool=callgrind
if perf stat -x, -e instructions:u true > /dev/null 2> "$work/perf" &&
    ! grep -q "not supported\|not counted" "$work/perf"; then ir_tool=perf; fi
if [ "$instructions" = 1 ] && [ "$ir_tool" = callgrind ] && ! command -v valgrind > /dev/null; then
  echo "the instructions column needs valgrind (apt-get install valgrind) or perf; skipping it" >&2
  instructions=0
fi
if [ "$quick" = 1 ] || [ "$ir_tool" = perf ]; then
  for f in words kv pass info1 info2; do ln -s "$work/$f.txt" "$work/$f-s.txt"; done
else
  # a tenth of the unscaled sizes, whatever --scale: counts stay comparable
  lua5.4 "$root/bench/gen_words.lua" "$work/words-s.txt" 100000 10000
  lua5.4 "$root/bench/gen_kv.lua" "$work/kv-s.txt" 200000 10000
  cp "$work/kv-s.txt" "$work/pass-s.txt"
  lua5.4 "$root/bench/gen_orders.lua" "$work/info1-s.txt" "$work/info2-s.txt" 25000
fi
count_words() { echo $(( $(tr -cd ',' < "$1" | wc -c) + $(wc -l < "$1") )); }
lines_of() { wc -l < "$1" | tr -d ' '; }

# inputs_of W [-s]: the input arguments of workload W (-s: the instruction
# counts' inputs); records_of W [-s]: what its records/s counts (words for
# the word count, input lines otherwise)
inputs_of() {
  local s=${2:-}
  case "$1" in
    wordcount) echo "$work/words$s.txt" ;;
    wordcount100k) echo "$work/words100k.txt" ;;
    enrichment) echo "$work/info1$s.txt $work/info2$s.txt" ;;
    passthrough) echo "$work/pass$s.txt" ;;
    *) echo "$work/kv$s.txt" ;;
  esac
}
records_of() {
  local s=${2:-}
  case "$1" in
    wordcount) count_words "$work/words$s.txt" ;;
    wordcount100k) count_words "$work/words100k.txt" ;;
    enrichment) echo $(( $(lines_of "$work/info1$s.txt") + $(lines_of "$work/info2$s.txt") )) ;;
    passthrough) lines_of "$work/pass$s.txt" ;;
    *) lines_of "$work/kv$s.txt" ;;
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
# stderr to $work/err; appends "wall_s peak_kib user_s sys_s" to $work/t.all; fails the
# benchmark if CMD fails
timed() {
  if ! "$timecmd" -f "%e %M %U %S" -o "$work/t" "$@" > "$work/stdout" 2> "$work/err"; then
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
  if [ "$be" = - ]; then label="the $variant baseline"; else label="$variant -p $p on $be"; fi
  # print's lines are the file sink's, behind "N> " at -p 2
  [ "$variant" = cs-print ] && sed 's/^[0-9]*> //' "$work/stdout" > "$work/out"
  case "$variant" in
    lua-work|lua-sink|cs-null) [ ! -e "$work/out" ] ||
      { echo "$w: $label wrote $work/out" >&2; exit 1; } ;;
    *) check_output "$w" "$label" "$work/out" ;;
  esac
  rm -rf "$work/out" "$work/ckpt" "$work/rocksdb-local"
}

# summarize KEY W VARIANT BACKEND P: appends the result line "W VARIANT
# BACKEND P median_s max_rss_kib ckpt_median_ms ckpts cpu_median_s" to
# $work/results
summarize() {
  local key=$1 t m c n cpu; shift
  t=$(awk '{print $1}' "$work/t-$key" | median)
  cpu=$(awk '{print $3 + $4}' "$work/t-$key" | median)
  m=$(awk '{print $2}' "$work/t-$key" | maxof)
  n=$(wc -l < "$work/c-$key" | tr -d ' ')
  c=$(median < "$work/c-$key")
  echo "$* $t $m $c $n $cpu" >> "$work/results"
}

# instr W VARIANT: instructions per record of one -p 1 run of VARIANT on
# the "-s" inputs (no checkpoints: the count is then repeatable); appends
# "W VARIANT per_record" to $work/ir
instr() {
  local w=$1 v=$2 job n cmd=()
  job=$(job_of "$w")
  # shellcheck disable=SC2046
  case "$v" in
    lua-work) cmd=(lua5.4 "$root/bench/${job}_baseline.lua" $(inputs_of "$w" -s) null) ;;
    lua-sink) cmd=(lua5.4 "$root/bench/${job}_baseline.lua" $(inputs_of "$w" -s) sink) ;;
    lua-file) cmd=(lua5.4 "$root/bench/${job}_baseline.lua" $(inputs_of "$w" -s) "$work/ir-out") ;;
    c) cmd=("$build/bench_${job}_baseline" $(inputs_of "$w" -s) "$work/ir-out") ;;
    cs-null) cmd=("$bin" -p 1 $(flags_of memory) "$root/bench/${job}_job.lua" $(inputs_of "$w" -s) null) ;;
    cs-print) cmd=("$bin" -p 1 $(flags_of memory) "$root/bench/${job}_job.lua" $(inputs_of "$w" -s) print) ;;
    cstream-lua) cmd=("$bin" -p 1 $(flags_of memory) "$root/bench/${job}_job.lua" $(inputs_of "$w" -s) "$work/ir-out") ;;
  esac
  rm -rf "$work/ir-out"
  if [ "$ir_tool" = perf ]; then
    perf stat -x, -e instructions:u -o "$work/ir-log" "${cmd[@]}" > /dev/null 2> "$work/err" ||
      { echo "instruction count failed: ${cmd[*]}" >&2; tail -20 "$work/err" >&2; exit 1; }
    n=$(awk -F, '$3 ~ /^instructions/ { print $1 }' "$work/ir-log")
  else
    valgrind --tool=callgrind --callgrind-out-file=/dev/null "${cmd[@]}" > /dev/null 2> "$work/ir-log" ||
      { echo "instruction count failed: ${cmd[*]}" >&2; tail -20 "$work/ir-log" >&2; exit 1; }
    n=$(sed -n 's/^==[0-9]*== Collected : \([0-9]*\)$/\1/p' "$work/ir-log")
  fi
  [ -n "$n" ] || { echo "no instruction count from ${cmd[*]}: $(tail -3 "$work/ir-log")" >&2; exit 1; }
  rm -rf "$work/ir-out"
  echo "$w $v $(awk -v n="$n" -v r="$(records_of "$w" -s)" 'BEGIN { printf "%.0f", n / r }')" >> "$work/ir"
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
  variants+=("lua-file - 1" "lua-work - 1" "lua-sink - 1" "c - 1")
  for be in $backends; do
    for p in $(parallelisms "$be"); do variants+=("cstream-lua $be $p"); done
  done
  if [ "$w" != wordcount100k ]; then
    for p in $(parallelisms memory); do variants+=("cs-null memory $p" "cs-print memory $p"); done
  fi
  for v in "${variants[@]}"; do
    : > "$work/t-$w-${v// /-}"; : > "$work/c-$w-${v// /-}"
  done
  for _ in $(seq "$runs"); do
    for v in "${variants[@]}"; do
      set -- $v
      # shellcheck disable=SC2046
      case "$1" in
        lua-file) run_once "$w-${v// /-}" "$w" $v lua5.4 "$root/bench/${job}_baseline.lua" $(inputs_of "$w") "$work/out" ;;
        lua-work) run_once "$w-${v// /-}" "$w" $v lua5.4 "$root/bench/${job}_baseline.lua" $(inputs_of "$w") null ;;
        lua-sink) run_once "$w-${v// /-}" "$w" $v lua5.4 "$root/bench/${job}_baseline.lua" $(inputs_of "$w") sink ;;
        cs-null|cs-print) run_once "$w-${v// /-}" "$w" $v "$bin" -p "$3" $(flags_of "$2") \
             --checkpoint-interval "$interval" "$root/bench/${job}_job.lua" $(inputs_of "$w") "${1#cs-}" ;;
        c) run_once "$w-${v// /-}" "$w" $v "$build/bench_${job}_baseline" $(inputs_of "$w") "$work/out" ;;
        *) run_once "$w-${v// /-}" "$w" $v "$bin" -p "$3" $(flags_of "$2") \
             --checkpoint-interval "$interval" "$root/bench/${job}_job.lua" $(inputs_of "$w") "$work/out" ;;
      esac
    done
  done
  for v in "${variants[@]}"; do summarize "$w-${v// /-}" "$w" $v; done
}

: > "$work/results"
: > "$work/ir"
for w in $workloads; do
  run_workload "$w"
  # --quick counts the word count's only: it checks that counting works
  if [ "$instructions" = 1 ] && { [ "$quick" = 0 ] || [ "$w" = wordcount ]; }; then
    for v in lua-work lua-sink lua-file c cs-null cs-print cstream-lua; do instr "$w" "$v"; done
  fi
done

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
if [ "$instructions" = 1 ]; then
  if [ "$ir_tool" = perf ]; then ir_how="perf stat -e instructions:u on the same inputs"
  else ir_how="valgrind --tool=callgrind on inputs a tenth of the default size (word count $(records_of wordcount -s) words)"; fi
  echo "instr/rec: instructions per record of the whole process at -p 1 (heap rows only), no checkpoints, $ir_how"
fi
echo "yardsticks (plain Lua 5.4, one thread): lua-work = the work alone, no output; lua-sink = the job's semantics, each output record handed to a Lua sink function; lua-file = the formatted lines written to a file (the output reference); vs X = records/s over X's records/s. Engine: cstream-lua = write_as_text; cs-null = a discarding Lua sink (add_sink); cs-print = print() with stdout to a file"
echo "inputs: word count $(records_of wordcount) words ($wc_lines lines, 10000 distinct); average and keyed_process $(records_of average) \"key,value\" lines over $kv_keys keys; passthrough the same lines $pass_copies time(s) over ($(records_of passthrough) lines); enrichment $orders orders ($(records_of enrichment) lines in two files)"
echo
table_head() {
  printf '| %-13s | %-11s | %-10s | %1s | %10s | %7s | %7s | %7s | %9s | %8s | %11s | %5s |\n' \
    workload variant backend p "records/s" "vs work" "vs sink" "vs file" "instr/rec" "peak MiB" "ckpt ms med" ckpts
  echo "|---------------|-------------|------------|---|------------|---------|---------|---------|-----------|----------|-------------|-------|"
}
table_head
print_rows() {
  local w
  for w in "$@"; do
    awk -v w="$w" -v rec="$(records_of "$w")" '
      FILENAME ~ /ir$/ { if ($1 == w) ir[$2] = $3; next }
      $1 == w && $2 == "lua-file" { file = $5 }
      $1 == w && $2 == "lua-work" { work = $5 }
      $1 == w && $2 == "lua-sink" { sink = $5 }
      $1 == w { row[++n] = $0 }
      function ratio(b) { return (b == "") ? "-" : sprintf("%.2fx", b / t) }
      END {
        for (i = 1; i <= n; i++) {
          split(row[i], f, " ")
          t = (f[5] <= 0) ? 0.005 : f[5]
          eng = f[2] ~ /^cs/
          ck = (f[7] == "nan" || !eng) ? "-" : sprintf("%.1f", f[7])
          nck = eng ? f[8] : "-"
          r = (f[2] in ir && (!eng || (f[3] == "memory" && f[4] == 1))) ? ir[f[2]] : "-"
          printf "| %-13s | %-11s | %-10s | %1s | %10.0f | %7s | %7s | %7s | %9s | %8.1f | %11s | %5s |\n",
            f[1], f[2], f[3], f[4], rec / t, ratio(work), ratio(sink), ratio(file), r, f[6] / 1024, ck, nck
        }
      }' "$work/ir" "$work/results"
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
  table_head
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
# issues #6's and #13's targets, each from a row above ("-" when that row
# was not run)
rate_of() { # W BACKEND P [BASELINE [VARIANT]] -> records/s, the ratio to BASELINE (default lua-file) and peak MiB
  awk -v w="$1" -v be="$2" -v p="$3" -v base="${4:-lua-file}" -v var="${5:-cstream-lua}" -v rec="$(records_of "$1")" '
    $1 == w && $2 == base { lua = $5 }
    $1 == w && $2 == var && $3 == be && $4 == p { t = $5; m = $6 }
    END { if (t == "") print "- - -"; else { if (t <= 0) t = 0.005; printf "%.0f %.2f %.1f\n", rec / t, lua / t, m / 1024 } }' "$work/results"
}
ir_of() { awk -v w="$1" -v v="$2" '$1 == w && $2 == v { print $3 }' "$work/ir"; } # W VARIANT
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
echo "## Targets (issue #13)"
echo
[ "$quick" = 1 ] && echo "QUICK MODE: tiny inputs; met / NOT met below means nothing." && echo
echo "| target | measured | |"
echo "|---|---|---|"
ir_e=$(ir_of wordcount cstream-lua); ir_w=$(ir_of wordcount lua-work)
ir_x=$(awk -v e="${ir_e:-}" -v b="${ir_w:-}" 'BEGIN { if (e == "" || b == "") print "-"; else printf "%.2f", e / b }')
echo "| word count, instructions per word at -p 1 (write_as_text): <= 2.0x the counting loop's (lua-work) | $(unit "$ir_x" x) (${ir_e:--} vs ${ir_w:--}) | $(verdict "$ir_x" "<" 2.0001) |"
read -r _ r_w _ <<< "$(rate_of wordcount memory 2 lua-work)"
read -r _ r_s _ <<< "$(rate_of wordcount memory 2 lua-sink)"
read -r _ r_rw _ <<< "$(rate_of wordcount rocksdb 2 lua-work)"
echo "| word count, heap, -p 2, checkpoints every $interval: >= 1.0x the counting loop (lua-work) | $(unit "$r_w" x) | $(verdict "$r_w" ">=" 1.0) |"
echo "| word count, heap, -p 2, checkpoints every $interval: >= 1.6x the same-semantics loop (lua-sink) | $(unit "$r_s" x) | $(verdict "$r_s" ">=" 1.6) |"
echo "| word count, RocksDB, -p 2, checkpoints every $interval: >= 0.8x the counting loop (lua-work) | $(unit "$r_rw" x) | $(verdict "$r_rw" ">=" 0.8) |"
read -r r_p _ _ <<< "$(rate_of passthrough memory 1)"
r_pc=$(awk -v rec="$(records_of passthrough)" '$1 == "passthrough" && $2 == "cstream-lua" && $3 == "memory" && $4 == 1 { c = $9 } END { if (c == "") print "-"; else { if (c <= 0) c = 0.005; printf "%.0f", rec / c } }' "$work/results")
echo "| pass-through map, -p 1 (one worker), write_as_text: >= 1M records/s per core (records / CPU seconds of the process; wall: $r_p/s) | $r_pc | $(verdict "$r_pc" ">=" 1000000) |"
for be in memory rocksdb; do
  read -r _ _ rss <<< "$(rate_of wordcount100k "$be" 2)"
  lim=28; [ "$be" = rocksdb ] && lim=46
  echo "| peak RSS, word count over 100k distinct words ($be, -p 2): <= $lim MiB (before issue #13) | $(unit "$rss" " MiB") | $(verdict "$rss" "<" "$lim.05") |"
done
echo "(Nexmark q0-q2 per core: bash bench/nexmark.sh)"
echo
echo "$(nproc) cores; load average $load_start at the start, $(load) at the end; $(( $(date +%s) - started )) s"
