#!/usr/bin/env bash
# Scale-out benchmark: records/s of one job run by 1, 2 and 3 processes of
# a group (--group, docs/scale-out.md) through librdkafka's mock cluster
# (spec/tools/cs_kafka_mock, on loopback), next to a plain librdkafka
# consumer loop over the same input topic in the same run. The input (6
# partitions, "k<i % 1000>,<i % 7>") is in the topic before the processes
# start; a run lasts from their start until they have printed one running
# sum per record, so it includes joining the group (about 3 s pass before
# the first assignment here, and each process after the first causes a
# rebalance); the table also gives the time from the first assignment on.
# Prints one table.
#
#   bash bench/group.sh [--records N] [--processes "1 2 3"] [--quick]
#
# --quick  20000 records, 1 and 2 processes: CI checks that it works; its
#          figures mean nothing
#
# The mock cluster is one process holding the log in memory (no
# replication, no fsync), and every process here shares the same cores:
# on a 2-core machine more processes add coordination, not CPU.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${CSTREAM_BUILD:-$root/build}
n=1000000
procs="1 2 3"
while [ $# -gt 0 ]; do
  case "$1" in
    --records) n=$2; shift ;;
    --processes) procs=$2; shift ;;
    --quick) n=20000; procs="1 2" ;;
    *) echo "group.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
parts=6

tmp=$(mktemp -d /tmp/cstream-bench-group.XXXXXX)
mock_pid=
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  exec 9>&- 2>/dev/null || true
  if [ -n "$mock_pid" ]; then kill "$mock_pid" 2>/dev/null || true; wait "$mock_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

mkfifo "$tmp/ctl"
"$build/cs_kafka_mock" serve --topic "in:$parts" < "$tmp/ctl" > "$tmp/mock.out" 2> "$tmp/mock.err" &
mock_pid=$!
exec 9> "$tmp/ctl"
for _ in $(seq 100); do grep -q '^bootstrap' "$tmp/mock.out" && break; sleep 0.05; done
boot=$(awk '/^bootstrap/ {print $2}' "$tmp/mock.out")
[ -n "$boot" ] || { echo "group.sh: the mock cluster did not start" >&2; exit 1; }
create() {
  echo "create $1 $2" >&9
  for _ in $(seq 100); do grep -q "ok create $1 $2" "$tmp/mock.out" && return; sleep 0.05; done
  echo "group.sh: cannot create topic $1" >&2; exit 1
}
now() { date +%s.%N; }

awk -v n="$n" 'BEGIN { for (i = 0; i < n; i++) printf "-1\t\tk%d,%d\n", i % 1000, i % 7 }' \
  | "$build/cs_kafka_mock" produce "$boot" in
consumer=$("$build/bench_kafka_baseline" consume "$boot" in "$n" | awk '{print $2}')

declare -A secs after
for p in $procs; do
  g="bench$p"
  create "$g-sum-repartition" "$parts"
  pids=()
  t0=$(now)
  for i in $(seq "$p"); do
    "$build/cstream-lua" --group "$g" -D "kafka.bootstrap-servers=$boot" \
      --checkpoint-dir "$tmp/chk" --checkpoint-interval 1s --state-backend filesystem \
      -D "cluster.partitions=$parts" -D cluster.session-timeout=3s \
      "$root/bench/group_job.lua" in > "$tmp/out-$p-$i" 2> "$tmp/err-$p-$i" &
    pids+=($!)
  done
  t1=
  for _ in $(seq 6000); do
    [ -z "$t1" ] && grep -qs "runs logical subtask" "$tmp"/err-"$p"-* && t1=$(now)
    lines=$(cat "$tmp"/out-"$p"-* | wc -l)
    [ "$lines" -ge "$n" ] && break
    sleep 0.05
  done
  t2=$(now)
  secs[$p]=$(awk -v a="$t2" -v b="$t0" 'BEGIN {print a - b}')
  after[$p]=$(awk -v a="$t2" -v b="${t1:-$t0}" 'BEGIN {print a - b}')
  [ "$lines" -ge "$n" ] || { echo "group.sh: $p process(es) did not finish:" >&2; cat "$tmp"/err-"$p"-* >&2; exit 1; }
  for q in "${pids[@]}"; do kill -TERM "$q" 2>/dev/null || true; done
  for q in "${pids[@]}"; do wait "$q" 2>/dev/null || true; done
  pids=()
done

echo "records: $n over $parts partitions, broker: the mock cluster of librdkafka $(
  dpkg-query -W -f='${Version}' librdkafka-dev 2>/dev/null || echo '?'), $(nproc) cores, load $(
  cut -d' ' -f1 /proc/loadavg)"
echo
echo "| run | seconds | records/s | seconds after the first assignment | records/s after it |"
echo "|---|---:|---:|---:|---:|"
awk -v m="$consumer" -v n="$n" \
  'BEGIN {printf "| librdkafka consumer loop (reads only) | %.3f | %.0f | - | - |\n", m, n / m}'
for p in $procs; do
  awk -v p="$p" -v m="${secs[$p]}" -v a="${after[$p]}" -v n="$n" \
    'BEGIN {printf "| %d process(es) of the group | %.3f | %.0f | %.3f | %.0f |\n", p, m, n / m, a, n / a}'
done
