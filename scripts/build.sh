#!/usr/bin/env bash
# Configures and builds cstream-lua into a build directory.
#   scripts/build.sh [--sanitize] [--dir DIR]
# --sanitize builds with AddressSanitizer and UndefinedBehaviorSanitizer
# (into build-san unless --dir says otherwise).
set -euo pipefail
cd "$(dirname "$0")/.."

dir=build
flags=()
while [ $# -gt 0 ]; do
  case "$1" in
    --sanitize) dir=build-san; flags+=(-DCS_ASAN=ON -DCS_UBSAN=ON -DCMAKE_BUILD_TYPE=Debug) ;;
    --dir) dir="$2"; shift ;;
    *) echo "build.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

bash scripts/deps.sh
cmake -S . -B "$dir" "${flags[@]}" >/dev/null
cmake --build "$dir" -j "$(nproc)"
echo "$dir"
