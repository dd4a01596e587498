-- bench/group.sh: per-key sums of "k<key>,<value>" records read from the
-- topic arg[1] through a group's repartition topic; each running sum is
-- printed (the bench counts the lines).
local cstream = require("cstream")
local env = cstream.get_execution_environment()
env:kafka_source{ topic = arg[1] }
  :map(function(r)
    local k, v = r.value:match("^(k%d+),(%d+)$")
    return { k, tonumber(v) }
  end)
  :key_by(1)
  :process({
    open = function(self, ctx) self.sum = ctx:get_state(cstream.value_state_descriptor("sum")) end,
    process_element = function(self, v, ctx, out)
      local s = (self.sum:value() or 0) + v[2]
      self.sum:update(s)
      out:collect(v[1], s)
    end,
  }):uid("sum")
  :print()
env:execute("bench_group")
