-- The operator of dedup_ttl.lua: drop an event whose id was seen in the
-- last second. Each id keeps a "seen" flag in a value state whose entries
-- expire one second after they were written (Flink's StateTtlConfig).
local cstream = require("cstream")

return {
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
