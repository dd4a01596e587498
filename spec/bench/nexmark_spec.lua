-- The Nexmark benchmark's inputs and answers: the event generator keeps the
-- reference generator's proportions, ids, skew and sizes and is the same
-- for a seed; the text format reads back; each reference query gives the
-- hand-computed answer on a small list of events; and the engine's jobs
-- write what the reference computes, at -p 1 and -p 2, on generated events
-- and on hand-made ones at the queries' edges.
local h = require("helpers")

package.path = h.src("bench/?.lua") .. ";" .. package.path
local generator = require("nexmark.generator")
local tsv = require("nexmark.tsv")

local LUA = os.getenv("LUA") or "lua5.4"

-- The first n events of a generator made with opts (seed 1 by default).
local function generate(n, opts)
  local o = { seed = 1, events = n }
  for k, v in pairs(opts or {}) do o[k] = v end
  local gen, out = generator.new(o), {}
  for ev in gen.next, gen do out[#out + 1] = ev end
  return out
end

local function bids_of(events)
  local out = {}
  for _, ev in ipairs(events) do if ev.bid then out[#out + 1] = ev.bid end end
  return out
end

local function fraction(list, pred)
  local n = 0
  for _, v in ipairs(list) do if pred(v) then n = n + 1 end end
  return n / #list
end

-- Hand-made events; times are ms from the epoch, so windows of 10 s
-- start at multiples of 10000.
local function bid(ts, auction, bidder, price, extra)
  return { kind = "bid", ts = ts, bid = { auction = auction, bidder = bidder, price = price,
    channel = "Google", url = "u", date_time = ts, extra = extra or "x" } }
end
local function person(ts, id, name, city, state)
  return { kind = "person", ts = ts, person = { id = id, name = name, email_address = "e",
    credit_card = "c", city = city or "Boise", state = state or "ID", date_time = ts,
    extra = "" } }
end
local function auction(ts, id, seller, category, expires)
  return { kind = "auction", ts = ts, auction = { id = id, item_name = "i",
    description = "d", initial_bid = 1, reserve = 2, date_time = ts,
    expires = expires or ts + 1000, seller = seller, category = category or 10,
    extra = "" } }
end

-- ============================================================ generator
describe("nexmark generator", function()
  local events = generate(200000)

  it("gives the same events for a seed and others for another seed", function()
    local a, b, c = generate(5000, { seed = 42 }), generate(5000, { seed = 42 }),
      generate(5000, { seed = 43 })
    local differ = 0
    for i = 1, 5000 do
      assert.are.equal(tsv.format(a[i]), tsv.format(b[i]))
      if tsv.format(a[i]) ~= tsv.format(c[i]) then differ = differ + 1 end
    end
    assert.is_true(differ > 4900, differ .. " of 5000 events differ")
  end)

  it("ends after the number of events asked for", function()
    local gen = generator.new{ events = 3 }
    assert.is_table(gen:next())
    assert.is_table(gen:next())
    assert.is_table(gen:next())
    assert.is_nil(gen:next())
    assert.is_nil(gen:next())
  end)

  it("makes every 50 consecutive events 1 person, 3 auctions and 46 bids", function()
    assert.are.equal("person", events[1].kind)
    for i = 2, 4 do assert.are.equal("auction", events[i].kind) end
    assert.are.equal("bid", events[5].kind)
    for first = 1, 20001, 37 do -- windows at every offset in the 50
      local n = { person = 0, auction = 0, bid = 0 }
      for i = first, first + 49 do n[events[i].kind] = n[events[i].kind] + 1 end
      assert.are.same({ person = 1, auction = 3, bid = 46 }, n)
    end
  end)

  it("follows other proportions and the reference's numbering when asked", function()
    local evs = generate(200, { person_proportion = 2, auction_proportion = 3,
      bid_proportion = 5 })
    local n = { person = 0, auction = 0, bid = 0 }
    for _, ev in ipairs(evs) do n[ev.kind] = n[ev.kind] + 1 end
    assert.are.same({ person = 40, auction = 60, bid = 100 }, n)
    -- the reference's Flink source starts at event id 2: an auction, id 1001
    local ref = generate(3, { first_event_id = 1, first_event_number = 1 })
    assert.are.equal("auction", ref[1].kind)
    assert.are.equal(1001, ref[1].auction.id)
    assert.are.equal(generator.DEFAULTS.first_event_ms, ref[1].ts) -- event 1 at 0.1 ms
  end)

  it("rejects options it does not know or that are not integers", function()
    assert.has_error(function() generator.new{ sed = 1 } end)
    assert.has_error(function() generator.new{ seed = 1.5 } end)
    assert.has_error(function() generator.new{ hot_auction_ratio = 0 } end)
  end)

  it("derives ids from the event number in the reference's ranges", function()
    local people, auctions = 0, 0 -- generated so far
    local bad
    for i, ev in ipairs(events) do
      local low = people - math.min(people, 1000) -- the active people, plus 10 ahead
      if ev.kind == "person" then
        if ev.person.id ~= 1000 + people then bad = bad or "person id at " .. i end
        people = people + 1
      elseif ev.kind == "auction" then
        if ev.auction.id ~= 1000 + auctions then bad = bad or "auction id at " .. i end
        auctions = auctions + 1
        local seller = ev.auction.seller - 1000
        if seller < low or seller >= people + 10 then bad = bad or "seller at " .. i end
      else
        local a, b = ev.bid.auction - 1000, ev.bid.bidder - 1000
        if a < math.max(auctions - 1 - 100, 0) or a >= auctions + 10 then
          bad = bad or "auction " .. a .. " at " .. i
        end
        if b < low or b >= people + 10 then bad = bad or "bidder " .. b .. " at " .. i end
      end
    end
    assert.is_nil(bad)
    assert.are.equal(4000, people)
    assert.are.equal(12000, auctions)
  end)

  it("spaces event times by the rate and never goes back", function()
    local t0, bad = generator.DEFAULTS.first_event_ms, nil
    for i, ev in ipairs(events) do
      if ev.ts ~= t0 + (i - 1) // 10 then bad = bad or "ts at " .. i end -- 10000 events/s
      if ev.ts ~= ev[ev.kind].date_time then bad = bad or "date_time at " .. i end
    end
    assert.is_nil(bad)
    local slow = generate(100, { rate_per_s = 3, first_event_ms = 0 })
    assert.are.equal(0, slow[1].ts)
    assert.are.equal(333, slow[2].ts)
    assert.are.equal(32999, slow[100].ts) -- 99 * 333333.33 us, truncated
  end)

  it("makes hot auctions, bidders and sellers as often as the ratios say", function()
    local bids = bids_of(events)
    local hot_auction = fraction(bids, function(b) return (b.auction - 1000) % 100 == 0 end)
    local hot_bidder = fraction(bids, function(b) return (b.bidder - 1000) % 100 == 1 end)
    local sellers = {}
    for _, ev in ipairs(events) do
      if ev.auction then sellers[#sellers + 1] = ev.auction.seller end
    end
    local hot_seller = fraction(sellers, function(s) return (s - 1000) % 100 == 0 end)
    -- 1 - 1/2, 1 - 1/4, 1 - 1/4, plus the random picks that land on them
    assert.is_true(hot_auction > 0.49 and hot_auction < 0.53, "hot auctions " .. hot_auction)
    assert.is_true(hot_bidder > 0.74 and hot_bidder < 0.77, "hot bidders " .. hot_bidder)
    assert.is_true(hot_seller > 0.73 and hot_seller < 0.78, "hot sellers " .. hot_seller)
    -- with ratio 1 nothing is hot: only the random picks land there
    local flat = bids_of(generate(20000, { hot_auction_ratio = 1, hot_bidders_ratio = 1 }))
    assert.is_true(fraction(flat, function(b) return (b.auction - 1000) % 100 == 0 end) < 0.05)
    assert.is_true(fraction(flat, function(b) return (b.bidder - 1000) % 100 == 1 end) < 0.05)
  end)

  it("sizes records as the reference counts them: 200, 500 and 100 bytes", function()
    local sum = { person = 0, auction = 0, bid = 0 }
    local n = { person = 0, auction = 0, bid = 0 }
    for _, ev in ipairs(events) do
      local size
      if ev.person then
        local p = ev.person
        size = 8 + #p.name + #p.email_address + #p.credit_card + #p.city + #p.state + #p.extra
      elseif ev.auction then
        local a = ev.auction
        size = 8 + #a.item_name + #a.description + 40 + #a.extra
      else
        size = 32 + #ev.bid.extra
      end
      sum[ev.kind], n[ev.kind] = sum[ev.kind] + size, n[ev.kind] + 1
    end
    for kind, want in pairs({ person = 200, auction = 500, bid = 100 }) do
      local avg = sum[kind] / n[kind]
      assert.is_true(math.abs(avg - want) < want * 0.02, kind .. " average " .. avg)
    end
    local big = generate(5000, { avg_bid_byte_size = 1000 })
    local bsum = 0
    for _, b in ipairs(bids_of(big)) do bsum = bsum + 32 + #b.extra end
    assert.is_true(math.abs(bsum / #bids_of(big) - 1000) < 20)
  end)

  it("draws fields from the reference's lists and rules", function()
    local function set(list)
      local s = {}
      for _, v in ipairs(list) do s[v] = true end
      return s
    end
    local states, cities = set(generator.US_STATES), set(generator.US_CITIES)
    local firsts, lasts = set(generator.FIRST_NAMES), set(generator.LAST_NAMES)
    local hot = set(generator.HOT_CHANNELS)
    local prices, hot_urls, channel_ids, others = {}, {}, 0, 0
    local extra_min, extra_max = math.huge, 0
    -- the first broken rule, so one assertion reports it
    local bad, current
    local function check(ok, what)
      if not ok and not bad then bad = tostring(what or "") .. " in " .. tsv.format(current) end
    end
    for _, ev in ipairs(events) do
      current = ev
      local p, a, b = ev.person, ev.auction, ev.bid
      if p then
        check(states[p.state] and cities[p.city], p.state .. " " .. p.city)
        local first, last = p.name:match("^(%a+) (%a+)$")
        check(firsts[first] and lasts[last], p.name)
        check(p.email_address:match("^[a-z ]*@[a-z ]*%.com$"), p.email_address)
        check(p.credit_card:match("^%d%d%d%d %d%d%d%d %d%d%d%d %d%d%d%d$"))
      elseif a then
        check(a.category >= 10 and a.category <= 14)
        check(a.reserve > a.initial_bid)
        -- within twice the time of the next 100 auctions (1666 events, 166 ms)
        check(a.expires > a.date_time and a.expires <= a.date_time + 1 + 2 * 167)
        check(#a.item_name < 20 and #a.description < 100)
        check(not (a.item_name:match("^ ") or a.item_name:match(" $")), a.item_name)
      else
        prices[#prices + 1] = b.price
        -- 68 bytes to make up, +-20%: 54 .. 81
        extra_min, extra_max = math.min(extra_min, #b.extra), math.max(extra_max, #b.extra)
        check(b.price >= 100 and b.price <= 100000000, b.price)
        if hot[b.channel] then
          check(hot_urls[b.channel] == nil or hot_urls[b.channel] == b.url)
          hot_urls[b.channel] = b.url
        else
          local i = tonumber(b.channel:match("^channel%-(%d+)$"))
          check(i and i >= 0 and i < 10000, b.channel)
          others = others + 1
          local id = b.url:match("&channel_id=(%-?%d+)$")
          if id then
            channel_ids = channel_ids + 1
            check(generator.java_abs_reverse32(i) == tonumber(id), b.url)
          end
        end
        check(b.url:match("^https://www%.nexmark%.com/[a-z_]+/[a-z_]+/[a-z_]+/item%.htm%?query=1"))
      end
    end
    assert.is_nil(bad)
    assert.are.same({ 54, 81 }, { extra_min, extra_max })
    local bids = #prices
    assert.is_true(math.abs(others / bids - 0.5) < 0.01, "hot channels " .. others / bids)
    assert.is_true(math.abs(channel_ids / others - 0.9) < 0.01, "channel ids " .. channel_ids / others)
    table.sort(prices)
    -- log-uniform from 1 to 10^6 dollars: the median is 10^3 dollars
    local median = prices[#prices // 2]
    assert.is_true(median > 80000 and median < 125000, "median price " .. median)
    assert.are.equal(-2147483648, generator.java_abs_reverse32(1))
    assert.are.equal(1073741824, generator.java_abs_reverse32(2))
  end)

  it("puts the watermark 4 s and 1 ms behind the largest event time", function()
    assert.are.equal(5999, generator.watermark(10000))
  end)
end)

-- ================================================================== tsv
describe("nexmark text format", function()
  after_each(h.cleanup)

  it("reads back every event as generated", function()
    local events = generate(20000, { seed = 5 })
    for _, ev in ipairs(events) do
      local line = tsv.format(ev)
      assert.is_falsy(line:find("[\n\r]"))
      local _, tabs = line:gsub("\t", "")
      assert.are.equal(({ person = 8, auction = 10, bid = 7 })[ev.kind], tabs)
      assert.are.same(ev, tsv.parse(line))
    end
  end)

  it("reads empty strings and refuses lines of another shape", function()
    local ev = { kind = "auction", ts = 5, auction = { id = 1000, item_name = "",
      description = "", initial_bid = 1, reserve = 2, date_time = 5, expires = 9,
      seller = 1000, category = 10, extra = "" } }
    assert.are.same(ev, tsv.parse(tsv.format(ev)))
    assert.has_error(function() tsv.parse("bid\t1\t2") end)
    assert.has_error(function() tsv.parse("bid\t1\t2\tx\t4\ta\tb\tc") end)
    assert.has_error(function() tsv.parse("") end)
  end)

  it("is what gen.lua writes, the same bytes for a seed", function()
    local r = h.run({}, { cmd = { LUA, h.src("bench/nexmark/gen.lua"), "3000", "9" } })
    assert.are.equal(0, r.code, r.stderr)
    local want = {}
    for _, ev in ipairs(generate(3000, { seed = 9 })) do want[#want + 1] = tsv.format(ev) end
    assert.are.equal(table.concat(want, "\n") .. "\n", r.stdout)
    local again = h.run({}, { cmd = { LUA, h.src("bench/nexmark/gen.lua"), "3000", "9" } })
    assert.are.equal(r.stdout, again.stdout)
    local bad = h.run({}, { cmd = { LUA, h.src("bench/nexmark/gen.lua"), "many" } })
    assert.are.equal(2, bad.code)
    assert.is_truthy(bad.stderr:match("usage"))
  end)
end)

-- ============================================================ reference
describe("nexmark reference queries", function()
  local ref = require("nexmark.ref")
  after_each(h.cleanup)

  it("renders doubles as Java's Double.toString", function()
    local jd = ref.java_double
    assert.are.equal("1.0", jd(1.0))
    assert.are.equal("908.0", jd(0.908 * 1000))
    assert.are.equal("90.8", jd(0.908 * 100))
    assert.are.equal("1120.472", jd(0.908 * 1234))
    assert.are.equal("9999999.0", jd(9999999.0))
    assert.are.equal("1.0E7", jd(1e7))
    assert.are.equal("1.1209875624E7", jd(0.908 * 12345678))
    assert.are.equal("9.079999909200001E7", jd(0.908 * 99999999))
    assert.are.equal("0.001", jd(0.001))
    assert.are.equal("1.5E-4", jd(1.5e-4))
    assert.are.equal("3.6666666666666665", jd(11 / 3))
    assert.are.equal("0.30000000000000004", jd(0.1 + 0.2))
    assert.are.equal("-2.5", jd(-2.5))
    assert.are.equal("0.0", jd(0.0))
    assert.are.equal("1.0E21", jd(1e21))
  end)

  it("q0 passes bids through and q1 converts their price", function()
    local evs = { person(0, 1000, "A B"), bid(5, 1000, 1001, 1234, "e1"),
      bid(7, 1002, 1003, 12345678, "e2") }
    assert.are.same({ "1000,1001,1234,5,e1", "1002,1003,12345678,7,e2" }, ref.run("q0", evs))
    assert.are.same({ "1000,1001,1120.472,5,e1", "1002,1003,1.1209875624E7,7,e2" },
      ref.run("q1", evs))
  end)

  it("q2 keeps the bids on auctions whose id is a multiple of 123", function()
    local evs = { bid(1, 123, 1, 10), bid(2, 124, 1, 20), bid(3, 246, 1, 30),
      bid(4, 1107, 1, 40), auction(5, 0, 1) }
    assert.are.same({ "1107,40", "123,10", "246,30" }, ref.run("q2", evs))
  end)

  it("q3 joins category 10 auctions to sellers in OR, ID and CA, in any order", function()
    local evs = {
      auction(1, 13, 3, 10),          -- its seller comes later: still joined
      person(2, 1, "Ann One", "Bend", "OR"),
      person(3, 2, "Bob Two", "Kent", "WA"),
      person(4, 3, "Cid Three", "Los Angeles", "CA"),
      auction(5, 10, 1, 10),
      auction(6, 11, 2, 10),          -- seller in WA
      auction(7, 12, 3, 11),          -- category 11
      auction(8, 14, 1, 10),
      auction(9, 15, 4, 10),          -- no such person
    }
    assert.are.same({ "Ann One,Bend,OR,10", "Ann One,Bend,OR,14",
      "Cid Three,Los Angeles,CA,13" }, ref.run("q3", evs))
  end)

  it("q4 averages per category the highest bid within each auction's time", function()
    local evs = {
      bid(999, 1, 7, 50),                 -- before auction 1 opens
      auction(1000, 1, 7, 10, 2000),
      bid(1000, 1, 7, 5),                 -- at the opening: counts
      auction(1500, 2, 7, 10, 3000),
      bid(1600, 2, 7, 4),
      auction(1700, 3, 7, 11, 1800),      -- no bids: no row for category 11
      bid(2000, 1, 7, 9),                 -- at the expiry: counts
      bid(2001, 1, 7, 100),               -- after it
      auction(4000, 4, 7, 12, 4100),
      bid(4050, 4, 7, 7),
    }
    -- category 10: (9 + 4) / 2 truncated, as AVG of BIGINT is
    assert.are.same({ "10,6", "12,7" }, ref.run("q4", evs))
  end)

  it("q5 finds the auctions with the most bids in each hopping window", function()
    local evs = {
      bid(0, 1, 9, 1),
      bid(9999, 1, 9, 1),     -- the last ms of [0, 10000)
      bid(10000, 2, 9, 1),    -- the first of [10000, 20000)
      bid(10001, 2, 9, 1),
      -- late: the watermark is 10001 - 4001 = 6000, so [-4000, 6000) has
      -- fired and drops it; [-2000, 8000) .. [4000, 14000) take it
      bid(5000, 3, 9, 1),
    }
    -- windows: [-8000, 2000) .. [-4000, 6000): auction 1 once;
    -- [-2000, 8000): 1 and 3 once; [0, 10000): 1 twice, 3 once;
    -- [2000, 12000) .. [8000, 18000): 2 twice; [10000, 20000): 2 twice
    assert.are.same({ "1,1", "1,1", "1,1", "1,1", "1,2", "2,2", "2,2", "2,2", "2,2", "2,2",
      "3,1" }, ref.run("q5", evs))
  end)

  it("q7 returns the bids at each tumbling window's highest price, both ends included", function()
    local evs = {
      bid(0, 1, 9, 5, "a"),
      bid(9999, 2, 9, 7, "b"),    -- highest of [0, 10000)
      bid(10000, 3, 9, 7, "c"),   -- highest of [10000, 20000), and at the end of [0, 10000)
      bid(15000, 4, 9, 3, "d"),
      bid(20000, 5, 9, 2, "e"),   -- alone in [20000, 30000)
      bid(5000, 6, 9, 100, "f"),  -- late (watermark 15999): not a window's highest
    }
    assert.are.same({ "2,7,9,9999,b", "3,7,9,10000,c", "3,7,9,10000,c", "5,2,9,20000,e" },
      ref.run("q7", evs))
  end)

  it("q8 finds the people who opened an auction in the window they registered in", function()
    local evs = {
      person(1000, 1, "Ann"),
      auction(3000, 20, 3),       -- seller 3 registers later in the same window
      auction(4000, 21, 3),       -- a second auction: still one row
      person(5000, 3, "Cid"),
      person(9999, 2, "Bob"),
      auction(9999, 22, 1),       -- the window's last ms
      auction(10000, 23, 2),      -- the next window: Bob is not new there
      auction(10001, 24, 99),     -- nobody
    }
    assert.are.same({ "1,Ann,0", "3,Cid,0" }, ref.run("q8", evs))
  end)

  it("q11 counts each bidder's bids per session of 10 s gaps", function()
    local evs = {
      bid(0, 1, 1, 1),
      bid(0, 1, 3, 1),
      bid(1000, 1, 2, 1),
      bid(10000, 1, 1, 1),   -- touches [0, 10000): one session [0, 20000)
      bid(11001, 1, 2, 1),   -- 1 ms past [1000, 11000): a new session
      bid(20000, 1, 3, 1),
      -- would bridge bidder 3's [0, 10000) and [20000, 30000), but the
      -- watermark (15999) has fired the first: it joins only the second
      bid(10000, 1, 3, 1),
      bid(30001, 1, 1, 1),   -- after [0, 20000): a new session
      bid(1000, 1, 4, 1),    -- late (watermark 26000): dropped
      bid(40000, 1, 5, 1),
      bid(50002, 1, 5, 1),
      bid(45000, 1, 5, 1),   -- bridges [40000, 50000) and [50002, 60002)
    }
    assert.are.same({ "1,1,30001,40001", "1,2,0,20000", "2,1,1000,11000", "2,1,11001,21001",
      "3,1,0,10000", "3,2,10000,30000", "5,3,40000,60002" }, ref.run("q11", evs))
  end)

  it("q12 counts each bidder's bids per tumbling window of event time", function()
    local evs = {
      bid(0, 1, 1, 1),
      bid(5000, 1, 2, 1),
      bid(9999, 1, 1, 1),
      bid(10000, 1, 1, 1),
      bid(20000, 1, 1, 1),
      bid(5000, 1, 2, 1),    -- late (watermark 15999): dropped
    }
    assert.are.same({ "1,1,10000,20000", "1,1,20000,30000", "1,2,0,10000", "2,1,0,10000" },
      ref.run("q12", evs))
  end)

  it("reads an iterator as well as a list, and its CLI prints the rows", function()
    local dir = h.tmpdir()
    local path = dir .. "/events.tsv"
    local events = generate(5000, { seed = 3 })
    local lines = {}
    for i, ev in ipairs(events) do lines[i] = tsv.format(ev) end
    h.write_file(path, table.concat(lines, "\n") .. "\n")
    for _, q in ipairs(ref.QUERIES) do
      local want = ref.run(q, events)
      assert.are.same(want, ref.run(q, tsv.read_file(path)))
      local r = h.run({}, { cmd = { LUA, h.src("bench/nexmark/ref.lua"), q, path } })
      assert.are.equal(0, r.code, r.stderr)
      assert.are.same(want, h.lines(r.stdout))
    end
    assert.are.equal(2, h.run({}, { cmd = { LUA, h.src("bench/nexmark/ref.lua"), "q6", path } }).code)
  end)
end)

-- ========================================================== engine jobs
describe("nexmark engine jobs", function()
  local ref = require("nexmark.ref")
  local n = h.sanitized() and 4000 or 20000
  local dir
  -- name -> { path = events file, events = the events }
  local inputs = {}

  -- Hand-made events at the queries' edges, in event time order (nothing
  -- late, so the engine's periodic watermark and ref.lua's per-event one
  -- agree): ends of windows and of auctions, a bid before its auction in
  -- the same millisecond, ties, touching sessions.
  local EDGES = {
    person(0, 1, "Ann One", "Bend", "OR"),
    auction(0, 10, 1, 10, 9999),     -- q3: Ann's; q8: in the window she registered in
    bid(0, 10, 7, 50, "a"),          -- q4: at the auction's opening
    bid(3000, 11, 8, 70, "b"),       -- q4: before its auction, in the same ms
    auction(3000, 11, 2, 11, 5000),
    person(4000, 2, "Bob Two", "Kent", "WA"),
    person(4000, 3, "Cid Three", "Los Angeles", "CA"),
    bid(5000, 11, 7, 30, "c"),       -- q4: at the expiry
    bid(5001, 11, 7, 95, "d"),       -- q4: after it
    bid(9999, 10, 8, 100, "e"),      -- q7: highest of [0, 10000) ...
    auction(9999, 12, 3, 10, 12000), -- q8: the window's last ms
    bid(10000, 12, 7, 100, "f"),     -- q7: ... and at its end: twice
    bid(10000, 12, 9, 60, "g"),
    bid(12000, 12, 9, 60, "h"),      -- q5: a tie; q4: at 12's expiry
    auction(12500, 13, 2, 10, 30000), -- q3: Bob is in WA
    bid(20000, 13, 8, 60, "i"),      -- q7: alone at the start of [20000, 30000)
    bid(20000, 13, 8, 40, "j"),
    bid(22000, 13, 9, 10, "l"),      -- q11: touches 9's session [10000, 22000)
    bid(31001, 13, 8, 80, "k"),      -- q11: 8's next session
  }

  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    os.execute("mkdir -p " .. h.quote(dir))
    local function write(name, events)
      local lines = {}
      for i, ev in ipairs(events) do lines[i] = tsv.format(ev) end
      local path = dir .. "/" .. name .. ".tsv"
      h.write_file(path, table.concat(lines, "\n") .. "\n")
      inputs[name] = { path = path, events = events }
    end
    -- 2 s of event time at the default rate; 40 s (4 tumbling windows,
    -- sessions that end) at 500 events/s
    write("fast", generate(n, { seed = 11 }))
    write("slow", generate(n, { seed = 11, rate_per_s = n // 40 }))
    write("edges", EDGES)
  end)

  teardown(function() os.execute("rm -rf " .. h.quote(dir)) end)
  after_each(h.cleanup)

  -- The lines written to out: a file, or a directory of files 1..N.
  local function output_lines(out)
    local lines = h.lines(h.read_file(out) or "")
    if #lines == 0 then
      local p = io.popen("ls " .. h.quote(out) .. " 2>/dev/null")
      for name in p:lines() do
        for _, l in ipairs(h.lines(h.read_file(out .. "/" .. name))) do lines[#lines + 1] = l end
      end
      p:close()
    end
    return h.sorted(lines)
  end

  -- Asserts that got and want hold the same lines, naming the first that
  -- differs rather than printing thousands.
  local function same_rows(want, got, what)
    for i = 1, math.max(#want, #got) do
      if want[i] ~= got[i] then
        assert.are.equal(want[i], got[i], string.format("%ssorted row %d (of %d wanted, %d got)",
          what and what .. ": " or "", i, #want, #got))
      end
    end
  end

  -- The fewest rows ref.lua gives per input, so that no check is vacuous
  -- (q2 and q3 keep a few rows in a thousand events).
  local FEWEST = {
    fast = { q0 = n // 2, q1 = n // 2, q2 = n // 2000, q3 = n // 2000, q4 = 5, q5 = 1, q7 = 1,
             q8 = n // 500, q11 = n // 500, q12 = n // 500 },
    slow = { q0 = n // 2, q1 = n // 2, q2 = n // 2000, q3 = n // 2000, q4 = 5, q5 = 20, q7 = 4,
             q8 = n // 1000, q11 = n // 500, q12 = n // 100 },
    edges = { q0 = 12, q1 = 12, q2 = 0, q3 = 2, q4 = 2, q5 = 10, q7 = 3, q8 = 2, q11 = 5,
              q12 = 5 },
  }

  -- A watermark every millisecond, so that windows fire and timers go off
  -- while the input is read, not only at its end.
  local WM = { "-D", "pipeline.auto-watermark-interval=1ms" }

  -- The queries with an engine job (ref.QUERIES is every query).
  local JOBS = { "q0", "q1", "q2", "q3", "q4", "q5", "q7", "q8", "q11", "q12" }

  for _, q in ipairs(JOBS) do
    for _, p in ipairs({ "1", "2" }) do
      it(q .. " writes the reference's rows at -p " .. p, function()
        for _, name in ipairs({ "fast", "slow", "edges" }) do
          local input = inputs[name]
          local out = h.tmpdir() .. "/out"
          local r = h.run({ WM[1], WM[2], "-p", p, h.src("bench/nexmark/" .. q .. ".lua"),
                            input.path, out })
          assert.are.equal(0, r.code, name .. ": " .. r.stderr)
          local want = ref.run(q, input.events)
          assert.is_true(#want >= FEWEST[name][q], string.format("%s: %d rows of %s", name,
            #want, q))
          same_rows(want, output_lines(out), name)
        end
      end)
    end
  end

  it("q2 prints its rows without an output path", function()
    local r = h.run({ "-p", "2", h.src("bench/nexmark/q2.lua"), inputs.fast.path })
    assert.are.equal(0, r.code, r.stderr)
    local got = {}
    for _, line in ipairs(h.lines(r.stdout)) do got[#got + 1] = (line:gsub("^%d+> ", "")) end
    same_rows(ref.run("q2", inputs.fast.events), h.sorted(got))
  end)
end)
