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
local parse = require("nexmark.tsv").parse

local COUNT = {
  create_accumulator = function() return 0 end,
  add = function(_, n) return n + 1 end,
  get_result = function(n) return n end,
  merge = function(a, b) return a + b end,
}

local env = cstream.get_execution_environment()
local rows = env:read_text_file(arg[1])
  :flat_map(function(line, out)
    if line:byte(1) == 98 then -- a bid: {bidder, dateTime}
      local b = parse(line).bid
      out:collect({ b.bidder, b.date_time })
    end
  end)
  :name("parse bids")
  :assign_timestamps_and_watermarks(cstream.watermark_strategy.for_bounded_out_of_orderness(
    4000, function(b) return b[2] end))
  :key_by(1)
  :window(cstream.tumbling_event_time_windows(10000))
  :aggregate(COUNT, function(bidder, ctx, counts, out)
    local w = ctx:window()
    out:collect(bidder .. "," .. counts[1] .. "," .. w.start .. "," .. w.finish)
  end)
  :name("q12")
if arg[2] then rows:write_as_text(arg[2]) else rows:print() end
env:execute("NexmarkQ12")
