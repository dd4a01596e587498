-- Reference results of the Nexmark queries q0, q1, q2, q3, q4, q5, q7, q8,
-- q11 and q12, computed in plain Lua from a list of events (the tables of
-- nexmark.generator or nexmark.tsv), to check the engine's jobs against.
--
--   local ref = require("nexmark.ref")
--   local lines = ref.run("q5", events)  -- sorted result rows
--   lua5.4 bench/nexmark/ref.lua q5 events.tsv   -- prints them
--
-- Each query follows the reference's SQL (nexmark-flink/src/main/resources/
-- queries/qN.sql, quoted shortly above each) over event time. A result row
-- is one line, its columns in the SQL's SELECT order joined by commas,
-- printed as Flink prints them: integers plainly, floats as Java's
-- Double.toString (1120.472, 9.08E7), timestamps as epoch milliseconds.
-- Results are the final ones (what a retracting query holds at the end)
-- and are returned sorted, so outputs compare as sorted multisets.
--
-- Time. Windows are on event time and aligned to the epoch (a window of size
-- z starts at multiples of its slide). The events are read in the order
-- given; the watermark is generator.watermark of the largest event time
-- read so far (4 s of out-of-orderness, minus 1 ms as in the engine), and
-- advances after every event. A window [start, finish) fires once the
-- watermark reaches finish - 1, and at the end of the input every window
-- fires. An event whose window has fired (finish - 1 <= the watermark
-- before the event) is late and left out of that window, as Flink drops it
-- with no allowed lateness; with the generator's events, whose times never
-- decrease, nothing is late. Joins that are not windowed (q3, q4, the
-- outer join of q7) keep everything, late or not.
local dir = (debug.getinfo(1, "S").source:match("^@(.*)/nexmark/[^/]*$"))
if dir and not package.path:find(dir .. "/?.lua", 1, true) then
  package.path = dir .. "/?.lua;" .. package.path
end
local generator = require("nexmark.generator")

local M = {}

local format, concat, sort, tointeger = string.format, table.concat, table.sort, math.tointeger
local MIN = math.mininteger

-- ------------------------------------------------------------ helpers --

