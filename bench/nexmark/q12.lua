-- Nexmark q12 (windows per bidder) as an engine job: the number of bids of
-- each bidder in every TUMBLE window of 10 s, as comma-separated lines
-- bidder,bid_count,starttime,endtime (ref.lua's q12 rows).
--
--   cstream-lua [-p N] bench/nexmark/q12.lua EVENTS_FILE [OUTPUT]
-- Without OUTPUT the rows are printed; with it they are written there (a
-- directory of files 1..N when parallel).
--
-- The reference's windows are of processing time (PROCTIME()), which no
-- run reproduces; these, as ref.lua's, are of event time: the bids' dateTime
-- with a watermark 4 s behind. The count is an incremental aggregate, so a
-- window keeps one number per bidder, and a process function adds the
-- window's bounds.
local cstream = require("cstream")
local dir = arg[0]:match("^(.*)/nexmark/[^/]*$") or ".."
package.path = dir .. "/?.lua;" .. package.path
local bids = require("nexmark.bids")

local env = cstream.get_execution_environment()
local rows = bids.timed(env, arg[1], "bidder")
  :key_by(1)
  :window(cstream.tumbling_event_time_windows(10000))
  :aggregate(bids.COUNT, function(bidder, ctx, counts, out)
    local w = ctx:window()
    out:collect(bidder .. "," .. counts[1] .. "," .. w.start .. "," .. w.finish)
  end)
  :name("q12")
if arg[2] then rows:write_as_text(arg[2]) else rows:print() end
env:execute("NexmarkQ12")
