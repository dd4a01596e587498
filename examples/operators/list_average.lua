-- The operator of list_state_average.lua: keep every element of a key in a
-- list state; after three, emit their average and clear.
local cstream = require("cstream")

return {
  open = function(self, ctx)
    self.elements_by_key = ctx:get_list_state(cstream.list_state_descriptor("average"))
  end,

  flat_map = function(self, element, out)
    self.elements_by_key:add(element)
    local all = self.elements_by_key:get()
    if #all >= 3 then
      local count, sum = 0, 0
      for _, e in ipairs(all) do
        count = count + 1
        sum = sum + e[2]
      end
      out:collect({ element[1], sum / count })
      self.elements_by_key:clear()
    end
  end,
}
