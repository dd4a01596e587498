-- The operator of value_state_average.lua (and of the harness example
-- spec): when a key has been seen three times, emit the average of its
-- values and start again. A value state keeps (count, sum) per key.
local cstream = require("cstream")

return {
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
