-- Benchmark job: word count over a file with a Lua flat_map splitting lines
-- and a keyed rolling sum; the running counts go to the sink OUTPUT names
-- (bench/sink.lua: a path, "print" or "null").
--   cstream-lua bench/wordcount_job.lua INPUT OUTPUT
local cstream = require("cstream")
local sink_to = dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/sink.lua")
local env = cstream.get_execution_environment()
local counted = env:read_text_file(arg[1])
  :flat_map(function(line, out)
    for word in line:gmatch("[^,]+") do out:collect(word, 1) end
  end)
  :key_by(1)
  :sum(2)
sink_to(counted, arg[2])
env:execute("BenchWordCount")
