#!/usr/bin/env bash
# Checkpoint benchmark: for each state backend (memory, filesystem, rocksdb,
# rocksdb with incremental checkpoints) it runs a keyed running-sum job
# (bench/checkpoint_job.lua) over N keys and prints one markdown table:
# throughput with checkpoints every second against the same job with
# checkpoints off, checkpoint duration (total and the longest subtask
# snapshot), checkpoint size, restore time and peak memory, plus the size and
# duration of an incremental RocksDB checkpoint after 1% of the keys changed.
# The synchronous pause is how long a worker stops for a snapshot (state
# copied, barrier not yet forwarded); the rest of a snapshot is written off
# the worker. A second table gives end-to-end latency through the socket
# source (build/bench_latency, bench/latency_job.lua) at 100k records/s,
# -p 2, with checkpoints every interval, per backend.
#
#   bash bench/checkpoint.sh [--keys N] [--runs R] [--interval T] [--updates U]
#                            [--backends "B ..."] [--no-latency | --latency-only]
#                            [--quick]
#
# --keys N      distinct keys (default 1000000; rounded up to an even number)
# --runs R      runs of each job (default 3); throughput and restore times are
#               medians over runs, checkpoint figures medians over every
#               checkpoint of every run taken once all N keys existed
# --interval T  checkpoint interval (default 1s)
# --updates U   phase-2 updates per half, as a multiple of N (default 2);
#               more gives more checkpoints to take medians over when the
#               engine is fast
# --backends L  only these of: memory filesystem rocksdb rocksdb-incremental
# --no-latency  skip the latency table
# --latency-only  only the latency table
# --quick       20000 keys, 1 run, 10 ms interval: CI uses it to check that
#               the benchmark works; its figures mean nothing
#
# The input (generated, deterministic) has (1 + 2U) N lines "k<i>,<v>" in two
# equal halves, one per source subtask (-p 2 splits a file by bytes): each
# half first writes each of its N/2 keys once (phase 1, v = 1), then U N updates
# cycling over only 1% of its keys (phase 2, v = 2). The job reports on stderr
# when each source subtask reaches phase 2; a checkpoint counts as "all keys
# exist" when it was triggered after both reports (the first checkpoint that
# completes after them is skipped, as it may have been triggered before).
#
# Uses the build in $CSTREAM_BUILD (default build/); needs GNU time.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${CSTREAM_BUILD:-$root/build}
keys=1000000
runs=3
interval=1s
updates=2
backends="memory filesystem rocksdb rocksdb-incremental"
latency=1
latency_only=0
lat_rate=100000; lat_seconds=4; lat_warmup=1
while [ $# -gt 0 ]; do
  case "$1" in
    --backends) backends=$2; shift 2 ;;
    --no-latency) latency=0; shift ;;
    --latency-only) latency_only=1; shift ;;
    --keys) keys=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --interval) interval=$2; shift 2 ;;
    --updates) updates=$2; shift 2 ;;
    --quick) keys=20000; runs=1; interval=10ms; lat_rate=2000; lat_seconds=1; lat_warmup=0.2; shift ;;
    *) echo "usage: bench/checkpoint.sh [--keys N] [--runs R] [--interval T] [--updates U] [--backends \"B ...\"] [--no-latency] [--quick]" >&2
       exit 2 ;;
  esac
done
case "$keys$runs$updates" in *[!0-9]*) echo "--keys, --runs and --updates take positive integers" >&2; exit 2 ;; esac
[ "$updates" -ge 1 ] || { echo "--updates takes a positive integer" >&2; exit 2; }
[ "$keys" -ge 2 ] && [ "$runs" -ge 1 ] || { echo "need --keys >= 2 and --runs >= 1" >&2; exit 2; }
keys=$(( (keys + 1) / 2 * 2 ))
bin=$build/cstream-lua
job=$root/bench/checkpoint_job.lua
[ -x "$bin" ] || { echo "build first: bash scripts/build.sh (or set CSTREAM_BUILD)" >&2; exit 1; }
timecmd=/usr/bin/time
[ -x "$timecmd" ] || { echo "bench needs GNU time (apt-get install time)" >&2; exit 1; }

