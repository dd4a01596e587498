-- Nexmark q4 (average price per category) as an engine job: per category,
-- the average of the winning bids of its auctions, as comma-separated lines
-- category,average (ref.lua's q4 rows).
--
--   cstream-lua [-p N] bench/nexmark/q4.lua EVENTS_FILE [OUTPUT]
-- Without OUTPUT the rows are printed; with it they are written there (a
-- directory of files 1..N when parallel).
--
-- Two keyed process functions on event time (dateTime, the watermark 4 s
-- behind):
--   * the winning bid: auctions and bids keyed by the auction's id. The
--     auction is kept with the highest price among its bids with
--     A.dateTime <= B.dateTime <= A.expires (both ends, as the SQL's and
--     ref.lua's); an event-time timer at A.expires emits {category, price}
--     and closes the auction. A bid that comes before its auction waits
--     for it in keyed state until the watermark passes the bid (after
--     that, a matching auction would be late).
--   * the average: the winning prices keyed by category, summed and
--     counted; a timer at the end of time (math.maxinteger, which fires
--     when the input ends) emits the final average. AVG of a BIGINT is a
--     BIGINT in the SQL: the sum divided by the count, truncated.
-- The join is one process function over a stream of both kinds, not a
-- connected stream: a connected stream's functions (flat_map1/flat_map2)
-- have no timers in this engine.
local cstream = require("cstream")
local dir = arg[0]:match("^(.*)/nexmark/[^/]*$") or ".."
package.path = dir .. "/?.lua;" .. package.path
local parse = require("nexmark.tsv").parse

local CLOSED = { false } -- the auction's state once its winning bid is out

-- Keyed by auction id; records {"auction", id, dateTime, expires, category}
-- and {"bid", auction, dateTime, price}.
local WinningBid = {
  open = function(self, ctx)
    -- {dateTime, expires, category}, or CLOSED
    self.auction = ctx:get_state(cstream.value_state_descriptor("auction"))
    self.highest = ctx:get_state(cstream.value_state_descriptor("highest"))
    -- {dateTime, price} of the bids that came before their auction
    self.early = ctx:get_list_state(cstream.list_state_descriptor("early bids"))
  end,
  process_element = function(self, v, ctx, out)
    local timers = ctx:timer_service()
    if v[1] == "auction" then
      local opens, expires = v[3], v[4]
      self.auction:update({ opens, expires, v[5] })
      local best
      for _, b in ipairs(self.early:get()) do
        if b[1] >= opens and b[1] <= expires and (best == nil or b[2] > best) then best = b[2] end
      end
      self.early:clear()
      if best then self.highest:update(best) end
      timers:register_event_time_timer(expires)
      return
    end
    local t, price = v[3], v[4]
    local a = self.auction:value()
    if a == nil then
      if t > timers:current_watermark() then
        self.early:add({ t, price })
        timers:register_event_time_timer(t)
      end
    elseif a[1] and t >= a[1] and t <= a[2] then
      local best = self.highest:value()
      if best == nil or price > best then self.highest:update(price) end
    end
  end,
  on_timer = function(self, ts, ctx, out)
    local a = self.auction:value()
    if a == nil then -- early bids whose auction did not come in time
      local kept = {}
      for _, b in ipairs(self.early:get()) do if b[1] > ts then kept[#kept + 1] = b end end
      self.early:update(kept)
    elseif a[1] and ts >= a[2] then
      local best = self.highest:value()
      if best then out:collect({ a[3], best }) end
      self.highest:clear()
      self.auction:update(CLOSED)
    end
  end,
}

-- Keyed by category; records {category, winning price}.
local Average = {
  open = function(self, ctx)
    self.total = ctx:get_state(cstream.value_state_descriptor("sum and count"))
  end,
  process_element = function(self, v, ctx, out)
    local total = self.total:value()
    if total == nil then
      total = { 0, 0 }
      ctx:timer_service():register_event_time_timer(math.maxinteger)
    end
    total[1], total[2] = total[1] + v[2], total[2] + 1
    self.total:update(total)
  end,
  on_timer = function(self, _, ctx, out)
    local total = self.total:value()
    local sum, n = total[1], total[2]
    local avg = sum // n
    if avg < 0 and avg * n ~= sum then avg = avg + 1 end -- Java truncates
    out:collect(ctx:get_current_key() .. "," .. avg)
  end,
}

local env = cstream.get_execution_environment()
local rows = env:read_text_file(arg[1])
  :flat_map(function(line, out)
    local c = line:byte(1)
    if c == 98 then
      local b = parse(line).bid
      out:collect({ "bid", b.auction, b.date_time, b.price })
    elseif c == 97 then
      local a = parse(line).auction
      out:collect({ "auction", a.id, a.date_time, a.expires, a.category })
    end
  end)
  :name("parse auctions and bids")
  :assign_timestamps_and_watermarks(cstream.watermark_strategy.for_bounded_out_of_orderness(
    4000, function(v) return v[3] end))
  :key_by(2)
  :process(WinningBid)
  :name("winning bids")
  :key_by(1)
  :process(Average)
  :name("q4")
if arg[2] then rows:write_as_text(arg[2]) else rows:print() end
env:execute("NexmarkQ4")
