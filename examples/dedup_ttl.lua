-- State TTL: drop an event whose id was seen in the last second. Each id
-- keeps a "seen" flag in a value state whose entries expire one second
-- after they were written (Flink's StateTtlConfig), so the state of ids
-- that stop coming goes away on its own, and an id seen again after a
-- second of silence counts as new.
-- Prints (1,a) (2,b) (3,c), then, after a pause longer than the TTL,
-- (1,a) (3,c) (4,d).
local cstream = require("cstream")

-- the operators live in examples/operators/, where specs require them too
local dir = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = dir .. "/?.lua;" .. package.path
local Dedup = require("operators.dedup")

-- Two bursts of (id, payload) events, two seconds apart.
local bursts = {
  { { 1, "a" }, { 2, "b" }, { 1, "a" }, { 3, "c" }, { 2, "b" } },
  { { 1, "a" }, { 3, "c" }, { 3, "c" }, { 4, "d" } },
}

local env = cstream.get_execution_environment()
env:add_source({
  run = function(self, ctx)
    for i, burst in ipairs(bursts) do
      if i > 1 then cstream.sleep(2000) end -- longer than the time to live
      for _, event in ipairs(burst) do ctx:collect(event) end
    end
  end,
})
  :key_by(1)
  :flat_map(Dedup)
  :print()

env:execute("DedupWithTtl")
