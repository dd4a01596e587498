-- The plain Lua 5.4 baseline for bench/passthrough_job.lua: every line
-- through a Lua function call; OUTPUT "null" drops the results (the work
-- alone), "sink" hands each to a Lua sink function, a path writes each
-- unchanged.
--   lua5.4 bench/passthrough_baseline.lua INPUT OUTPUT|null|sink
local map = function(line) return line end
local output = arg[2]
if output == "null" or output == "sink" then
  local sink = output == "sink" and function(_) end or nil
  for line in io.lines(arg[1]) do
    local v = map(line)
    if sink then sink(v) end
  end
else
  local out = assert(io.open(output, "w"))
  out:setvbuf("full", 1 << 16)
  for line in io.lines(arg[1]) do out:write(map(line), "\n") end
  out:close()
end
