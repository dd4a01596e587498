-- Nexmark q5 (hot items) as an engine job: in every HOP window of 10 s
-- sliding by 2 s, the auctions with the most bids, as comma-separated lines
-- auction,num (ref.lua's q5 rows: all of them on a tie; the SQL selects no
-- window column, so equal rows of different windows repeat).
--
--   cstream-lua [-p N] bench/nexmark/q5.lua EVENTS_FILE [OUTPUT]
-- Without OUTPUT the rows are printed; with it they are written there (a
-- directory of files 1..N when parallel).
--
-- Two windowed steps, as in Flink's DataStream version of the query: the
-- bids keyed by auction in sliding windows of event time (the bids'
-- dateTime, the watermark 4 s behind), counted incrementally; then the
-- counts keyed by their window's end in tumbling windows of the slide.
-- A window's result carries its last millisecond as its timestamp, so
-- every count of the windows ending at e falls in [e - 2 s, e) and that
-- window fires once they are all in.
local cstream = require("cstream")
local dir = arg[0]:match("^(.*)/nexmark/[^/]*$") or ".."
package.path = dir .. "/?.lua;" .. package.path
local bids = require("nexmark.bids")

local SIZE, SLIDE = 10000, 2000

-- The highest count and the auctions that have it: {num, auction...}.
local HOTTEST = {
  create_accumulator = function() return { 0 } end,
  add = function(c, acc) -- c = {auction, num, window end}
    local num = c[2]
    if num > acc[1] then return { num, c[1] } end
    if num == acc[1] then acc[#acc + 1] = c[1] end
    return acc
  end,
  get_result = function(acc) return acc end,
}

local env = cstream.get_execution_environment()
local rows = bids.timed(env, arg[1], "auction")
  :key_by(1)
  :window(cstream.sliding_event_time_windows(SIZE, SLIDE))
  :aggregate(bids.COUNT, function(auction, ctx, counts, out)
    out:collect({ auction, counts[1], ctx:window().finish })
  end)
  :name("bids per auction")
  :key_by(3)
  :window(cstream.tumbling_event_time_windows(SLIDE))
  :aggregate(HOTTEST, function(_, _, results, out)
    local hottest = results[1]
    for i = 2, #hottest do out:collect(hottest[i] .. "," .. hottest[1]) end
  end)
  :name("q5")
if arg[2] then rows:write_as_text(arg[2]) else rows:print() end
env:execute("NexmarkQ5")
