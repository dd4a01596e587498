-- The plain Lua 5.4 baseline for bench/keyed_process_job.lua: one thread,
-- the running sum per key in a Lua table, the same parsing and output.
-- OUTPUT "null": no output (the work alone); "sink": each { key, sum } to a
-- Lua sink function (the job's semantics); a path: each (key,sum) written.
--   lua5.4 bench/keyed_process_baseline.lua INPUT OUTPUT|null|sink
local sums = {}
local output = arg[2]
local tointeger = math.tointeger
local out = (output ~= "null" and output ~= "sink") and assert(io.open(output, "w")) or nil
local sink = output == "sink" and function(_) end or nil
if out then out:setvbuf("full", 1 << 16) end
for line in io.lines(arg[1]) do
  local c = line:find(",", 1, true)
  local key = line:sub(1, c - 1)
  local s = (sums[key] or 0) + tointeger(line:sub(c + 1))
  sums[key] = s
  if out then
    out:write("(", key, ",", s, ")\n")
  elseif sink then
    sink({ key, s })
  end
end
if out then out:close() end
