#!/usr/bin/env bash
# Hot reload benchmark: how long a running job is paused when its code is
# reloaded (--watch), for a small job and for a job holding 1M keys of state.
#
#   bash bench/reload.sh [--keys N] [--reloads R] [--quick]
#
# --keys N     distinct keys of the large job (default 1000000)
# --reloads R  reloads per job (default 20)
# --quick      20000 keys, 3 reloads: checks that the benchmark works; its
#              figures mean nothing
#
# Each job is bench/reload_job.lua (a keyed count, value state per key, no
# output but one key's) at -p 2 with the memory state backend, fed over
# loopback TCP by the spec tool cs_lineserver: first a burst of its keys
# ("k1".."kN", one line each, as fast as the job takes them; the load is done
# when the job prints the last key's first count), then, to keep the job
# alive and busy, a trickle of the same keys again, one every 5 ms (their
# counts, printed now and then, must go on from the load's). Then the
# script is rewritten R times (a new output tag, saved by rename as editors
# do), each save ~1.2 s after the previous one (reloads come at most once a
# second), waiting each time for the "reloaded" line on stderr:
#
#   cstream-lua: reloaded job.lua (changed operators: counter): 23.1 ms
#   after the change, processing paused 0.7 ms
#
# "after the change": from the first file event of the save to the commit
# (includes the 20 ms debounce and checking the new version in a scratch
# Lua state); "paused": from asking the workers to the commit (every worker
# snapshots operator state, loads the script into a fresh lua_State and
# opens the new instances, then waits for the decision without taking
# records). The table gives the median and the maximum of both over the R
# reloads, the load time and the resident memory once loaded.
#
# Uses the build in $CSTREAM_BUILD (default build/), which also has the
# cs_lineserver spec tool.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${CSTREAM_BUILD:-$root/build}
keys=1000000
reloads=20
while [ $# -gt 0 ]; do
  case "$1" in
    --keys) keys=$2; shift 2 ;;
    --reloads) reloads=$2; shift 2 ;;
    --quick) keys=20000; reloads=3; shift ;;
    *) echo "usage: bash bench/reload.sh [--keys N] [--reloads R] [--quick]" >&2; exit 2 ;;
  esac
done
bin=$build/cstream-lua
server=$build/cs_lineserver
for f in "$bin" "$server"; do
  [ -x "$f" ] || { echo "reload.sh: $f not found: build first" >&2; exit 1; }
done

