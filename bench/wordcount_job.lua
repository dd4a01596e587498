-- Benchmark job: word count over a file with a Lua flat_map splitting lines
-- and a keyed rolling sum; the running counts go to a file sink (or, with
-- a second argument "null", to a sink that drops them).
local cstream = require("cstream")
local env = cstream.get_execution_environment()
local counted = env:read_text_file(arg[1])
  :flat_map(function(line, out)
    for word in line:gmatch("[^,]+") do out:collect({ word, 1 }) end
  end)
  :key_by(1)
  :sum(2)
if arg[2] == "null" then
  counted:add_sink(function() end)
else
  counted:write_as_text(arg[2])
end
env:execute("BenchWordCount")
