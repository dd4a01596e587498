-- The plain Lua 5.4 baseline for bench/enrichment_job.lua: one thread
-- reading the two order files alternately, line by line; each side's
-- unmatched orders in a Lua table; the same parsing, join and output.
-- OUTPUT "null": no output (the work alone); "sink": each joined tuple to a
-- Lua sink function (the job's semantics); a path: each joined order written.
--   lua5.4 bench/enrichment_baseline.lua INFO1 INFO2 OUTPUT|null|sink
local format_double = dofile((arg[0]:match("^(.*)/") or ".") .. "/format.lua").double

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

local output = arg[3]
local sink, emit
if output == "null" then
  emit = function() end
elseif output == "sink" then
  local drop = function(_) end
  emit = function(o1, o2)
    drop({ o1.order_id, o1.product_name, o1.price, o2.order_date, o2.address })
  end
else
  sink = assert(io.open(output, "w"))
  sink:setvbuf("full", 1 << 16)
  emit = function(o1, o2)
    sink:write("(", o1.order_id, ",", o1.product_name, ",", format_double(o1.price), ",",
      o2.order_date, ",", o2.address, ")\n")
  end
end

local pending1, pending2 = {}, {}
local lines1, lines2 = io.lines(arg[1]), io.lines(arg[2])
local l1, l2 = lines1(), lines2()
while l1 or l2 do
  if l1 then
    local o1 = string_to_order_info1(l1)
    local o2 = pending2[o1.order_id]
    if o2 then pending2[o1.order_id] = nil; emit(o1, o2) else pending1[o1.order_id] = o1 end
    l1 = lines1()
  end
  if l2 then
    local o2 = string_to_order_info2(l2)
    local o1 = pending1[o2.order_id]
    if o1 then pending1[o2.order_id] = nil; emit(o1, o2) else pending2[o2.order_id] = o2 end
    l2 = lines2()
  end
end
if sink then sink:close() end
