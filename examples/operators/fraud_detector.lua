-- The process function of fraud_detection.lua: an account that makes a
-- small transaction (under 1.00) followed by a large one (over 500.00)
-- within a minute raises an alert. A value state remembers the small
-- transaction per account; an event-time timer a minute later clears it,
-- so the state of an account does not outlive the minute. Transactions
-- are { account =, amount =, ts = } with ts their event time in ms.
local cstream = require("cstream")

local SMALL, LARGE, MINUTE = 1.00, 500.00, 60 * 1000

return {
  open = function(self, ctx)
    -- the time of the account's last small transaction, while it counts
    self.small_at = ctx:get_state(cstream.value_state_descriptor("small-at"))
  end,
  process_element = function(self, t, ctx, out)
    local small_at = self.small_at:value()
    if small_at then
      if t.amount > LARGE and t.ts - small_at <= MINUTE then
        out:collect(string.format("Alert{id=%d}", t.account))
      end
      -- any transaction after a small one ends the pattern
      ctx:timer_service():delete_event_time_timer(small_at + MINUTE)
      self.small_at:clear()
    end
    if t.amount < SMALL then
      self.small_at:update(t.ts)
      ctx:timer_service():register_event_time_timer(t.ts + MINUTE)
    end
  end,
  on_timer = function(self, ts, ctx, out)
    -- a minute passed without a large transaction
    self.small_at:clear()
  end,
}
