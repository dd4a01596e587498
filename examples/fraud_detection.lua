-- Fraud detection, after Flink's tutorial "Fraud Detection with the
-- DataStream API": an account that makes a small transaction (under 1.00)
-- followed by a large one (over 500.00) within a minute raises an alert.
-- A value state remembers the small transaction per account; an
-- event-time timer a minute later clears it, so the state of an account
-- does not outlive the minute. The lines are "account,amount,time ms".
local cstream = require("cstream")

local SMALL, LARGE, MINUTE = 1.00, 500.00, 60 * 1000

local dir = arg[0]:match("^(.*)/[^/]*$") or "."
local env = cstream.get_execution_environment()

env:read_text_file(dir .. "/data/transactions.csv")
  :map(function(line)
    local id, amount, ts = line:match("^(%d+),([%d.]+),(%d+)$")
    return { account = tonumber(id), amount = tonumber(amount), ts = tonumber(ts) }
  end)
  :assign_timestamps_and_watermarks(
    cstream.watermark_strategy.for_bounded_out_of_orderness(5000, function(t) return t.ts end))
  :key_by("account")
  :process({
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
  })
  :name("fraud-detector")
  :print()

env:execute("Fraud Detection")
