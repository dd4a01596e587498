-- Benchmark job: a pass-through map; every line of the input file goes
-- through a Lua map unchanged to a file sink (the dataflow's own cost).
--   cstream-lua bench/passthrough_job.lua INPUT OUTPUT
local cstream = require("cstream")
local sink_to = dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/sink.lua")
local env = cstream.get_execution_environment()
sink_to(env:read_text_file(arg[1])
  :map(function(line) return line end), arg[2])
env:execute("BenchPassThrough")
