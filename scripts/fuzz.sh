#!/usr/bin/env bash
# Builds the libFuzzer targets of spec/fuzz with clang (ASan+UBSan, into
# build-fuzz/) and runs each for SECONDS (default 30) from its seed corpus
# and regression inputs. Fails when any target finds a crash, a leak or a
# broken property; the input is left in build-fuzz/artifacts/<target>/.
#   scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/.."

secs=${1:-30}
shift || true
bash scripts/deps.sh
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  for f in spec/fuzz/fuzz_*.c; do
    t=$(basename "$f" .c)
    targets+=("${t#fuzz_}")
  done
fi

CC=clang cmake -S . -B build-fuzz -DCS_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build-fuzz -j "$(nproc)" --target "${targets[@]/#/fuzz_}"

# Scratch files of the targets on a tmpfs when there is one.
[ -d /dev/shm ] && [ -w /dev/shm ] && export TMPDIR=/dev/shm
export ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=0
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
failed=()
for t in "${targets[@]}"; do
  work=build-fuzz/corpus/$t # what the run adds to the seeds (not committed)
  art=build-fuzz/artifacts/$t
  mkdir -p "$work" "$art"
  echo "== fuzz $t for ${secs}s"
  # -rss_limit_mb: RocksDB and Lua together; -timeout: any input over 10 s
  # is a hang.
  if ! build-fuzz/fuzz_$t -max_total_time="$secs" -timeout=10 \
      -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
      -artifact_prefix="$art/" "$work" "spec/fuzz/corpus/$t" \
      "spec/fuzz/regressions/$t" >"build-fuzz/$t.log" 2>&1; then
    failed+=("$t")
    tail -n 60 "build-fuzz/$t.log"
  fi
  grep -E "^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::average_exec_per_sec)" \
    "build-fuzz/$t.log" | sed "s/^/  $t: /" || true
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: crashes in: ${failed[*]} (inputs in build-fuzz/artifacts/)" >&2
  exit 1
fi
echo "fuzz.sh: ${#targets[@]} target(s), ${secs}s each, no crash"
