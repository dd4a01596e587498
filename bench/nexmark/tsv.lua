-- The text form of Nexmark events: one event per line, tab-separated, so a
-- Lua job can read it with one string.match and no JSON library.
--
--   person  TS ID NAME EMAIL_ADDRESS CREDIT_CARD CITY STATE EXTRA
--   auction TS ID ITEM_NAME DESCRIPTION INITIAL_BID RESERVE EXPIRES SELLER CATEGORY EXTRA
--   bid     TS AUCTION BIDDER PRICE CHANNEL URL EXTRA
--
-- The first column is the kind, the second the event time in ms (which is
-- also the record's date_time, so it is not repeated); numbers are decimal
-- integers. Strings are written as they are: the generator makes them of
-- a-z, digits, spaces and `@._/:?=&-` only, never a tab or a newline, so
-- nothing is escaped. A string may be empty (a trimmed all-space name).
local M = {}

local match, tointeger = string.match, math.tointeger

-- Writing integers is most of the cost of a line (Lua converts with
-- snprintf), so format() keeps what repeats: the last event time's text,
-- the texts of recent ids (cleared when it holds 2^16), and the texts of
-- 0..9999 plain and zero-padded, from which prices below 10^8 are made.
local tostring = tostring
local last_ts, last_ts_text = nil, ""
local id_texts, id_count = {}, 0
local plain, padded = {}, {}
for i = 0, 9999 do
  plain[i] = tostring(i)
  padded[i] = string.format("%04d", i)
end

-- The text of the id n, from the cache when it was seen lately.
local function id_text(n)
  local t = id_texts[n]
  if t then return t end
  if id_count >= 65536 then id_texts, id_count = {}, 0 end
  t = tostring(n)
  id_texts[n] = t
  id_count = id_count + 1
  return t
end

local function ts_text(ts)
  if ts ~= last_ts then last_ts, last_ts_text = ts, tostring(ts) end
  return last_ts_text
end

-- The line for event ev (without the newline).
function M.format(ev)
  local k = ev.kind
  if k == "bid" then
    local b = ev.bid
    local price = b.price
    local hi, lo = "", nil
    if price >= 0 and price < 100000000 then
      local h = price // 10000
      if h > 0 then hi, lo = plain[h], padded[price % 10000] else lo = plain[price] end
    else
      lo = tostring(price)
    end
    return "bid\t" .. ts_text(ev.ts) .. "\t" .. id_text(b.auction) .. "\t" .. id_text(b.bidder)
      .. "\t" .. hi .. lo .. "\t" .. b.channel .. "\t" .. b.url .. "\t" .. b.extra
  elseif k == "auction" then
    local a = ev.auction
    return "auction\t" .. ts_text(ev.ts) .. "\t" .. id_text(a.id) .. "\t" .. a.item_name .. "\t"
      .. a.description .. "\t" .. a.initial_bid .. "\t" .. a.reserve .. "\t" .. a.expires .. "\t"
      .. id_text(a.seller) .. "\t" .. id_text(a.category) .. "\t" .. a.extra
  elseif k == "person" then
    local p = ev.person
    return "person\t" .. ts_text(ev.ts) .. "\t" .. id_text(p.id) .. "\t" .. p.name .. "\t"
      .. p.email_address .. "\t" .. p.credit_card .. "\t" .. p.city .. "\t" .. p.state .. "\t"
      .. p.extra
  end
  error("nexmark tsv: unknown event kind " .. tostring(k), 2)
end

local BID = "^bid\t(%d+)\t(%d+)\t(%d+)\t(%d+)\t([^\t]*)\t([^\t]*)\t([^\t]*)$"
local AUCTION = "^auction\t(%d+)\t(%d+)\t([^\t]*)\t([^\t]*)\t(%d+)\t(%d+)\t(%d+)\t(%d+)\t(%d+)"
  .. "\t([^\t]*)$"
local PERSON = "^person\t(%d+)\t(%d+)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)\t([^\t]*)"
  .. "\t([^\t]*)$"

-- The event of one line (a trailing "\r" is not allowed); raises an error
-- naming the line when it is not in the format above.
function M.parse(line)
  local c = line:byte(1)
  if c == 98 then -- b
    local ts, auction, bidder, price, channel, url, extra = match(line, BID)
    if ts then
      ts = tointeger(ts)
      return { kind = "bid", ts = ts, bid = {
        auction = tointeger(auction), bidder = tointeger(bidder), price = tointeger(price),
        channel = channel, url = url, date_time = ts, extra = extra } }
    end
  elseif c == 97 then -- a
    local ts, id, name, desc, initial, reserve, expires, seller, category, extra =
      match(line, AUCTION)
    if ts then
      ts = tointeger(ts)
      return { kind = "auction", ts = ts, auction = {
        id = tointeger(id), item_name = name, description = desc,
        initial_bid = tointeger(initial), reserve = tointeger(reserve), date_time = ts,
        expires = tointeger(expires), seller = tointeger(seller),
        category = tointeger(category), extra = extra } }
    end
  elseif c == 112 then -- p
    local ts, id, name, email, card, city, state, extra = match(line, PERSON)
    if ts then
      ts = tointeger(ts)
      return { kind = "person", ts = ts, person = {
        id = tointeger(id), name = name, email_address = email, credit_card = card,
        city = city, state = state, date_time = ts, extra = extra } }
    end
  end
  error("nexmark tsv: not an event line: " .. line:sub(1, 80), 2)
end

-- An iterator over the events of the file at path, for a generic for.
function M.read_file(path)
  local f = assert(io.open(path, "r"))
  local lines = f:lines()
  return function()
    local line = lines()
    if line == nil then
      f:close()
      return nil
    end
    return M.parse(line)
  end
end

return M
