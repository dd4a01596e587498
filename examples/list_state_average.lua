-- ListState: keep every element of a key; after three, print their average
-- and clear. Prints (1,5.0) and (2,3.6666666666666665).
local cstream = require("cstream")

local CountWindowAverageWithListState = {
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

local env = cstream.get_execution_environment()
env:from_elements({ 1, 3 }, { 1, 5 }, { 1, 7 }, { 2, 4 }, { 2, 2 }, { 2, 5 })
  :key_by(1)
  :flat_map(CountWindowAverageWithListState)
  :print()

env:execute("TestStatefulApi")
