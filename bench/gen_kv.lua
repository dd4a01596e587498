-- Deterministic "key,value" generator for the keyed benchmarks (average,
-- keyed process, pass-through map).
--   lua5.4 bench/gen_kv.lua OUT RECORDS [KEYS]
-- Writes RECORDS (rounded up to even) fixed-width lines "k<10 digits>,<3
-- digits>": the value an integer in 1..100, the key drawn uniformly from
-- KEYS distinct keys (default 100000), from a fixed linear congruential
-- generator so every run writes the same bytes.
--
-- The file is two halves of equal bytes over disjoint halves of the keys.
-- A file source at parallelism 2 splits a file by bytes, so each key's
-- records are read by one source subtask, in file order, at -p 1 and -p 2
-- alike: a job whose output depends on the order of a key's records (a
-- running sum, an average of every three) writes the same lines as a
-- one-thread baseline reading the file front to back.
local out, n, keys = arg[1], tonumber(arg[2]), tonumber(arg[3] or "100000")
assert(out and n and keys >= 2, "usage: gen_kv.lua OUT RECORDS [KEYS]")
n = (n + 1) // 2 * 2

local seed = 7
local function rand(m)
  seed = (seed * 6364136223846793005 + 1442695040888963407) & 0x7fffffffffffffff
  return (seed >> 17) % m
end

local names = {}
for i = 1, keys do names[i] = string.format("k%010d", i * 2654435761 % 4294967291) end

local f = assert(io.open(out, "w"))
local buf, fmt = {}, string.format
local per_half = keys // 2
for half = 0, 1 do
  local base = half * per_half
  for _ = 1, n // 2 do
    buf[#buf + 1] = fmt("%s,%03d", names[base + 1 + rand(per_half)], 1 + rand(100))
    if #buf == 4096 then f:write(table.concat(buf, "\n"), "\n") buf = {} end
  end
end
if #buf > 0 then f:write(table.concat(buf, "\n"), "\n") end
f:close()
