-- MapState: put each value under a unique key; after three entries, print
-- the average of the values and clear. Prints (1,5.0) and
-- (2,3.6666666666666665).
local cstream = require("cstream")

local CountWindowAverageWithMapState = {
  open = function(self, ctx)
    self.map_state = ctx:get_map_state(cstream.map_state_descriptor("average"))
    self.next_id = 0
  end,

  flat_map = function(self, element, out)
    -- the tutorial uses a random UUID as the map key; any unique key will do
    self.next_id = self.next_id + 1
    self.map_state:put(string.format("%d-%d", element[1], self.next_id), element[2])

    local count, sum = 0, 0
    for v in self.map_state:values() do
      count = count + 1
      sum = sum + v
    end
    if count >= 3 then
      out:collect({ element[1], sum / count })
      self.map_state:clear()
    end
  end,
}

local env = cstream.get_execution_environment()
env:from_elements({ 1, 3 }, { 1, 5 }, { 1, 7 }, { 2, 4 }, { 2, 2 }, { 2, 5 })
  :key_by(1)
  :flat_map(CountWindowAverageWithMapState)
  :print()

env:execute("TestStatefulApi")