load_start=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM
input=$work/input.txt
half=$(( keys / 2 ))
phase2=$(( keys * updates ))   # phase-2 lines per half
lines=$(( 2 * (half + phase2) ))

# The input: fixed-width lines, so the two halves have the same bytes and
# the byte split between the two source subtasks falls between them.
awk -v half="$half" -v m="$phase2" -v n="$keys" 'BEGIN {
  w = length(n ""); hot = int(half / 100); if (hot < 1) hot = 1
  f1 = "k%0" w "d,1\n"; f2 = "k%0" w "d,2\n"
  for (h = 0; h < 2; h++) {
    base = h * half
    for (i = 1; i <= half; i++) printf f1, base + i
    for (j = 0; j < m; j++) printf f2, base + 1 + j % hot
  }
}' > "$input"
probe=$(awk -v n="$keys" 'BEGIN { printf "k%0" length(n "") "d,1", 1 }')

# backend NAME -> the cstream-lua flags of that variant
flags_of() {
  case "$1" in
    memory) echo "--state-backend memory -D state.backend.memory.max-state-size=1gb" ;;
    filesystem) echo "--state-backend filesystem" ;;
    rocksdb) echo "--state-backend rocksdb -D state.backend.rocksdb.localdir=$work/rocksdb-local" ;;
    rocksdb-incremental) echo "--state-backend rocksdb -D state.backend.rocksdb.localdir=$work/rocksdb-local -D state.backend.incremental=true" ;;
  esac
}
for be in $backends; do
  case "$be" in memory|filesystem|rocksdb|rocksdb-incremental) ;;
    *) echo "unknown backend in --backends: $be" >&2; exit 2 ;; esac
done

# timed OUT ERR CMD...: runs CMD under GNU time; appends "wall_s peak_kib"
# to OUT, stdout of CMD to $work/stdout, stderr to ERR; fails the benchmark
# if CMD fails
timed() {
  local out=$1 err=$2; shift 2
  if ! "$timecmd" -f "%e %M" -o "$work/t" "$@" > "$work/stdout" 2> "$err"; then
    echo "benchmark command failed: $*" >&2; cat "$err" >&2; exit 1
  fi
  cat "$work/t" >> "$out"
}

# ckpt_samples ERR BACKEND RUN: from a verbose run's stderr, the checkpoints
# triggered once all keys existed, as "BACKEND RUN id total_ms sync_ms bytes dir"
ckpt_samples() {
  awk -v be="$2" -v run="$3" '
    /^cstream-bench: phase 2 reached/ { markers++; next }
    /^cstream-lua: checkpoint [0-9]+ completed in / {
      if (markers < 2) next
      if (!skipped) { skipped = 1; next }
      id = $3; total = $6
      match($0, /snapshot [0-9.]+ ms/); snap = substr($0, RSTART + 9, RLENGTH - 12)
      # the synchronous pause; a build from before asynchronous snapshots
      # prints none: its whole snapshot stopped the worker
      sync = snap
      if (match($0, /sync pause [0-9.]+ ms/)) sync = substr($0, RSTART + 11, RLENGTH - 14)
      match($0, /ms, [0-9]+ bytes/); bytes = substr($0, RSTART + 4, RLENGTH - 10)
      dir = "-"; i = index($0, "): "); if (i) dir = substr($0, i + 3)
      print be, run, id, total, snap, bytes, dir, sync
    }' "$1"
}

