#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test (busted specs and C
# tests) under ctest.
#   scripts/test.sh [--sanitize] [ctest arguments...]
# --sanitize runs the same suite built with ASan and UBSan.
set -euo pipefail
cd "$(dirname "$0")/.."

build_args=()
if [ "${1:-}" = "--sanitize" ]; then
  build_args+=(--sanitize)
  shift
  export ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:exitcode=86
  export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1:exitcode=86
fi
dir=$(bash scripts/build.sh "${build_args[@]}" | tail -n 1)
cd "$dir"
ctest --output-on-failure -j "$(nproc)" "$@"
