#!/usr/bin/env bash
# Installs what is missing, builds, and runs the file word count example.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh >/dev/null
echo "== build/cstream-lua -p 2 examples/file_word_count.lua"
build/cstream-lua -p 2 examples/file_word_count.lua
