#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test (busted specs and C
# tests) under ctest.
#   scripts/test.sh [--sanitize | --tsan] [ctest arguments...]
# --sanitize runs the same suite built with ASan and UBSan.
# --tsan builds with ThreadSanitizer and runs the specs where several
# workers, checkpoints and reloads meet (TSAN_SPECS below, unless ctest
# arguments say otherwise); races fail them (scripts/tsan.supp lists the
# accepted reports, each with its reason).
set -euo pipefail
cd "$(dirname "$0")/.."

build_args=()
# The TSan subset: multi-worker dataflow, reloads (of jobs with timers and
# windows too), checkpoints restored at another parallelism and windows at
# -p 2 (parts of the checkpoint and window specs, CMakeLists.txt), timers,
# asynchronous snapshots, the REST endpoint reading the workers' counters,
# the Kafka source and sink (librdkafka's own threads), the examples
# (about 2 minutes with ctest -j 2 on 2 busy cores; the reload spec, about
# 90 s, is the longest).
TSAN_SPECS='^(spec_engine_(dataflow|reload)_spec_lua|spec_state_checkpoint_spec_lua_tsan|spec_time_window_spec_lua_tsan|spec_time_reload_time_spec_lua(_rocksdb)?|spec_time_timers_spec_lua|spec_state_async_snapshot_spec_lua|spec_obs_(metrics|events)_spec_lua|spec_kafka_(source|sink)_spec_lua|spec_examples_spec_lua)$'

if [ "${1:-}" = "--sanitize" ]; then
  build_args+=(--sanitize)
  shift
  export ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:exitcode=86
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:exitcode=86
elif [ "${1:-}" = "--tsan" ]; then
  build_args+=(--tsan)
  shift
  export TSAN_OPTIONS="halt_on_error=1:exitcode=86:second_deadlock_stack=1:suppressions=$PWD/scripts/tsan.supp"
  if [ $# -eq 0 ]; then
    set -- -R "$TSAN_SPECS"
  fi
fi
dir=$(bash scripts/build.sh "${build_args[@]}" | tail -n 1)
cd "$dir"
ctest --output-on-failure -j "$(nproc)" "$@"
