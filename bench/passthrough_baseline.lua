-- The plain Lua 5.4 baseline for bench/passthrough_job.lua: every line
-- through a Lua function call, written unchanged.
--   lua5.4 bench/passthrough_baseline.lua INPUT OUTPUT
local map = function(line) return line end
local sink = assert(io.open(arg[2], "w"))
sink:setvbuf("full", 1 << 16)
for line in io.lines(arg[1]) do sink:write(map(line), "\n") end
sink:close()
