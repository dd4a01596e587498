#!/usr/bin/env bash
# Kafka benchmark: kafka_source's and kafka_sink's records/s through
# librdkafka's mock cluster (spec/tools/cs_kafka_mock, on loopback), next
# to a plain librdkafka consumer and producer loop (bench/kafka_baseline.c)
# through the same cluster in the same run. Prints one markdown table of
# medians over the runs. Times include client creation and, for the
# engine, starting the job (one process per run, -p 1).
#
#   bash bench/kafka.sh [--records N] [--runs R] [--quick]
#
# --records N  records per run (default 1000000), values "w<i % 1000>"
# --runs R     runs of each (default 3)
# --quick      20000 records, 1 run: CI checks that the benchmark works;
#              its figures mean nothing
#
# The mock cluster is no broker: it keeps the log in memory, does no
# replication and no fsync, so these figures compare the engine with the
# client library it uses, not with a real Kafka deployment.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${CSTREAM_BUILD:-$root/build}
n=1000000
runs=3
while [ $# -gt 0 ]; do
  case "$1" in
    --records) n=$2; shift ;;
    --runs) runs=$2; shift ;;
    --quick) n=20000; runs=1 ;;
    *) echo "kafka.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

tmp=$(mktemp -d /tmp/cstream-bench-kafka.XXXXXX)
mock_pid=
cleanup() {
  exec 9>&- 2>/dev/null || true
  if [ -n "$mock_pid" ]; then kill "$mock_pid" 2>/dev/null || true; wait "$mock_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT

mkfifo "$tmp/ctl"
"$build/cs_kafka_mock" serve --topic src:4 < "$tmp/ctl" > "$tmp/mock.out" 2> "$tmp/mock.err" &
mock_pid=$!
exec 9> "$tmp/ctl"
for _ in $(seq 100); do grep -q '^bootstrap' "$tmp/mock.out" && break; sleep 0.05; done
boot=$(awk '/^bootstrap/ {print $2}' "$tmp/mock.out")
[ -n "$boot" ] || { echo "kafka.sh: the mock cluster did not start" >&2; exit 1; }
create() { # topic partitions: waits for the mock's answer
  echo "create $1 $2" >&9
  for _ in $(seq 100); do grep -q "ok create $1 $2" "$tmp/mock.out" && return; sleep 0.05; done
  echo "kafka.sh: cannot create topic $1" >&2; exit 1
}

now() { date +%s.%N; }
median() { sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }

# the engine's sink input, one record a line
awk -v n="$n" 'BEGIN { for (i = 0; i < n; i++) print "w" (i % 1000) }' > "$tmp/input.txt"

declare -A secs
record() { secs[$1]="${secs[$1]:-} $2"; }

for r in $(seq "$runs"); do
  topic=src
  [ "$r" -gt 1 ] && { topic=prod$r; create "$topic" 4; }
  record "librdkafka producer loop" "$("$build/bench_kafka_baseline" produce "$boot" "$topic" "$n" | awk '{print $2}')"
done
for r in $(seq "$runs"); do
  record "librdkafka consumer loop" "$("$build/bench_kafka_baseline" consume "$boot" src "$n" | awk '{print $2}')"
done
for r in $(seq "$runs"); do
  t0=$(now)
  "$build/cstream-lua" -p 1 "$root/bench/kafka_source_job.lua" "$boot" src > /dev/null
  record "kafka_source (engine, -p 1)" "$(awk -v a="$(now)" -v b="$t0" 'BEGIN {print a - b}')"
done
for mode in at_least_once exactly_once; do
  for r in $(seq "$runs"); do
    create "$mode$r" 4
    ck="$tmp/ckpt-$mode-$r"
    t0=$(now)
    "$build/cstream-lua" -p 1 --checkpoint-dir "$ck" --state-backend filesystem \
      "$root/bench/kafka_sink_job.lua" "$boot" "$mode$r" "$tmp/input.txt" "$mode" > /dev/null
    record "kafka_sink $mode (engine, -p 1)" "$(awk -v a="$(now)" -v b="$t0" 'BEGIN {print a - b}')"
  done
done

echo "records per run: $n, runs: $runs (medians), broker: the mock cluster of librdkafka $(
  dpkg-query -W -f='${Version}' librdkafka-dev 2>/dev/null || echo '?')"
echo
echo "| loop | seconds | records/s |"
echo "|---|---:|---:|"
for k in "librdkafka consumer loop" "kafka_source (engine, -p 1)" "librdkafka producer loop" \
         "kafka_sink at_least_once (engine, -p 1)" "kafka_sink exactly_once (engine, -p 1)"; do
  m=$(echo "${secs[$k]}" | tr ' ' '\n' | grep . | median)
  awk -v k="$k" -v m="$m" -v n="$n" 'BEGIN {printf "| %s | %.3f | %.0f |\n", k, m, n / m}'
done
