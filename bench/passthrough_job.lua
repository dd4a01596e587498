-- Benchmark job: a pass-through map; every line of the input file goes
-- through a Lua map unchanged to a file sink (the dataflow's own cost).
--   cstream-lua bench/passthrough_job.lua INPUT OUTPUT
local cstream = require("cstream")
local env = cstream.get_execution_environment()
env:read_text_file(arg[1])
  :map(function(line) return line end)
  :write_as_text(arg[2])
env:execute("BenchPassThrough")
