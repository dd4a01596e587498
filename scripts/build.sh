#!/usr/bin/env bash
# Configures and builds cstream-lua into a build directory.
#   scripts/build.sh [--sanitize | --tsan] [--dir DIR]
# --sanitize builds with AddressSanitizer and UndefinedBehaviorSanitizer
# (into build-san unless --dir says otherwise); --tsan with
# ThreadSanitizer (into build-tsan).
set -euo pipefail
cd "$(dirname "$0")/.."

dir=build
flags=()
while [ $# -gt 0 ]; do
  case "$1" in
    --sanitize) dir=build-san; flags+=(-DCS_ASAN=ON -DCS_UBSAN=ON -DCMAKE_BUILD_TYPE=Debug) ;;
    --tsan) dir=build-tsan; flags+=(-DCS_TSAN=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo) ;;
    --dir) dir="$2"; shift ;;
    *) echo "build.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

bash scripts/deps.sh
cmake -S . -B "$dir" "${flags[@]}" >/dev/null
cmake --build "$dir" -j "$(nproc)"
echo "$dir"