# shared_of CHKDIR: "name size" of the shared files a checkpoint references
shared_of() {
  cat "$1"/*/cs-manifest 2>/dev/null | awk '$1 == "shared" { print $3, $4 }' | sort -u
}

median() { sort -g | awk '{a[NR] = $1} END { if (NR == 0) print "nan"; else print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
col() { awk -v c="$1" '{ print $c }'; }

if [ "$latency_only" = 0 ]; then
samples=$work/samples
: > "$samples"
for run in $(seq "$runs"); do
  for be in $backends; do
    # shellcheck disable=SC2046
    set -- $(flags_of "$be")
    ck=$work/ckpt-$be
    rm -rf "$ck" "$work/rocksdb-local"
    extra=()
    # incremental: keep every checkpoint so the shared files each one added
    # can be told apart afterwards (the engine removes unreferenced ones)
    [ "$be" = rocksdb-incremental ] && extra=(-D state.checkpoints.num-retained=100000)
    [ "$be" = memory ] || extra+=(--checkpoint-dir "$ck")
    CSTREAM_VERBOSE=1 timed "$work/on-$be" "$work/err-on" \
      "$bin" -p 2 "$@" "${extra[@]}" --checkpoint-interval "$interval" "$job" "$input"
    ckpt_samples "$work/err-on" "$be" "$run" > "$work/s"
    if [ "$be" = rocksdb-incremental ]; then
      # add the referenced shared bytes (full size) and the newly added ones
      prev=
      for d in $(ls -d "$ck"/*/chk-* 2>/dev/null | awk -F'chk-' '{print $NF, $0}' | sort -n | cut -d' ' -f2-); do
        shared_of "$d" > "$work/cur"
        if [ -n "$prev" ]; then
          new=$(awk 'NR == FNR { seen[$1] = 1; next } !($1 in seen) { s += $2 } END { print s + 0 }' "$work/prev" "$work/cur")
        else
          new=$(awk '{ s += $2 } END { print s + 0 }' "$work/cur")
        fi
        full=$(awk '{ s += $2 } END { print s + 0 }' "$work/cur")
        echo "$d $full $new"
        cp "$work/cur" "$work/prev"; prev=1
      done > "$work/shared"
      awk 'NR == FNR { full[$1] = $2; new[$1] = $3; next }
           { d = $7; print $0, (d in full) ? full[d] : 0, (d in new) ? new[d] : 0 }' \
        "$work/shared" "$work/s" >> "$samples"
    else
      awk '{ print $0, 0, 0 }' "$work/s" >> "$samples"
    fi
    # restore: the job in probe mode (one record, from a collection, whose
    # key's new sum it prints) restoring the newest retained checkpoint,
    # against the same run without a restore; the printed sum shows the
    # state came back (a hot key: it is > 1 in every complete checkpoint)
    latest=$(ls -d "$ck"/*/chk-* 2>/dev/null | awk -F'chk-' '{print $NF, $0}' | sort -n | tail -1 | cut -d' ' -f2- || true)
    if [ -n "$latest" ]; then
      for _ in 1 2 3; do
        timed "$work/restore-$be" "$work/err" "$bin" -p 2 "$@" --restore "$latest" \
          --allow-non-restored-state "$job" --probe "$probe"
        sum=$(sed -n 's/.*,\([0-9]*\))$/\1/p' "$work/stdout")
        if [ -z "$sum" ] || [ "$sum" -le 1 ]; then
          echo "restoring $latest ($be) did not bring the state back: printed '$(cat "$work/stdout")'" >&2
          cat "$work/err" >&2; exit 1
        fi
        timed "$work/tiny-$be" "$work/err" "$bin" -p 2 "$@" "$job" --probe "$probe"
      done
    fi
    rm -rf "$ck" "$work/rocksdb-local"
    # checkpoints off; incremental makes no difference then, so the rocksdb
    # baseline serves both RocksDB rows
    if [ "$be" != rocksdb-incremental ] || ! case " $backends " in *" rocksdb "*) true ;; *) false ;; esac; then
      timed "$work/off-${be%-incremental}" "$work/err" "$bin" -p 2 "$@" "$job" "$input"
      rm -rf "$work/rocksdb-local"
    fi
  done
done
[ -s "$work/off-rocksdb" ] && cp "$work/off-rocksdb" "$work/off-rocksdb-incremental"


echo "checkpoint benchmark: $keys keys, $lines records (phase 1: each key once; phase 2: updates to 1% of the keys), -p 2, checkpoint interval $interval; throughput and restore: median of $runs run(s) (restore: 3 per run); checkpoint figures: median over the checkpoints taken once all keys existed; $(nproc) cores, load average $load_start at the start, $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo "?") at the end"
echo
printf '| %-19s | %17s | %18s | %5s | %21s | %19s | %19s | %12s | %9s | %12s |\n' \
  "backend" "records/s ckpt on" "records/s ckpt off" "ratio" "ckpt total ms (median)" \
  "longest snapshot ms" "sync pause ms med/max" "ckpt bytes" "restore s" "peak RSS MiB"
printf '|%s|%s|%s|%s|%s|%s|%s|%s|%s|%s|\n' ---------------------  -------------------  \
  --------------------  -------  ------------------------ ---------------------  \
  --------------------- --------------  -----------  --------------
counts=
for be in $backends; do
  t_on=$(col 1 < "$work/on-$be" | median)
  t_off=$(col 1 < "$work/off-$be" | median)
  rss=$(col 2 < "$work/on-$be" | sort -g | tail -1)
  awk -v b="$be" '$1 == b' "$samples" > "$work/b"
  n=$(wc -l < "$work/b")
  counts="$counts $be $n,"
  tot=$(col 4 < "$work/b" | median)
  syn=$(col 5 < "$work/b" | median)
  pause=$(col 8 < "$work/b" | median)
  pmax=$(col 8 < "$work/b" | sort -g | tail -1)
  if [ "$be" = rocksdb-incremental ]; then
    bytes=$(awk '{ print $6 + $9 }' "$work/b" | median)   # chk dir + referenced shared files
  else
    bytes=$(col 6 < "$work/b" | median)
  fi
  if [ -s "$work/restore-$be" ]; then
    restore=$(awk -v r="$(col 1 < "$work/restore-$be" | median)" -v t="$(col 1 < "$work/tiny-$be" | median)" \
      'BEGIN { printf "%.2f", r - t }')
  else
    restore="n/a"
  fi
  [ "$be" = memory ] && restore="n/a (1)"
  awk -v b="$be" -v on="$t_on" -v off="$t_off" -v rec="$lines" -v tot="$tot" -v syn="$syn" \
      -v by="$bytes" -v rs="$restore" -v m="$rss" -v pm="$pause" -v px="${pmax:-nan}" 'BEGIN {
    if (on <= 0) on = 0.005; if (off <= 0) off = 0.005
    ms = (tot == "nan") ? sprintf("%21s", "n/a") : sprintf("%21.1f", tot)
    ss = (syn == "nan") ? sprintf("%19s", "n/a") : sprintf("%19.1f", syn)
    bs = (by == "nan") ? sprintf("%12s", "n/a") : sprintf("%12.0f", by)
    ps = (pm == "nan") ? sprintf("%21s", "n/a") : sprintf("%21s", sprintf("%.2f / %.2f", pm, px))
    printf "| %-19s | %17.0f | %18.0f | %5.2f | %s | %s | %s | %s | %9s | %12.1f |\n",
      b, rec / on, rec / off, off / on, ms, ss, ps, bs, rs, m / 1024 }'
done
echo
echo "checkpoints measured (taken once all keys existed, all runs):${counts%,}."
echo "ckpt bytes: the checkpoint directory (memory: the snapshot bytes the coordinator holds; rocksdb-incremental: chk-N plus the shared files it references). restore s: wall time of a run that restores the newest checkpoint and processes 1 record of a restored key (checked: its sum comes back) minus the same run without restoring. ratio: records/s with checkpoints over records/s without (1.00 = checkpoints cost nothing)."
echo "longest snapshot ms: the longest subtask snapshot, synchronous and asynchronous parts; sync pause: its synchronous part alone, the time the worker stopped (a build without asynchronous snapshots prints none: there the whole snapshot stopped the worker)."
echo "(1) the memory backend keeps checkpoints in the process (state.backend.memory); nothing survives the process to restore from."
# incremental after 1% of the keys changed: skip the first measured checkpoint
# (its delta may hold the end of phase 1); a delta then is the SST files
# flushed (and, now and then, compacted) since the previous checkpoint
awk '$1 == "rocksdb-incremental"' "$samples" | awk 'seen[$2]++' > "$work/inc"
if [ -s "$work/inc" ]; then
  n=$(wc -l < "$work/inc")
  tot=$(col 4 < "$work/inc" | median); syn=$(col 5 < "$work/inc" | median)
  newm=$(col 10 < "$work/inc" | median)
  newavg=$(awk '{ s += $10 } END { printf "%.0f", s / NR }' "$work/inc")
  newmax=$(col 10 < "$work/inc" | sort -g | tail -1)
  full=$(awk '{ print $6 + $9 }' "$work/inc" | median)
  fullr=$(awk '$1 == "rocksdb"' "$samples" | col 4 | median)
  awk -v n="$n" -v tot="$tot" -v syn="$syn" -v nm="$newm" -v na="$newavg" -v nx="$newmax" \
      -v full="$full" -v fr="$fullr" 'BEGIN {
    printf "RocksDB incremental, 1%% of the keys changed per checkpoint (%d checkpoints): total %.1f ms (median; full rocksdb checkpoint: %s ms), longest snapshot %.1f ms, new shared bytes median %.0f, mean %.0f, max %.0f (compactions), of %.0f bytes referenced (median new = %.1f%%)\n",
      n, tot, (fr == "nan") ? "n/a" : sprintf("%.1f", fr), syn, nm, na, nx, full, (full > 0) ? 100 * nm / full : 0 }'
else
  echo "RocksDB incremental, 1% of the keys changed: n/a (fewer than 2 checkpoints once all keys existed; use a larger --keys or a shorter --interval)"
fi
echo "RocksDB: Debian's librocksdb is built with assertions enabled, which slows it down."
fi

# ------------------------------------------------------------ latency
# p99 end-to-end latency through the socket source at 100k records/s, -p 2,
# checkpoints every interval (the memory backend's checkpoints are
# synchronous: it holds them in the coordinator).
if [ "$latency" = 1 ]; then
  lat=$build/bench_latency
  [ -x "$lat" ] || { echo "build first: bench_latency is missing in $build" >&2; exit 1; }
  : > "$work/lat"
  for be in $backends; do
    : > "$work/lat-runs"
    for _ in $(seq "$runs"); do
      rm -rf "$work/ckpt" "$work/rocksdb-local"
      # shellcheck disable=SC2046
      set -- $(flags_of "$be")
      [ "$be" = memory ] || set -- "$@" --checkpoint-dir "$work/ckpt"
      if ! CSTREAM_VERBOSE=1 "$lat" --rate "$lat_rate" --seconds "$lat_seconds" --warmup "$lat_warmup" -- \
          "$bin" -p 2 "$@" --checkpoint-interval "$interval" "$root/bench/latency_job.lua" \
          > "$work/stdout" 2> "$work/err"; then
        echo "latency benchmark failed ($be):" >&2; tail -20 "$work/err" >&2; exit 1
      fi
      pause=$( (grep -o 'sync pause [0-9.]* ms' "$work/err" || true) | awk '{ print $3 }' | median)
      [ "$pause" = nan ] && pause=$( (grep -o 'snapshot [0-9.]* ms' "$work/err" || true) | awk '{ print $2 }' | median)
      echo "$(awk '{ print $8, $10, $12 }' "$work/stdout") $pause" >> "$work/lat-runs"
    done
    echo "$be $(col 1 < "$work/lat-runs" | median) $(col 2 < "$work/lat-runs" | median) $(col 3 < "$work/lat-runs" | sort -g | tail -1) $(col 4 < "$work/lat-runs" | median)" >> "$work/lat"
  done
  rm -rf "$work/ckpt" "$work/rocksdb-local"
  echo
  echo "latency: $lat_rate records/s for $lat_seconds s through the socket source (bench/latency_job.lua, 10000 keys, a value-state update per record), -p 2, checkpoints every $interval; the first $lat_warmup s not counted; p50, p99 and sync pause: median of $runs run(s), max: highest"
  echo
  echo "| backend             | p50 ms | p99 ms | max ms | sync pause ms |"
  echo "|---------------------|--------|--------|--------|---------------|"
  awk '{ printf "| %-19s | %6.2f | %6.2f | %6.2f | %13s |\n", $1, $2 / 1000, $3 / 1000, $4 / 1000, ($5 == "nan") ? "n/a" : sprintf("%.2f", $5) }' "$work/lat"
fi
