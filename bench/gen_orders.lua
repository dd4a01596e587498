-- Deterministic generator of the two order files for the enrichment join
-- (the seed's examples/order_enrichment.lua, at scale).
--   lua5.4 bench/gen_orders.lua INFO1 INFO2 ORDERS
-- INFO1: ORDERS lines "id,product,price" in id order; INFO2: the same ids
-- as "id,date,address", shuffled within blocks of 1000 lines, so the other
-- side of a join is sometimes ahead and sometimes behind. Ids are distinct
-- but not dense (a multiplicative scramble of 1..ORDERS). Same bytes every run.
local path1, path2, n = arg[1], arg[2], tonumber(arg[3])
assert(path1 and path2 and n, "usage: gen_orders.lua INFO1 INFO2 ORDERS")

local seed = 11
local function rand(m)
  seed = (seed * 6364136223846793005 + 1442695040888963407) & 0x7fffffffffffffff
  return (seed >> 17) % m
end

local products = { "mop", "toothpaste", "quilt", "cup", "laptop", "lamp", "kettle",
  "chair", "desk", "pen", "notebook", "phone", "charger", "towel", "pillow" }
local cities = { "Jiangsu", "Yunnan", "Anhui", "Beijing", "Shenzhen", "Shanghai",
  "Chengdu", "Wuhan", "Xian", "Hangzhou" }
local fmt = string.format
local function id_of(i) return i * 2654435761 % 4294967291 end

local function writer(path)
  local f, buf = assert(io.open(path, "w")), {}
  return {
    add = function(line)
      buf[#buf + 1] = line
      if #buf == 4096 then f:write(table.concat(buf, "\n"), "\n") buf = {} end
    end,
    close = function()
      if #buf > 0 then f:write(table.concat(buf, "\n"), "\n") end
      f:close()
    end,
  }
end

local w1 = writer(path1)
for i = 1, n do
  local cents = 100 + rand(1000000)
  w1.add(fmt("%d,%s-%d,%d.%02d", id_of(i), products[1 + rand(#products)], rand(100),
    cents // 100, cents % 100))
end
w1.close()

local w2 = writer(path2)
local block = {}
local function flush_block()
  for i = #block, 2, -1 do
    local j = 1 + rand(i)
    block[i], block[j] = block[j], block[i]
  end
  for _, i in ipairs(block) do
    local s = rand(86400)
    w2.add(fmt("%d,2019-11-%02d %02d:%02d:%02d,%s %d", id_of(i), 1 + rand(30),
      s // 3600, s // 60 % 60, s % 60, cities[1 + rand(#cities)], rand(1000)))
  end
  block = {}
end
for i = 1, n do
  block[#block + 1] = i
  if #block == 1000 then flush_block() end
end
flush_block()
w2.close()
