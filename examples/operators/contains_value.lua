-- The operator of aggregating_state_contains.lua: concatenate the values
-- seen for each key into a string in an aggregating state.
local cstream = require("cstream")

local PREFIX = "Contains："

return {
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
