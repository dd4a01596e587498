-- The plain Lua 5.4 baseline for bench/keyed_process_job.lua: one thread,
-- the running sum per key in a Lua table, the same parsing and output.
--   lua5.4 bench/keyed_process_baseline.lua INPUT OUTPUT
local sums = {}
local sink = assert(io.open(arg[2], "w"))
sink:setvbuf("full", 1 << 16)
local tointeger = math.tointeger
for line in io.lines(arg[1]) do
  local c = line:find(",", 1, true)
  local key = line:sub(1, c - 1)
  local s = (sums[key] or 0) + tointeger(line:sub(c + 1))
  sums[key] = s
  sink:write("(", key, ",", s, ")\n")
end
sink:close()
