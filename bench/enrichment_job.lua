-- Benchmark job: the seed's order enrichment join (examples/order_enrichment.lua)
-- at scale: two files of orders, each keyed by order id; each side keeps
-- what it has seen in a value state until the other side's record with the
-- same id arrives, then writes the joined order as one tuple
-- (id,product,price,date,address).
--   cstream-lua bench/enrichment_job.lua INFO1 INFO2 OUTPUT
local cstream = require("cstream")
local sink_to = dofile((arg[0]:match("^(.*)/[^/]*$") or ".") .. "/sink.lua")

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

local function joined(o1, o2)
  return { o1.order_id, o1.product_name, o1.price, o2.order_date, o2.address }
end

local EnrichmentFunction = {
  open = function(self, ctx)
    self.order_info1_state = ctx:get_state(cstream.value_state_descriptor("info1"))
    self.order_info2_state = ctx:get_state(cstream.value_state_descriptor("info2"))
  end,
  flat_map1 = function(self, order_info1, out)
    local value2 = self.order_info2_state:value()
    if value2 ~= nil then
      self.order_info2_state:clear()
      out:collect(joined(order_info1, value2))
    else
      self.order_info1_state:update(order_info1)
    end
  end,
  flat_map2 = function(self, order_info2, out)
    local value1 = self.order_info1_state:value()
    if value1 ~= nil then
      self.order_info1_state:clear()
      out:collect(joined(value1, order_info2))
    else
      self.order_info2_state:update(order_info2)
    end
  end,
}

local env = cstream.get_execution_environment()
local info1 = env:read_text_file(arg[1]):map(string_to_order_info1)
  :key_by(function(o) return o.order_id end)
local info2 = env:read_text_file(arg[2]):map(string_to_order_info2)
  :key_by(function(o) return o.order_id end)
sink_to(info1:connect(info2)
  :flat_map(EnrichmentFunction), arg[3])
env:execute("BenchOrderEnrichment")
