-- The plain Lua 5.4 baseline for bench/average_job.lua: one thread, the
-- (count, sum) per key in a Lua table, the same parsing and output.
-- OUTPUT "null": no output (the work alone); "sink": each { key, average }
-- to a Lua sink function (the job's semantics); a path: each (key,average)
-- written.
--   lua5.4 bench/average_baseline.lua INPUT OUTPUT|null|sink
local format_double = dofile((arg[0]:match("^(.*)/") or ".") .. "/format.lua").double
local state = {}
local output = arg[2]
local out = (output ~= "null" and output ~= "sink") and assert(io.open(output, "w")) or nil
local sink = output == "sink" and function(_) end or nil
if out then out:setvbuf("full", 1 << 16) end
local tointeger = math.tointeger
for line in io.lines(arg[1]) do
  local c = line:find(",", 1, true)
  local key, v = line:sub(1, c - 1), tointeger(line:sub(c + 1))
  local current = state[key] or { 0, 0 }
  current[1] = current[1] + 1
  current[2] = current[2] + v
  state[key] = current
  if current[1] >= 3 then
    if out then
      out:write("(", key, ",", format_double(current[2] / current[1]), ")\n")
    elseif sink then
      sink({ key, current[2] / current[1] })
    end
    state[key] = nil
  end
end
if out then out:close() end
