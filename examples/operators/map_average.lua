-- The operator of map_state_average.lua: put each value of a key under a
-- unique map key; after three entries, emit their average and clear.
local cstream = require("cstream")

return {
  open = function(self, ctx)
    self.map_state = ctx:get_map_state(cstream.map_state_descriptor("average"))
  end,

  flat_map = function(self, element, out)
    local count, sum = 0, 0
    for v in self.map_state:values() do
      count = count + 1
      sum = sum + v
    end
    -- The tutorial puts each value under a random UUID; any key unique
    -- among the key's entries will do. Their count so far is, and it lives
    -- in the state, so a restored job goes on where it was (a counter in
    -- the operator would start again at 1 and overwrite entries).
    self.map_state:put(count + 1, element[2])
    count, sum = count + 1, sum + element[2]
    if count >= 3 then
      out:collect({ element[1], sum / count })
      self.map_state:clear()
    end
  end,
}
