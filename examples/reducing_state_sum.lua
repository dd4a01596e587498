-- ReducingState: a running sum of the values of each key.
-- Prints (1,3) (1,8) (1,15) (2,4) (2,6) (2,11).
local cstream = require("cstream")

local SumFunction = {
  open = function(self, ctx)
    self.sum_state = ctx:get_reducing_state(
      cstream.reducing_state_descriptor("sum", function(a, b) return a + b end))
  end,

  flat_map = function(self, element, out)
    self.sum_state:add(element[2])
    out:collect({ element[1], self.sum_state:get() })
  end,
}

local env = cstream.get_execution_environment()
env:from_elements({ 1, 3 }, { 1, 5 }, { 1, 7 }, { 2, 4 }, { 2, 2 }, { 2, 5 })
  :key_by(1)
  :flat_map(SumFunction)
  :print()

env:execute("TestStatefulApi")
