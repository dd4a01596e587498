-- Writes Nexmark events to standard output, one per line in the
-- tab-separated form of bench/nexmark/tsv.lua:
--
--   person  TS ID NAME EMAIL_ADDRESS CREDIT_CARD CITY STATE EXTRA
--   auction TS ID ITEM_NAME DESCRIPTION INITIAL_BID RESERVE EXPIRES SELLER CATEGORY EXTRA
--   bid     TS AUCTION BIDDER PRICE CHANNEL URL EXTRA
--
--   lua5.4 bench/nexmark/gen.lua EVENTS [SEED [RATE_PER_S]] > events.tsv
--
-- The same EVENTS and SEED give the same bytes; EVENTS 0 writes forever. RATE_PER_S (default 10000,
-- the reference's) spaces the event times: 1e6 / RATE_PER_S microseconds
-- apart, from 2015-07-15T00:00:00Z.
local dir = (arg and arg[0] or ""):match("^(.*)/nexmark/[^/]*$")
if dir then package.path = dir .. "/?.lua;" .. package.path end
local generator = require("nexmark.generator")
local format = require("nexmark.tsv").format

local events, seed, rate = tonumber(arg[1]), tonumber(arg[2] or "1"), tonumber(arg[3] or "10000")
if not events or math.type(events) ~= "integer" or events < 0 or not seed
    or math.type(seed) ~= "integer" or not rate or rate <= 0 then
  io.stderr:write("usage: lua5.4 bench/nexmark/gen.lua EVENTS [SEED [RATE_PER_S]]\n")
  os.exit(2)
end

local gen = generator.new{ seed = seed, events = events, rate_per_s = rate, reuse = true }
local out, buf, n = io.stdout, {}, 0
for ev in gen.next, gen do
  n = n + 1
  buf[n] = format(ev)
  if n == 4096 then
    out:write(table.concat(buf, "\n", 1, n), "\n")
    n = 0
  end
end
if n > 0 then out:write(table.concat(buf, "\n", 1, n), "\n") end
