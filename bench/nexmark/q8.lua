-- Nexmark q8 (monitor new users) as an engine job: the people who opened
-- an auction in the TUMBLE window of 10 s they registered in, as
-- comma-separated lines id,name,starttime (ref.lua's q8 rows).
--
--   cstream-lua [-p N] bench/nexmark/q8.lua EVENTS_FILE [OUTPUT]
-- Without OUTPUT the rows are printed; with it they are written there (a
-- directory of files 1..N when parallel).
--
-- A windowed join of people and auctions on id = seller, done as Flink's
-- DataStream join(...).where(...).equal_to(...).window(...) is built: both
-- sides tagged in one stream, keyed by the person's id or the seller, in
-- tumbling windows of event time (dateTime, the watermark 4 s behind). The
-- aggregate keeps what the SQL's two GROUP BYs keep: the distinct names of
-- the window's person of that id, and whether that id sold anything.
local cstream = require("cstream")
local dir = arg[0]:match("^(.*)/nexmark/[^/]*$") or ".."
package.path = dir .. "/?.lua;" .. package.path
local parse = require("nexmark.tsv").parse

-- {sold, name...}: whether an auction of the seller came, and the
-- distinct names of the people of that id.
local NEW_SELLER = {
  create_accumulator = function() return { false } end,
  add = function(v, acc) -- v = {"person", id, dateTime, name} or {"auction", seller, dateTime}
    if v[1] == "auction" then
      acc[1] = true
    else
      for i = 2, #acc do if acc[i] == v[4] then return acc end end
      acc[#acc + 1] = v[4]
    end
    return acc
  end,
  get_result = function(acc) return acc end,
}

local env = cstream.get_execution_environment()
local rows = env:read_text_file(arg[1])
  :flat_map(function(line, out)
    local c = line:byte(1)
    if c == 112 then
      local p = parse(line).person
      out:collect({ "person", p.id, p.date_time, p.name })
    elseif c == 97 then
      local a = parse(line).auction
      out:collect({ "auction", a.seller, a.date_time })
    end
  end)
  :name("parse people and auctions")
  :assign_timestamps_and_watermarks(cstream.watermark_strategy.for_bounded_out_of_orderness(
    4000, function(v) return v[3] end))
  :key_by(2)
  :window(cstream.tumbling_event_time_windows(10000))
  :aggregate(NEW_SELLER, function(id, ctx, results, out)
    local acc = results[1]
    if not acc[1] then return end
    local start = ctx:window().start
    for i = 2, #acc do out:collect(id .. "," .. acc[i] .. "," .. start) end
  end)
  :name("q8")
if arg[2] then rows:write_as_text(arg[2]) else rows:print() end
env:execute("NexmarkQ8")
