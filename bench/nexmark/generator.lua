-- A deterministic Nexmark event generator: the event model of the reference
-- generator (github:nexmark/nexmark, nexmark-flink/.../generator/), written
-- anew in Lua, seeded, with no wall clock anywhere.
--
--   local generator = require("nexmark.generator")
--   local gen = generator.new{ seed = 7, events = 1000000 }
--   for ev in gen.next, gen do ... end      -- or: local ev = gen:next()
--
-- An event is { kind = "person" | "auction" | "bid", ts = <event time, ms>,
-- person | auction | bid = <record> } with snake_case records:
--   person  { id, name, email_address, credit_card, city, state, date_time, extra }
--   auction { id, item_name, description, initial_bid, reserve, date_time,
--             expires, seller, category, extra }
--   bid     { auction, bidder, price, channel, url, date_time, extra }
-- date_time always equals ts; expires and all ids and prices are integers.
-- gen:next() returns nil once `events` events were generated. Each call
-- returns new tables, unless the option reuse is true: then every bid is the
-- same table, overwritten by the next call (a quarter faster, for writers
-- that use each event at once, as gen.lua does).
--
-- What matches the reference
--   * Kinds by event id: id % (1+3+46) < 1 is a person, < 4 an auction, else
--     a bid, so any 50 consecutive events hold 1 person, 3 auctions and 46
--     bids. Proportions, average sizes, hot ratios, the number of active
--     people and of in-flight auctions and the rate are options with the
--     reference's defaults (NexmarkConfiguration).
--   * Ids derived from the event id: person id 1000 + the number of people
--     before it, auction id 1000 + the number of auctions before it; a bid or
--     an auction points at a person or auction among the active ones plus a
--     lead of 10 ids not generated yet; hot sellers, bidders and auctions are
--     the first (sellers, auctions) or second (bidders) id of the last batch
--     of 100, chosen with probability 1 - 1/ratio (3/4, 3/4, 1/2).
--   * Event time: ts = first_event_ms + floor(n * 1e6 / rate_per_s) // 1000
--     for event number n, so event times never decrease (the reference's
--     timestamps are monotonic per generator too; its out-of-order groups
--     are not reproduced, see below).
--   * Fields: names from the same 11 first and 9 last names, cities and
--     states from the same 10 cities and 6 states (drawn independently, as
--     there), e-mail "<3..6 chars>@<3..4 chars>.com", credit card four
--     groups of 4 digits; item name up to 19 and description up to 99
--     characters of a-z with one space in 13, trimmed; category 10..14;
--     price round(10^(6u) * 100) cents for uniform u (100 .. 1e8), reserve =
--     initial bid + another such price; expires = ts + 1 + uniform below
--     twice the time the next num_in_flight_auctions auctions take; channel
--     one of Google/Facebook/Baidu/Apple with its url half of the time,
--     otherwise one of 10000 "channel-<i>" with a url that carries
--     "&channel_id=<|reverse32(i)|>" nine times in ten; extra a run of a-z
--     sized so that the record's size, counted as the reference counts it
--     (8 bytes per number plus the string lengths), averages 200 / 500 /
--     100 bytes, uniform within +-20% of what is left.
--
-- What does not match
--   * Values: the reference draws from java.util.SplittableRandom (unseeded:
--     every run differs); ours from splitmix64 on Lua integers, seeded, so
--     the same seed gives the same events and no value equals the
--     reference's. Strings are cut from seeded pools of random text (64 KiB
--     or more) instead of being drawn letter by letter; each string is still
--     i.i.d. letters, but strings of different events overlap in the pool.
--   * The reference adds the first person id to a bid's bidder twice
--     (BidGenerator.nextBid), so its bidders are 2000 + n and never join a
--     person; ours add it once, as Apache Beam's original generator does.
--   * Numbering: the reference's Flink source starts at event id 2 (first
--     event id 1 plus first event number 1), so its first event is an
--     auction; ours start at event id 0 (a person, id 1000). first_event_id
--     and first_event_number reproduce the reference's offsets.
--   * One generator only: no split into parallel generators, no rate shapes
--     (the rate is constant), no out-of-order groups (outOfOrderGroupSize 1),
--     no wall-clock pacing; first_event_ms replaces the wall-clock base time
--     (default 2015-07-15T00:00:00Z, the base time of Beam's Nexmark).
--
-- Watermarks: event times are monotonic, so no event is ever late. The
-- benchmark's queries use a bounded out-of-orderness of 4 s
-- (OUT_OF_ORDERNESS_MS); watermark(max_ts) is the engine's rule for it
-- (DESIGN.md section 10, Flink's BoundedOutOfOrdernessWatermarks): the
-- largest event time seen minus 4000 minus 1 ms. The reference's SQL DDL
-- writes `dateTime - INTERVAL '4' SECOND`, one millisecond later.
local M = {}

M.FIRST_PERSON_ID = 1000
M.FIRST_AUCTION_ID = 1000
M.FIRST_CATEGORY_ID = 10
M.NUM_CATEGORIES = 5
M.OUT_OF_ORDERNESS_MS = 4000

-- The reference's fixed lists (PersonGenerator, BidGenerator).
M.US_STATES = { "AZ", "CA", "ID", "OR", "WA", "WY" }
M.US_CITIES = { "Phoenix", "Los Angeles", "San Francisco", "Boise", "Portland",
  "Bend", "Redmond", "Seattle", "Kent", "Cheyenne" }
M.FIRST_NAMES = { "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate",
  "Julie", "Sarah", "Deiter", "Walter" }
M.LAST_NAMES = { "Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton",
  "Smith", "Jones", "Noris" }
M.HOT_CHANNELS = { "Google", "Facebook", "Baidu", "Apple" }

-- Options and their defaults (the reference's NexmarkConfiguration).
M.DEFAULTS = {
  seed = 1,
  events = 0,                         -- 0: no end
  first_event_ms = 1436918400000,     -- 2015-07-15T00:00:00Z
  rate_per_s = 10000,                 -- events per second of event time
  first_event_id = 0,
  first_event_number = 0,
  person_proportion = 1,
  auction_proportion = 3,
  bid_proportion = 46,
  avg_person_byte_size = 200,
  avg_auction_byte_size = 500,
  avg_bid_byte_size = 100,
  hot_auction_ratio = 2,
  hot_sellers_ratio = 4,
  hot_bidders_ratio = 4,
  num_in_flight_auctions = 100,
  num_active_people = 1000,
  reuse = false,                      -- true: bids reuse one table (copy what you keep)
}

-- Fixed constants of the reference (not configurable there either).
local PERSON_ID_LEAD = 10
local AUCTION_ID_LEAD = 10
local HOT_BATCH = 100          -- HOT_SELLER_RATIO, HOT_AUCTION_RATIO, HOT_BIDDER_RATIO
local HOT_CHANNELS_RATIO = 2
local CHANNELS_NUMBER = 10000
local MIN_STRING_LENGTH = 3
local POOL_SIZE = 65536

-- The bounded out-of-orderness watermark after an event time of max_ts:
-- max_ts - 4000 - 1 (see the top of this file).
function M.watermark(max_ts)
  return max_ts - M.OUT_OF_ORDERNESS_MS - 1
end

-- The 32 bits of the non-negative integer i in reverse order, read as a
-- Java int and passed through Math.abs (so 1 gives -2147483648, as Java's
-- Math.abs(Integer.MIN_VALUE) does).
local function java_abs_reverse32(i)
  local r = 0
  for _ = 1, 32 do
    r = (r << 1) | (i & 1)
    i = i >> 1
  end
  if r >= 0x80000000 then r = r - 0x100000000 end
  if r < 0 and r ~= -0x80000000 then r = -r end
  return r
end
M.java_abs_reverse32 = java_abs_reverse32

-- Creates a generator from the options in opts (any of M.DEFAULTS; the rest
-- take their defaults). Returns a table whose next() method yields the
-- events and count() tells how many it yielded. Set-up draws the string
-- pools and the 10000 channel urls (about 0.1 s).
function M.new(opts)
  local o = {}
  for k, v in pairs(M.DEFAULTS) do o[k] = v end
  for k, v in pairs(opts or {}) do
    if M.DEFAULTS[k] == nil then error("nexmark generator: unknown option " .. tostring(k), 2) end
    o[k] = v
  end
  for k, v in pairs(o) do
    if k ~= "rate_per_s" and k ~= "reuse" and math.type(v) ~= "integer" then
      error("nexmark generator: option " .. k .. " must be an integer", 2)
    end
  end
  local function check(ok, what)
    if not ok then error("nexmark generator: " .. what, 3) end
  end
  check(o.rate_per_s > 0, "rate_per_s must be positive")
  check(o.person_proportion >= 1 and o.auction_proportion >= 1 and o.bid_proportion >= 0,
    "person and auction proportions must be at least 1, bids' at least 0")
  for _, k in ipairs({ "hot_auction_ratio", "hot_sellers_ratio", "hot_bidders_ratio" }) do
    check(o[k] >= 1 and o[k] < 65536, k .. " must be in 1..65535")
  end
  check(o.num_active_people >= 1 and o.num_in_flight_auctions >= 0, "bad active people or auctions")
  check(o.avg_bid_byte_size < 100000, "avg_bid_byte_size must be below 100000")
  check(o.events >= 0, "events must be 0 (no end) or more")

  local floor, sub, byte, char, concat = math.floor, string.sub, string.byte, string.char, table.concat

  -- ------------------------------------------------------------ random --
  -- splitmix64 (Steele, Lea, Flood 2014) on wrapping Lua integers.
  local s = o.seed
  local GAMMA, MIX1, MIX2 = 0x9e3779b97f4a7c15, 0xbf58476d1ce4e5b9, 0x94d049bb133111eb

  -- A uniform integer in [0, n) for 0 < n < 2^31 (the high 31 bits scaled,
  -- a bias below n / 2^31).
  local function rint(n)
    s = s + GAMMA
    local z = s
    z = (z ~ (z >> 30)) * MIX1
    z = (z ~ (z >> 27)) * MIX2
    z = z ~ (z >> 31)
    return ((z >> 33) * n) >> 31
  end

  -- A uniform float in [0, 1).
  local function rdouble()
    s = s + GAMMA
    local z = s
    z = (z ~ (z >> 30)) * MIX1
    z = (z ~ (z >> 27)) * MIX2
    z = z ~ (z >> 31)
    return (z >> 11) * 0x1p-53
  end

  -- ------------------------------------------------------------- pools --
  -- A string of len characters, each a-z, or `special` with probability
  -- 1/13 when special is given.
  local function random_text(len, special)
    local parts, chunk = {}, {}
    for i = 1, len do
      if special and rint(13) == 0 then
        chunk[#chunk + 1] = special
      else
        chunk[#chunk + 1] = 97 + rint(26)
      end
      if #chunk == 1024 or i == len then
        parts[#parts + 1] = char(table.unpack(chunk))
        chunk = {}
      end
    end
    return concat(parts)
  end

  local max_avg = math.max(o.avg_person_byte_size, o.avg_auction_byte_size, o.avg_bid_byte_size)
  local text_pool = random_text(POOL_SIZE, 32)           -- item names, e-mails
  local url_pool = random_text(4096, 95)                 -- url parts ('_')
  local extra_pool = random_text(math.max(POOL_SIZE, 4 * max_avg))
  local text_room, url_room, extra_room = #text_pool, #url_pool, #extra_pool

  -- The reference's nextString(max_len): 3 to max_len - 1 characters of the
  -- pool, then trimmed of spaces.
  local function next_string(max_len)
    local len = MIN_STRING_LENGTH + rint(max_len - MIN_STRING_LENGTH)
    local off = rint(text_room - len)
    local str = sub(text_pool, off + 1, off + len)
    if byte(str, 1) == 32 or byte(str, -1) == 32 then str = str:match("^ *(.-) *$") end
    return str
  end

  local function next_url_part()
    local len = MIN_STRING_LENGTH + rint(5 - MIN_STRING_LENGTH)
    local off = rint(url_room - len)
    return sub(url_pool, off + 1, off + len)
  end

  -- The reference's nextExtra: letters bringing a record of current_size
  -- to avg on average, uniformly within +-20% of what is missing.
  local function next_extra(current_size, avg)
    if current_size > avg then return "" end
    local want = avg - current_size
    local delta = floor(want * 0.2 + 0.5)
    local len = want - delta
    if delta > 0 then len = len + rint(2 * delta) end
    local off = rint(extra_room - len)
    return sub(extra_pool, off + 1, off + len)
  end

  -- The extra of a bid: next_extra(32, avg_bid_byte_size), precomputed.
  local bid_extra_min, bid_extra_span = 0, 0
  if 32 <= o.avg_bid_byte_size then
    local want = o.avg_bid_byte_size - 32
    local delta = floor(want * 0.2 + 0.5)
    bid_extra_min, bid_extra_span = want - delta, 2 * delta
  end

  -- round(10^(6u) * 100): cents from 1 dollar to 1 million dollars,
  -- uniform in the logarithm.
  local function next_price()
    return floor(10.0 ^ (rdouble() * 6.0) * 100.0 + 0.5)
  end

  local function base_url()
    return "https://www.nexmark.com/" .. next_url_part() .. "/" .. next_url_part()
      .. "/" .. next_url_part() .. "/item.htm?query=1"
  end

  local hot_urls = {}
  for i = 1, #M.HOT_CHANNELS do hot_urls[i] = base_url() end
  local channel_names, channel_urls = {}, {}
  for i = 0, CHANNELS_NUMBER - 1 do
    local url = base_url()
    if rint(10) > 0 then url = url .. "&channel_id=" .. java_abs_reverse32(i) end
    channel_names[i + 1] = "channel-" .. i
    channel_urls[i + 1] = url
  end

  local cards = {}
  for i = 0, 9999 do cards[i + 1] = string.format("%04d", i) end

  -- ------------------------------------------------------------ ids --
  local pp, ap, bp = o.person_proportion, o.auction_proportion, o.bid_proportion
  local total = pp + ap + bp
  local active_people, in_flight = o.num_active_people, o.num_in_flight_auctions
  local hot_auctions, hot_sellers, hot_bidders = o.hot_auction_ratio, o.hot_sellers_ratio,
    o.hot_bidders_ratio
  local FIRST_PERSON, FIRST_AUCTION, FIRST_CATEGORY = M.FIRST_PERSON_ID, M.FIRST_AUCTION_ID,
    M.FIRST_CATEGORY_ID
  local states, cities, firsts, lasts = M.US_STATES, M.US_CITIES, M.FIRST_NAMES, M.LAST_NAMES
  local hot_channels = M.HOT_CHANNELS
  local n_states, n_cities, n_firsts, n_lasts = #states, #cities, #firsts, #lasts
  local n_hot = #hot_channels
  local avg_person, avg_auction = o.avg_person_byte_size, o.avg_auction_byte_size

  -- The last person id (from 0) generated at or before event id eid.
  local function last_person(eid)
    local offset = eid % total
    if offset >= pp then offset = pp - 1 end
    return (eid // total) * pp + offset
  end

  -- The last auction id (from 0) generated at or before event id eid.
  local function last_auction(eid)
    local epoch, offset = eid // total, eid % total
    if offset < pp then
      epoch, offset = epoch - 1, ap - 1
    elseif offset >= pp + ap then
      offset = ap - 1
    else
      offset = offset - pp
    end
    return epoch * ap + offset
  end

  -- A person among the active ones, or up to PERSON_ID_LEAD ahead.
  local function some_person(eid)
    local people = last_person(eid) + 1
    local active = people < active_people and people or active_people
    return people - active + rint(active + PERSON_ID_LEAD)
  end

  -- ----------------------------------------------------------- time --
  local base_ms = o.first_event_ms
  local delay_us = 1e6 / o.rate_per_s
  local int_delay = math.tointeger(delay_us)
  local function ts_of(number)
    if int_delay then return base_ms + (number * int_delay) // 1000 end
    return base_ms + floor(number * delay_us) // 1000
  end
  -- events until num_in_flight_auctions more auctions are generated
  local auction_horizon_events = (in_flight * total) // ap
  check(2 * (ts_of(o.first_event_number + auction_horizon_events) - base_ms) < 0x7fffffff,
    "rate_per_s too small for the auction expiry range")

  -- ---------------------------------------------------------- events --
  local first_id, first_number, limit = o.first_event_id, o.first_event_number, o.events
  local count = 0
  local gen = {}
  -- With reuse, every bid is this one table, overwritten by the next call.
  local reuse = o.reuse
  local reuse_bid = { kind = "bid", ts = 0, bid = {
    auction = 0, bidder = 0, price = 0, channel = "", url = "", date_time = 0, extra = "" } }

  -- The next event, or nil after `events` events.
  function gen.next()
    if limit > 0 and count >= limit then return nil end
    local number = first_number + count
    local eid = first_id + number
    local ts
    if int_delay then ts = base_ms + (number * int_delay) // 1000 else ts = ts_of(number) end
    count = count + 1
    local rem = eid % total
    if rem >= pp + ap then
      -- The hot path, written out: three draws of 64 bits (splitmix64
      -- inline) give the hot auction, hot bidder and channel choices (16,
      -- 16 and 31 bits of the first), the price (53 bits of the second) and
      -- the extra's length and place (16 and 31 bits of the third).
      local epoch = eid // total
      local z = s + GAMMA
      s = z
      z = (z ~ (z >> 30)) * MIX1
      z = (z ~ (z >> 27)) * MIX2
      z = z ~ (z >> 31)
      local auction = epoch * ap + ap - 1        -- the last auction so far
      if (((z & 0xffff) * hot_auctions) >> 16) > 0 then
        auction = (auction // HOT_BATCH) * HOT_BATCH
      else
        local lo = auction - in_flight
        if lo < 0 then lo = 0 end
        auction = lo + rint(auction - lo + 1 + AUCTION_ID_LEAD)
      end
      local bidder = epoch * pp + pp - 1         -- the last person so far
      if ((((z >> 16) & 0xffff) * hot_bidders) >> 16) > 0 then
        bidder = (bidder // HOT_BATCH) * HOT_BATCH + 1
      else
        local people = bidder + 1
        local active = people < active_people and people or active_people
        bidder = people - active + rint(active + PERSON_ID_LEAD)
      end
      -- one of 2 * CHANNELS_NUMBER: the upper half is a hot channel
      local c = ((z >> 33) * (HOT_CHANNELS_RATIO * CHANNELS_NUMBER)) >> 31
      local channel, url
      if c >= CHANNELS_NUMBER then
        c = 1 + c % n_hot
        channel, url = hot_channels[c], hot_urls[c]
      else
        channel, url = channel_names[c + 1], channel_urls[c + 1]
      end
      s = s + GAMMA
      z = s
      z = (z ~ (z >> 30)) * MIX1
      z = (z ~ (z >> 27)) * MIX2
      z = z ~ (z >> 31)
      local price = floor(10.0 ^ ((z >> 11) * 0x1p-53 * 6.0) * 100.0 + 0.5)
      s = s + GAMMA
      z = s
      z = (z ~ (z >> 30)) * MIX1
      z = (z ~ (z >> 27)) * MIX2
      z = z ~ (z >> 31)
      local len = bid_extra_min + (((z & 0xffff) * bid_extra_span) >> 16)
      local off = ((z >> 33) * (extra_room - len)) >> 31
      if reuse then
        local b = reuse_bid.bid
        reuse_bid.ts = ts
        b.auction, b.bidder, b.price = auction + FIRST_AUCTION, bidder + FIRST_PERSON, price
        b.channel, b.url, b.date_time = channel, url, ts
        b.extra = sub(extra_pool, off + 1, off + len)
        return reuse_bid
      end
      return { kind = "bid", ts = ts, bid = {
        auction = auction + FIRST_AUCTION, bidder = bidder + FIRST_PERSON, price = price,
        channel = channel, url = url, date_time = ts,
        extra = sub(extra_pool, off + 1, off + len) } }
    elseif rem < pp then
      local name = firsts[1 + rint(n_firsts)] .. " " .. lasts[1 + rint(n_lasts)]
      local email = next_string(7) .. "@" .. next_string(5) .. ".com"
      local card = cards[1 + rint(10000)] .. " " .. cards[1 + rint(10000)] .. " "
        .. cards[1 + rint(10000)] .. " " .. cards[1 + rint(10000)]
      local city = cities[1 + rint(n_cities)]
      local state = states[1 + rint(n_states)]
      local size = 8 + #name + #email + #card + #city + #state
      return { kind = "person", ts = ts, person = {
        id = last_person(eid) + FIRST_PERSON, name = name, email_address = email,
        credit_card = card, city = city, state = state, date_time = ts,
        extra = next_extra(size, avg_person) } }
    else
      local seller
      if rint(hot_sellers) > 0 then
        seller = (last_person(eid) // HOT_BATCH) * HOT_BATCH
      else
        seller = some_person(eid)
      end
      local category = FIRST_CATEGORY + rint(M.NUM_CATEGORIES)
      local initial_bid = next_price()
      local horizon = ts_of(number + auction_horizon_events) - ts
      local expires = ts + 1 + rint(horizon * 2 > 1 and horizon * 2 or 1)
      local name = next_string(20)
      local desc = next_string(100)
      local reserve = initial_bid + next_price()
      return { kind = "auction", ts = ts, auction = {
        id = last_auction(eid) + FIRST_AUCTION, item_name = name, description = desc,
        initial_bid = initial_bid, reserve = reserve, date_time = ts, expires = expires,
        seller = seller + FIRST_PERSON, category = category,
        extra = next_extra(8 + #name + #desc + 40, avg_auction) } }
    end
  end

  -- How many events were generated so far.
  function gen.count() return count end

  return gen
end

return M
