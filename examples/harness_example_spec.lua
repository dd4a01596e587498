-- Unit tests for a job's operator, with the operator test harness: copy
-- this file next to your job and run it with busted. It tests the fraud
-- detector of fraud_detection.lua (examples/operators/fraud_detector.lua)
-- without running the job: records, watermarks and the state per account
-- go in and out one at a time, in the engine's own operator machinery.
--
--   busted examples/harness_example_spec.lua
--
-- (from a source tree: LUA_PATH="lua/?.lua;;" LUA_CPATH="build/lib/?.so;;",
-- as ctest sets them; an installed cstream-lua puts both on the default
-- paths.)
local testing = require("cstream.testing")

-- the operators' modules sit next to this file
local dir = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
package.path = dir .. "/?.lua;" .. package.path
local FraudDetector = require("operators.fraud_detector")

local function tx(account, amount, ts) return { account = account, amount = amount, ts = ts } end

describe("the fraud detector", function()
  local h
  before_each(function()
    -- a keyed harness: key_by as in the job, one account per key
    h = testing.keyed(FraudDetector, { key_by = "account", name = "fraud-detector" })
    h:open()
  end)
  after_each(function() h:close() end)

  it("alerts on a small transaction followed by a large one", function()
    h:process_element(tx(7, 0.50, 1000), 1000)
    h:process_element(tx(7, 600.00, 20000), 20000)
    assert.are.same({ "Alert{id=7}" }, h:extract_output())
  end)

  it("does not mix accounts", function()
    h:process_element(tx(1, 0.50, 1000), 1000)
    h:process_element(tx(2, 600.00, 2000), 2000)
    assert.are.same({}, h:extract_output())
  end)

  it("forgets a small transaction when its minute is over", function()
    h:process_element(tx(7, 0.50, 1000), 1000)
    assert.are.equal(1000, h:get_state("small-at")) -- state of account 7
    h:process_watermark(61000)                      -- the timer fires
    assert.is_nil(h:get_state("small-at"))
    h:process_element(tx(7, 600.00, 61500), 61500)
    assert.are.same({}, h:extract_output())
  end)

  it("keeps its state and timer across a restore", function()
    h:process_element(tx(7, 0.50, 1000), 1000)
    local snapshot = h:snapshot()
    local restored = testing.keyed(FraudDetector, { key_by = "account", name = "fraud-detector" })
    restored:restore(snapshot)
    restored:open()
    restored:set_current_key(7)
    assert.are.equal(1000, restored:get_state("small-at"))
    restored:process_watermark(61000)
    assert.is_nil(restored:get_state("small-at"))
    restored:close()
  end)
end)
