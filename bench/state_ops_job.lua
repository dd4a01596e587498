-- Benchmark job: state operations per second from Lua, measured inside one
-- keyed operator (so the figures are the state API's cost, not the
-- dataflow's). Records are keys; for each key the operator runs N/KEYS
-- rounds. With "value" as the third argument only value()+update() pairs
-- are timed (bench/all.sh uses it; list and map rounds are slow on RocksDB).
--   cstream-lua -p 1 bench/state_ops_job.lua [N] [KEYS] [value]
local cstream = require("cstream")
local N = math.tointeger(tonumber(arg[1] or "1000000"))
local KEYS = math.tointeger(tonumber(arg[2] or "1000"))
local VALUE_ONLY = arg[3] == "value"

local keys = {}
for i = 1, KEYS do keys[i] = { i } end

local clock = os.clock
local Bench = {
  open = function(self, ctx)
    self.v = ctx:get_state(cstream.value_state_descriptor("v"))
    self.l = ctx:get_list_state(cstream.list_state_descriptor("l"))
    self.m = ctx:get_map_state(cstream.map_state_descriptor("m"))
    self.t = { value = 0, list_add = 0, list_get = 0, map_put = 0, map_get = 0 }
    self.n = 0
  end,
  flat_map = function(self, rec, out)
    local per_key = N // KEYS
    local v, l, m, t = self.v, self.l, self.m, self.t
    local t0 = clock()
    for _ = 1, per_key do v:update((v:value() or 0) + 1) end
    local t1 = clock()
    if VALUE_ONLY then
      t.value = t.value + (t1 - t0)
      self.n = self.n + per_key
      return
    end
    for i = 1, per_key do l:add(i) end
    local t2 = clock()
    for _ = 1, 10 do l:get() end
    local t3 = clock()
    for i = 1, per_key do m:put(i, i) end
    local t4 = clock()
    for i = 1, per_key do m:get(i) end
    local t5 = clock()
    l:clear() m:clear()
    t.value = t.value + (t1 - t0)
    t.list_add = t.list_add + (t2 - t1)
    t.list_get = t.list_get + (t3 - t2)
    t.map_put = t.map_put + (t4 - t3)
    t.map_get = t.map_get + (t5 - t4)
    self.n = self.n + per_key
  end,
  close = function(self)
    local t, n = self.t, self.n
    print(string.format("value value()+update() pairs/s %.0f", n / t.value))
    if VALUE_ONLY then return end
    print(string.format("list add/s %.0f", n / t.list_add))
    print(string.format("list get elements/s %.0f", n * 10 / t.list_get))
    print(string.format("map put/s %.0f", n / t.map_put))
    print(string.format("map get/s %.0f", n / t.map_get))
  end,
}

local env = cstream.get_execution_environment()
env:from_collection(keys):key_by(1):flat_map(Bench):add_sink(function() end)
env:execute("StateOps")
