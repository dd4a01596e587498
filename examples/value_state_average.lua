-- ValueState: when a key has been seen three times, print the average of
-- its values and start again. The state keeps (count, sum) per key.
-- Prints (1,5.0) and (2,3.6666666666666665).
local cstream = require("cstream")

local CountWindowAverageWithValueState = {
  open = function(self, ctx)
    -- register the state: one (count, sum) tuple per key
    self.count_and_sum = ctx:get_state(cstream.value_state_descriptor("average"))
  end,

  flat_map = function(self, element, out)
    local current = self.count_and_sum:value() or { 0, 0 }
    current[1] = current[1] + 1            -- number of elements seen
    current[2] = current[2] + element[2]   -- their sum
    self.count_and_sum:update(current)
    if current[1] >= 3 then
      out:collect({ element[1], current[2] / current[1] })
      self.count_and_sum:clear()
    end
  end,
}

local env = cstream.get_execution_environment()
env:from_elements({ 1, 3 }, { 1, 5 }, { 1, 7 }, { 2, 4 }, { 2, 2 }, { 2, 5 })
  :key_by(1)
  :flat_map(CountWindowAverageWithValueState)
  :print()

env:execute("TestStatefulApi")
