-- Nexmark q11 (user sessions) as an engine job: the number of bids of each
-- bidder in every session of bids no more than 10 s apart, as
-- comma-separated lines bidder,bid_count,starttime,endtime (ref.lua's q11
-- rows; the end is the session's last bid + 10 s).
--
--   cstream-lua [-p N] bench/nexmark/q11.lua EVENTS_FILE [OUTPUT]
-- Without OUTPUT the rows are printed; with it they are written there (a
-- directory of files 1..N when parallel).
--
-- Session windows of event time (the bids' dateTime, the watermark 4 s
-- behind) with a gap of 10 s per bidder: a bid opens [t, t + 10 s), and
-- windows that overlap or touch merge, as Flink's and ref.lua's do. The
-- count is an incremental aggregate, merged when sessions merge.
local cstream = require("cstream")
local dir = arg[0]:match("^(.*)/nexmark/[^/]*$") or ".."
package.path = dir .. "/?.lua;" .. package.path
local bids = require("nexmark.bids")

local env = cstream.get_execution_environment()
local rows = bids.timed(env, arg[1], "bidder")
  :key_by(1)
  :window(cstream.event_time_session_windows(10000))
  :aggregate(bids.COUNT, function(bidder, ctx, counts, out)
    local w = ctx:window()
    out:collect(bidder .. "," .. counts[1] .. "," .. w.start .. "," .. w.finish)
  end)
  :name("q11")
if arg[2] then rows:write_as_text(arg[2]) else rows:print() end
env:execute("NexmarkQ11")
