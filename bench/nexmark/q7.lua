-- Nexmark q7 (highest bid) as an engine job: the bids at the highest price
-- of each TUMBLE window of 10 s, as comma-separated lines
-- auction,price,bidder,dateTime,extra (ref.lua's q7 rows).
--
--   cstream-lua [-p N] bench/nexmark/q7.lua EVENTS_FILE [OUTPUT]
-- Without OUTPUT the rows are printed; with it they are written there (a
-- directory of files 1..N when parallel).
--
-- The SQL joins each window's highest price back to the bids with that
-- price and window_end - 10 s <= dateTime <= window_end: both ends
-- included, so a bid at exactly window_end (the first millisecond of the
-- next window) matches this window's price too. ref.lua does the same.
-- Here that is one windowed step over all bids (Flink's windowAll: keyed
-- by a constant): windows of event time (the bids' dateTime, the
-- watermark 4 s behind) of 10 s and 1 ms, sliding by 10 s, so a bid at a
-- multiple of 10 s is in the window it ends and the one it starts. The
-- aggregate keeps the highest price of the other bids with the bids that
-- have it, and the bids at multiples of 10 s apart (those below that price
-- cannot matter and are let go); the process function then takes the
-- highest price over [start, start + 10 s) and emits the bids of
-- [start, start + 10 s] that have it.
local cstream = require("cstream")
local dir = arg[0]:match("^(.*)/nexmark/[^/]*$") or ".."
package.path = dir .. "/?.lua;" .. package.path
local parse = require("nexmark.tsv").parse

local SIZE = 10000

-- A bid is {auction, price, bidder, dateTime, extra}. The accumulator:
--   p  the highest price of the bids not at a multiple of SIZE (0: none)
--   b  those bids at p
--   e  dateTime -> the bids at that multiple of SIZE with a price >= p
local HIGHEST = {
  create_accumulator = function() return { p = 0, b = {}, e = {} } end,
  add = function(bid, acc)
    local price, t = bid[2], bid[4]
    if t % SIZE == 0 then
      if price >= acc.p then
        local at = acc.e[t] or {}
        at[#at + 1] = bid
        acc.e[t] = at
      end
    elseif price > acc.p then
      acc.p, acc.b = price, { bid }
      for at_t, at in pairs(acc.e) do -- let go of the edge bids now below p
        local kept = {}
        for _, x in ipairs(at) do if x[2] >= price then kept[#kept + 1] = x end end
        acc.e[at_t] = kept
      end
    elseif price == acc.p then
      acc.b[#acc.b + 1] = bid
    end
    return acc
  end,
  get_result = function(acc) return acc end,
}

local function row(bid)
  return bid[1] .. "," .. bid[2] .. "," .. bid[3] .. "," .. bid[4] .. "," .. bid[5]
end

-- Emits the bids of [start, start + SIZE] at the highest price of
-- [start, start + SIZE).
local function emit_highest(_, ctx, results, out)
  local acc, start = results[1], ctx:window().start
  local first, last = acc.e[start] or {}, acc.e[start + SIZE] or {}
  local highest = acc.p
  for _, bid in ipairs(first) do if bid[2] > highest then highest = bid[2] end end
  if highest == 0 then return end -- only bids at the window's end: not its own
  if acc.p == highest then for _, bid in ipairs(acc.b) do out:collect(row(bid)) end end
  for _, bid in ipairs(first) do if bid[2] == highest then out:collect(row(bid)) end end
  for _, bid in ipairs(last) do if bid[2] == highest then out:collect(row(bid)) end end
end

local env = cstream.get_execution_environment()
local rows = env:read_text_file(arg[1])
  :flat_map(function(line, out)
    if line:byte(1) == 98 then
      local b = parse(line).bid
      out:collect({ b.auction, b.price, b.bidder, b.date_time, b.extra })
    end
  end)
  :name("parse bids")
  :assign_timestamps_and_watermarks(cstream.watermark_strategy.for_bounded_out_of_orderness(
    4000, function(b) return b[4] end))
  :key_by(function() return 0 end)
  :window(cstream.sliding_event_time_windows(SIZE + 1, SIZE))
  :aggregate(HIGHEST, emit_highest)
  :name("q7")
if arg[2] then rows:write_as_text(arg[2]) else rows:print() end
env:execute("NexmarkQ7")
