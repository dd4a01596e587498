#!/usr/bin/env bash
# Installs the Debian packages cstream-lua needs to build and test, only the
# ones that are missing. Runs apt-get as root, or through sudo.
set -euo pipefail

PACKAGES=(
  build-essential cmake pkg-config
  liblua5.4-dev lua5.4 lua-busted lua-cjson
  librocksdb-dev libuv1-dev libmsgpack-dev libxxhash-dev libyaml-dev
  libmimalloc-dev librdkafka-dev
  libhttp-parser-dev chromium prometheus bsdutils curl
  time
  iproute2 perl-base        # spec/obs/metrics_spec.lua: ss, and the slow clients in perl
  clang libclang-rt-14-dev  # scripts/fuzz.sh: libFuzzer and clang's ASan/UBSan
  libtsan2                  # scripts/test.sh --tsan (gcc's ThreadSanitizer)
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "deps.sh: installing ${missing[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "deps.sh: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
