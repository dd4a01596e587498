-- The operator of reducing_state_sum.lua: a running sum of the values of
-- each key in a reducing state.
local cstream = require("cstream")

return {
  open = function(self, ctx)
    self.sum_state = ctx:get_reducing_state(
      cstream.reducing_state_descriptor("sum", function(a, b) return a + b end))
  end,

  flat_map = function(self, element, out)
    self.sum_state:add(element[2])
    out:collect({ element[1], self.sum_state:get() })
  end,
}