work=$(mktemp -d /tmp/cstream-reload-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# wait_until SECONDS COMMAND...: polls every 20 ms; fails after SECONDS.
wait_until() {
  local deadline=$(( $(date +%s) + $1 ))
  shift
  until "$@"; do
    if [ "$(date +%s)" -gt "$deadline" ]; then return 1; fi
    sleep 0.02
  done
}

# reloaded_at_least FILE N: the file has N "reloaded" lines or more.
reloaded_at_least() { [ "$(grep -c '^cstream-lua: reloaded ' "$1" || true)" -ge "$2" ]; }

# run_job LABEL NKEYS: prints one table row.
run_job() {
  local label=$1 n=$2 dir="$work/$1"
  mkdir -p "$dir"
  seq -f 'k%.0f' 1 "$n" > "$dir/keys.txt"
  cp "$root/bench/reload_job.lua" "$dir/job.lua"
  "$server" --file "$dir/keys.txt" --port-file "$dir/port" --burst "$n" --interval-ms 5 \
    --repeat --stop-file "$dir/stop" --timeout 3600 &
  local spid=$!
  pids+=("$spid")
  wait_until 10 test -s "$dir/port" || { echo "reload.sh: the line server did not start" >&2; exit 1; }
  local t0
  t0=$(now)
  "$bin" --watch -p 2 --state-backend memory -D state.backend.memory.max-state-size=4gb \
    "$dir/job.lua" 127.0.0.1 "$(cat "$dir/port")" "k$n" > "$dir/out" 2> "$dir/err" &
  local jpid=$!
  pids+=("$jpid")
  if ! wait_until 1800 grep -qs " k$n 1\$" "$dir/out"; then
    echo "reload.sh: $label: the load did not finish" >&2
    cat "$dir/err" >&2
    exit 1
  fi
  local load_s rss_mb
  load_s=$(elapsed "$t0")
  rss_mb=$(awk '/^VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$jpid/status")
  local i last=0
  for i in $(seq 1 "$reloads"); do
    # saves ~1.2 s apart: reloads come at most once a second
    local since
    since=$(awk -v a="$last" -v b="$(now)" 'BEGIN { print b - a }')
    if awk -v s="$since" 'BEGIN { exit !(s < 1.2) }'; then
      sleep "$(awk -v s="$since" 'BEGIN { printf "%.3f", 1.2 - s }')"
    fi
    sed "s/\"V$((i - 1)) \"/\"V$i \"/" "$dir/job.lua" > "$dir/.job.lua.tmp"
    mv "$dir/.job.lua.tmp" "$dir/job.lua"
    last=$(now)
    if ! wait_until 30 reloaded_at_least "$dir/err" "$i"; then
      echo "reload.sh: $label: reload $i did not happen" >&2
      cat "$dir/err" >&2
      exit 1
    fi
    if grep -q 'reload failed\|rolled back\|topology changed' "$dir/err"; then
      echo "reload.sh: $label: a reload failed" >&2
      cat "$dir/err" >&2
      exit 1
    fi
  done
  # the last version's output
  wait_until 60 grep -qs "> V$reloads " "$dir/out" || {
    echo "reload.sh: $label: no output from the last version" >&2; exit 1; }
  touch "$dir/stop"
  local rc=0
  wait "$jpid" || rc=$?
  wait "$spid" || true
  if [ "$rc" -ne 0 ]; then
    echo "reload.sh: $label: the job exited with $rc" >&2
    cat "$dir/err" >&2
    exit 1
  fi
  # state kept: no key's printed count goes back, and from the second
  # reload on (the load is over by then, on both subtasks) every key printed
  # was counted in the load already, so no count is 1
  lua5.4 - "$dir/out" <<'EOF' || { echo "reload.sh: $label: a count was lost" >&2; exit 1; }
local last = {}
for line in io.lines(arg[1]) do
  local tag, key, n = line:match("V(%d+) (%S+) (%d+)$")
  n = tonumber(n)
  if tonumber(tag) >= 2 and n == 1 then print("count 1 after the load: " .. line) os.exit(1) end
  if n < (last[key] or 0) then print("count went back: " .. line) os.exit(1) end
  last[key] = n
end
EOF
  lua5.4 - "$dir/err" "$label" "$n" "$load_s" "$rss_mb" <<'EOF'
local path, label, n, load_s, rss = arg[1], arg[2], tonumber(arg[3]), arg[4], arg[5]
local after, paused = {}, {}
for line in io.lines(path) do
  local a, p = line:match("^cstream%-lua: reloaded .*: ([%d.]+) ms after the change, processing paused ([%d.]+) ms$")
  if a then after[#after + 1] = tonumber(a) paused[#paused + 1] = tonumber(p) end
end
local function median(t)
  local c = {}
  for i, v in ipairs(t) do c[i] = v end
  table.sort(c)
  local m = #c // 2
  return #c % 2 == 1 and c[m + 1] or (c[m] + c[m + 1]) / 2
end
local function max(t)
  local m = t[1]
  for _, v in ipairs(t) do if v > m then m = v end end
  return m
end
local keys = n >= 1000000 and string.format("%gM", n / 1e6)
             or n >= 1000 and string.format("%gk", n / 1e3) or tostring(n)
print(string.format("| %s | %s | %d | %.1f | %.1f | %.1f | %.1f | %s | %s |", label, keys,
  #after, median(after), max(after), median(paused), max(paused), load_s, rss))
EOF
}

echo "Hot reload pause, cstream-lua --watch -p 2 --state-backend memory," \
     "$reloads reloads per job ($(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg))"
echo
echo "| job | keys in state | reloads | after the change, median (ms) | after the change, max (ms) | processing paused, median (ms) | processing paused, max (ms) | load (s) | RSS loaded (MB) |"
echo "|---|---|---|---|---|---|---|---|---|"
run_job small 100
run_job large "$keys"
