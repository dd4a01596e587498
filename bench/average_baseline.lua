-- The plain Lua 5.4 baseline for bench/average_job.lua: one thread, the
-- (count, sum) per key in a Lua table, the same parsing and output.
--   lua5.4 bench/average_baseline.lua INPUT OUTPUT
local format_double = dofile((arg[0]:match("^(.*)/") or ".") .. "/format.lua").double
local state = {}
local sink = assert(io.open(arg[2], "w"))
sink:setvbuf("full", 1 << 16)
local tointeger = math.tointeger
for line in io.lines(arg[1]) do
  local c = line:find(",", 1, true)
  local key, v = line:sub(1, c - 1), tointeger(line:sub(c + 1))
  local current = state[key] or { 0, 0 }
  current[1] = current[1] + 1
  current[2] = current[2] + v
  state[key] = current
  if current[1] >= 3 then
    sink:write("(", key, ",", format_double(current[2] / current[1]), ")\n")
    state[key] = nil
  end
end
sink:close()
