-- Fraud detection, after Flink's tutorial "Fraud Detection with the
-- DataStream API": an account that makes a small transaction (under 1.00)
-- followed by a large one (over 500.00) within a minute raises an alert.
-- A value state remembers the small transaction per account; an
-- event-time timer a minute later clears it, so the state of an account
-- does not outlive the minute. The lines are "account,amount,time ms".
local cstream = require("cstream")

-- the detector lives in examples/operators/, where specs require it too
local dir = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = dir .. "/?.lua;" .. package.path
local FraudDetector = require("operators.fraud_detector")

local env = cstream.get_execution_environment()

env:read_text_file(dir .. "/data/transactions.csv")
  :map(function(line)
    local id, amount, ts = line:match("^(%d+),([%d.]+),(%d+)$")
    return { account = tonumber(id), amount = tonumber(amount), ts = tonumber(ts) }
  end)
  :assign_timestamps_and_watermarks(
    cstream.watermark_strategy.for_bounded_out_of_orderness(5000, function(t) return t.ts end))
  :key_by("account")
  :process(FraudDetector)
  :name("fraud-detector")
  :print()

env:execute("Fraud Detection")
