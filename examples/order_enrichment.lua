-- Connected keyed streams: join the two order files on the order id. Each
-- side keeps what it has seen in a ValueState until the other side's record
-- with the same id arrives, then prints the pair.
--
--   cstream-lua examples/order_enrichment.lua [--sleep]
-- With --sleep each source waits up to 500 ms before every line, as the
-- tutorial's FileSource does, so records arrive in a random interleaving.
local cstream = require("cstream")

local dir = arg[0]:match("^(.*)/[^/]*$") or "."
local max_sleep_ms = arg[1] == "--sleep" and 500 or 0

-- the join lives in examples/operators/, where specs require it too
package.path = dir .. "/?.lua;" .. package.path
local EnrichmentFunction = require("operators.enrichment")

-- A source that emits the lines of a file, optionally pausing between them.
local function FileSource(path)
  return {
    run = function(self, ctx)
      for line in io.lines(path) do
        if max_sleep_ms > 0 then cstream.sleep(math.random(0, max_sleep_ms)) end
        ctx:collect(line)
      end
    end,
    cancel = function(self) end,
  }
end

local function split(line)
  local fields = {}
  for f in line:gmatch("[^,]+") do fields[#fields + 1] = f end
  return fields
end

local function string_to_order_info1(line)
  local f = split(line)
  return { order_id = math.tointeger(tonumber(f[1])), product_name = f[2],
           price = tonumber(f[3]) + 0.0 }
end

local function string_to_order_info2(line)
  local f = split(line)
  return { order_id = math.tointeger(tonumber(f[1])), order_date = f[2], address = f[3] }
end

local env = cstream.get_execution_environment()

local info1 = env:add_source(FileSource(dir .. "/data/OrderInfo1.txt"))
local info2 = env:add_source(FileSource(dir .. "/data/OrderInfo2.txt"))

local order_info1_stream = info1:map(string_to_order_info1)
  :key_by(function(o) return o.order_id end)
local order_info2_stream = info2:map(string_to_order_info2)
  :key_by(function(o) return o.order_id end)

order_info1_stream:connect(order_info2_stream)
  :flat_map(EnrichmentFunction)
  :print()

env:execute("OrderStream")
