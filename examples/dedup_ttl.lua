-- State TTL: drop an event whose id was seen in the last second. Each id
-- keeps a "seen" flag in a value state whose entries expire one second
-- after they were written (Flink's StateTtlConfig), so the state of ids
-- that stop coming goes away on its own, and an id seen again after a
-- second of silence counts as new.
-- Prints (1,a) (2,b) (3,c), then, after a pause longer than the TTL,
-- (1,a) (3,c) (4,d).
local cstream = require("cstream")

local Dedup = {
  open = function(self, ctx)
    -- entries live 1000 ms after their last write; expired ones are never read
    local ttl = cstream.state_ttl_config(1000, {
      update_type = "on_create_and_write",
      visibility = "never_return_expired",
    })
    local seen = cstream.value_state_descriptor("seen")
    seen:enable_time_to_live(ttl)
    self.seen = ctx:get_state(seen)
  end,

  flat_map = function(self, event, out)
    if self.seen:value() then return end -- a duplicate within the TTL
    self.seen:update(true)
    out:collect(event)
  end,
}

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
