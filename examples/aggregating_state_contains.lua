-- AggregatingState: concatenate the values seen for each key into a string.
-- Prints (1,Contains：3) (1,Contains：3 and 5) (1,Contains：3 and 5 and 7)
-- and the same for key 2.
local cstream = require("cstream")

local PREFIX = "Contains："

local ContainsValueFunction = {
  open = function(self, ctx)
    self.total_str = ctx:get_aggregating_state(cstream.aggregating_state_descriptor("totalStr", {
      create_accumulator = function() return PREFIX end,
      add = function(value, acc)
        if acc == PREFIX then return acc .. value end
        return acc .. " and " .. value
      end,
      get_result = function(acc) return acc end,
      merge = function(a, b) return a .. " and " .. b end,
    }))
  end,

  flat_map = function(self, element, out)
    self.total_str:add(element[2])
    out:collect({ element[1], self.total_str:get() })
  end,
}

local env = cstream.get_execution_environment()
env:from_elements({ 1, 3 }, { 1, 5 }, { 1, 7 }, { 2, 4 }, { 2, 2 }, { 2, 5 })
  :key_by(1)
  :flat_map(ContainsValueFunction)
  :print()

env:execute("TestStatefulApi")
