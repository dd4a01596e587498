-- Benchmark job: a keyed process function doing one value-state read and
-- one update per record (a running sum per key), writing (key,sum) for
-- every record. Input: "key,value" lines.
--   cstream-lua bench/keyed_process_job.lua INPUT OUTPUT
local cstream = require("cstream")
local sink_to = dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/sink.lua")

local function parse(line)
  local c = line:find(",", 1, true)
  return { line:sub(1, c - 1), math.tointeger(line:sub(c + 1)) }
end

local RunningSum = {
  open = function(self, ctx)
    self.sum = ctx:get_state(cstream.value_state_descriptor("sum"))
  end,
  process_element = function(self, v, ctx, out)
    local s = (self.sum:value() or 0) + v[2]
    self.sum:update(s)
    out:collect({ v[1], s })
  end,
}

local env = cstream.get_execution_environment()
sink_to(env:read_text_file(arg[1])
  :map(parse)
  :key_by(1)
  :process(RunningSum), arg[2])
env:execute("BenchKeyedProcess")