-- The text Java's Double.toString gives for d (JDK 19+: the shortest
-- decimal that reads back as d; plain from 1e-3 to below 1e7, otherwise
-- computerized scientific notation such as 9.08E7).
function M.java_double(d)
  if d ~= d then return "NaN" end
  if d == math.huge then return "Infinity" end
  if d == -math.huge then return "-Infinity" end
  if d == 0 then return 1 / d < 0 and "-0.0" or "0.0" end
  local sign, x = "", d
  if d < 0 then sign, x = "-", -d end
  local text
  -- Fifteen digits represent every decimal of up to fifteen exactly, so
  -- when they read back the trailing zeros come off to the shortest.
  for digits = 15, 17 do
    text = format("%." .. (digits - 1) .. "e", x)
    if tonumber(text) == x then break end
  end
  local int, frac, exp = text:match("^(%d)%.?(%d*)e([-+]%d+)$")
  local ds = (int .. frac):gsub("0+$", "")
  exp = tointeger(tonumber(exp))
  if exp >= -3 and exp < 7 then
    if exp >= 0 then
      local whole = ds:sub(1, exp + 1)
      whole = whole .. string.rep("0", exp + 1 - #whole)
      local rest = ds:sub(exp + 2)
      return sign .. whole .. "." .. (rest == "" and "0" or rest)
    end
    return sign .. "0." .. string.rep("0", -exp - 1) .. ds
  end
  local rest = ds:sub(2)
  return sign .. ds:sub(1, 1) .. "." .. (rest == "" and "0" or rest) .. "E" .. exp
end

-- Calls fn(ev) for each event of events: an array or an iterator function.
local function each(events, fn)
  if type(events) == "function" then
    for ev in events do fn(ev) end
  else
    for i = 1, #events do fn(events[i]) end
  end
end

-- Calls fn(ev, wm) for each event, wm being the watermark before it.
local function each_timed(events, fn)
  local max_ts = MIN
  each(events, function(ev)
    local wm = max_ts == MIN and MIN or generator.watermark(max_ts)
    fn(ev, wm)
    if ev.ts > max_ts then max_ts = ev.ts end
  end)
end

-- The start of the tumbling window of size size holding t.
local function tumble_start(t, size)
  return t - t % size
end

local function sorted(rows)
  sort(rows)
  return rows
end

local SIZE = 10000 -- every window of these queries spans 10 s

-- ------------------------------------------------------------ queries --
local Q = {}

-- q0 (pass through): SELECT auction, bidder, price, dateTime, extra FROM bid
function Q.q0(events)
  local rows = {}
  each(events, function(ev)
    local b = ev.bid
    if b then rows[#rows + 1] = b.auction .. "," .. b.bidder .. "," .. b.price .. ","
      .. b.date_time .. "," .. b.extra end
  end)
  return sorted(rows)
end

-- q1 (currency conversion): SELECT auction, bidder, 0.908 * price AS price,
-- dateTime, extra FROM bid. The SQL's price is DECIMAL(23, 3); here it is
-- the double 0.908 * price, as a Lua job computes it.
function Q.q1(events)
  local rows, jd = {}, M.java_double
  each(events, function(ev)
    local b = ev.bid
    if b then rows[#rows + 1] = b.auction .. "," .. b.bidder .. "," .. jd(0.908 * b.price)
      .. "," .. b.date_time .. "," .. b.extra end
  end)
  return sorted(rows)
end

-- q2 (selection): SELECT auction, price FROM bid WHERE MOD(auction, 123) = 0
function Q.q2(events)
  local rows = {}
  each(events, function(ev)
    local b = ev.bid
    if b and b.auction % 123 == 0 then rows[#rows + 1] = b.auction .. "," .. b.price end
  end)
  return sorted(rows)
end

-- q3 (local item suggestion): SELECT P.name, P.city, P.state, A.id FROM
-- auction A INNER JOIN person P ON A.seller = P.id WHERE A.category = 10
-- AND P.state IN ('OR', 'ID', 'CA'). A regular join: every matching pair,
-- whichever side came first, late or not.
function Q.q3(events)
  local people, auctions = {}, {}
  local wanted = { OR = true, ID = true, CA = true }
  each(events, function(ev)
    local p, a = ev.person, ev.auction
    if p and wanted[p.state] then
      local list = people[p.id] or {}
      list[#list + 1] = p
      people[p.id] = list
    elseif a and a.category == 10 then
      auctions[#auctions + 1] = a
    end
  end)
  local rows = {}
  for _, a in ipairs(auctions) do
    for _, p in ipairs(people[a.seller] or {}) do
      rows[#rows + 1] = p.name .. "," .. p.city .. "," .. p.state .. "," .. a.id
    end
  end
  return sorted(rows)
end

-- q4 (average price per category): the highest bid of each auction among
-- its bids with A.dateTime <= B.dateTime <= A.expires (both ends
-- included), grouped by A.id, A.category; then per category AVG of these,
-- which for BIGINT is a BIGINT (the sum divided by the count, truncated).
-- Rows: category, average. Regular joins and groupings: the final values.
function Q.q4(events)
  local auctions, bids = {}, {}
  each(events, function(ev)
    local a, b = ev.auction, ev.bid
    if a then
      auctions[#auctions + 1] = a
    elseif b then
      local list = bids[b.auction] or {}
      list[#list + 1] = b
      bids[b.auction] = list
    end
  end)
  local final = {} -- "id,category" -> highest price
  for _, a in ipairs(auctions) do
    for _, b in ipairs(bids[a.id] or {}) do
      if b.date_time >= a.date_time and b.date_time <= a.expires then
        local key = a.id .. "," .. a.category
        if not final[key] or b.price > final[key] then final[key] = b.price end
      end
    end
  end
  local sum, count = {}, {}
  for key, price in pairs(final) do
    local category = tointeger(key:match(",(%-?%d+)$"))
    sum[category] = (sum[category] or 0) + price
    count[category] = (count[category] or 0) + 1
  end
  local rows = {}
  for category, s in pairs(sum) do
    local n = count[category]
    local avg = s // n
    if avg < 0 and avg * n ~= s then avg = avg + 1 end -- Java truncates
    rows[#rows + 1] = category .. "," .. avg
  end
  return sorted(rows)
end

-- q5 (hot items): per HOP window of 10 s sliding by 2 s, the number of
-- bids of each auction; rows auction, num for the auctions whose num is
-- the window's highest (all of them on a tie). The SQL selects only
-- auction and num, so the same row can come from several windows.
function Q.q5(events)
  local slide = 2000
  local windows = {} -- start -> auction -> count
  each_timed(events, function(ev, wm)
    local b = ev.bid
    if not b then return end
    local t = ev.ts
    local start = t - t % slide
    while start > t - SIZE do
      if start + SIZE - 1 > wm then
        local w = windows[start] or {}
        w[b.auction] = (w[b.auction] or 0) + 1
        windows[start] = w
      end
      start = start - slide
    end
  end)
  local rows = {}
  for _, w in pairs(windows) do
    local most = 0
    for _, n in pairs(w) do if n > most then most = n end end
    for auction, n in pairs(w) do
      if n == most then rows[#rows + 1] = auction .. "," .. n end
    end
  end
  return sorted(rows)
end

-- q7 (highest bid): the highest price of each TUMBLE window of 10 s (over
-- the bids that are not late), joined back to every bid B with that price
-- and window_end - 10 s <= B.dateTime <= window_end: both ends included,
-- so a bid at exactly window_end matches the window before its own too.
-- Rows: auction, price, bidder, dateTime, extra (the SELECT's order: the
-- SQL writes B.auction, B.price, B.bidder into columns named auction,
-- bidder, price).
function Q.q7(events)
  local highest, all = {}, {}
  each_timed(events, function(ev, wm)
    local b = ev.bid
    if not b then return end
    all[#all + 1] = b
    local start = tumble_start(ev.ts, SIZE)
    if start + SIZE - 1 > wm and (highest[start] or MIN) < b.price then highest[start] = b.price end
  end)
  local rows = {}
  for _, b in ipairs(all) do
    local t = b.date_time
    local start = tumble_start(t, SIZE)
    local matches = highest[start] == b.price and 1 or 0
    if t == start and highest[start - SIZE] == b.price then matches = matches + 1 end
    for _ = 1, matches do
      rows[#rows + 1] = b.auction .. "," .. b.price .. "," .. b.bidder .. "," .. t .. ","
        .. b.extra
    end
  end
  return sorted(rows)
end

-- q8 (monitor new users): the people who opened an auction in the TUMBLE
-- window of 10 s they registered in: distinct (id, name, window) of the
-- persons joined on id = seller and the same window with distinct
-- (seller, window) of the auctions. Rows: id, name, window start.
function Q.q8(events)
  local people, sellers = {}, {}
  each_timed(events, function(ev, wm)
    local start = tumble_start(ev.ts, SIZE)
    if start + SIZE - 1 <= wm then return end
    local p, a = ev.person, ev.auction
    if p then
      people[p.id .. "," .. p.name .. "," .. start] = { p.id, start }
    elseif a then
      sellers[a.seller .. "," .. start] = true
    end
  end)
  local rows = {}
  for row, key in pairs(people) do
    if sellers[key[1] .. "," .. key[2]] then rows[#rows + 1] = row end
  end
  return sorted(rows)
end

-- q11 (user sessions): per bidder, SESSION windows with a gap of 10 s: a
-- bid at t opens [t, t + 10 s), and windows that overlap or touch (Flink's
-- TimeWindow.intersects: a.start <= b.finish and a.finish >= b.start)
-- merge. Rows: bidder, bid_count, starttime, endtime (the last bid + 10 s).
function Q.q11(events)
  local gap = 10000
  local open = {}  -- bidder -> sessions not fired yet {start, finish, count}
  local rows = {}
  local function emit(bidder, s)
    rows[#rows + 1] = bidder .. "," .. s[3] .. "," .. s[1] .. "," .. s[2]
  end
  each_timed(events, function(ev, wm)
    local b = ev.bid
    if not b then return end
    local list = open[b.bidder] or {}
    -- Sessions the watermark has passed fired before this bid came.
    local live = {}
    for _, s in ipairs(list) do
      if s[2] - 1 <= wm then emit(b.bidder, s) else live[#live + 1] = s end
    end
    -- Merge the new window with every session it overlaps or touches,
    -- again until none does (a merged window may reach a further one).
    local merged, rest, changed = { ev.ts, ev.ts + gap, 1 }, live, true
    while changed do
      changed = false
      for i = #rest, 1, -1 do
        local s = rest[i]
        if s[1] <= merged[2] and s[2] >= merged[1] then
          if s[1] < merged[1] then merged[1] = s[1] end
          if s[2] > merged[2] then merged[2] = s[2] end
          merged[3] = merged[3] + s[3]
          table.remove(rest, i)
          changed = true
        end
      end
    end
    -- Only a window that merged with nothing can be late (a live session
    -- ends after the watermark).
    if merged[2] - 1 > wm then rest[#rest + 1] = merged end -- else late: dropped
    open[b.bidder] = rest
  end)
  for bidder, list in pairs(open) do
    for _, s in ipairs(list) do emit(bidder, s) end
  end
  return sorted(rows)
end

-- q12 (processing-time windows): the reference counts each bidder's bids
-- in TUMBLE windows of 10 s of processing time (PROCTIME()), which no run
-- can reproduce; ours are TUMBLE windows of 10 s of event time. Rows:
-- bidder, bid_count, starttime, endtime.
function Q.q12(events)
  local counts = {} -- "bidder,start" -> count
  each_timed(events, function(ev, wm)
    local b = ev.bid
    if not b then return end
    local start = tumble_start(ev.ts, SIZE)
    if start + SIZE - 1 <= wm then return end
    local key = b.bidder .. "," .. start
    counts[key] = (counts[key] or 0) + 1
  end)
  local rows = {}
  for key, n in pairs(counts) do
    local bidder, start = key:match("^(.-),(.*)$")
    rows[#rows + 1] = bidder .. "," .. n .. "," .. start .. "," .. (tointeger(start) + SIZE)
  end
  return sorted(rows)
end

M.QUERIES = { "q0", "q1", "q2", "q3", "q4", "q5", "q7", "q8", "q11", "q12" }

-- The sorted result rows of query name ("q0" .. "q12") over events (an
-- array of events, or an iterator function returning them). The caller
-- owns the returned array.
function M.run(name, events)
  local q = Q[name]
  if not q then error("nexmark ref: no query " .. tostring(name), 2) end
  return q(events)
end

-- ---------------------------------------------------------------- main --
-- Run as a script: lua5.4 bench/nexmark/ref.lua QUERY EVENTS_FILE
local function main()
  local name, path = arg[1], arg[2]
  if not (name and path and Q[name]) then
    io.stderr:write("usage: lua5.4 bench/nexmark/ref.lua QUERY EVENTS_FILE\n"
      .. "  QUERY: " .. concat(M.QUERIES, " ") .. "\n")
    os.exit(2)
  end
  local rows = M.run(name, require("nexmark.tsv").read_file(path))
  local out = io.stdout
  for i = 1, #rows, 4096 do
    out:write(concat(rows, "\n", i, math.min(i + 4095, #rows)), "\n")
  end
end

if arg and arg[0] and debug.getinfo(1, "S").source == "@" .. arg[0] then main() end

return M
