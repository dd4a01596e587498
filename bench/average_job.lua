-- Benchmark job: the seed's ValueState average (examples/value_state_average.lua)
-- over a file of "key,value" lines: per key a (count, sum) value state;
-- every third record of a key writes (key,average) and clears the state.
--   cstream-lua bench/average_job.lua INPUT OUTPUT
local cstream = require("cstream")
local sink_to = dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/sink.lua")

local function parse(line)
  local c = line:find(",", 1, true)
  return { line:sub(1, c - 1), math.tointeger(line:sub(c + 1)) }
end

local CountWindowAverage = {
  open = function(self, ctx)
    self.count_and_sum = ctx:get_state(cstream.value_state_descriptor("average"))
  end,
  flat_map = function(self, element, out)
    local current = self.count_and_sum:value() or { 0, 0 }
    current[1] = current[1] + 1
    current[2] = current[2] + element[2]
    self.count_and_sum:update(current)
    if current[1] >= 3 then
      out:collect({ element[1], current[2] / current[1] })
      self.count_and_sum:clear()
    end
  end,
}

local env = cstream.get_execution_environment()
sink_to(env:read_text_file(arg[1])
  :map(parse)
  :key_by(1)
  :flat_map(CountWindowAverage), arg[2])
env:execute("BenchAverage")
