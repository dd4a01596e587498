-- The operators of the seed's examples (examples/operators/, which the
-- example jobs require) under the test harness: fed the jobs' own inputs
-- they give what the jobs print (spec/examples_spec.lua checks the jobs),
-- and their state, timers and restores can be watched one record at a
-- time.
local cstream = require("cstream")
local testing = require("cstream.testing")

package.path = "examples/?.lua;" .. package.path

local ELEMENTS = { { 1, 3 }, { 1, 5 }, { 1, 7 }, { 2, 4 }, { 2, 2 }, { 2, 5 } }

local function formatted(values)
  local out = {}
  for i, v in ipairs(values) do out[i] = cstream.format(v) end
  return out
end

describe("the seed examples' operators in the harness", function()
  it("ValueState average: (count, sum) per key, cleared after three", function()
    local h = testing.keyed(require("operators.count_window_average"), { key_by = 1 })
    h:open()
    h:process_element(ELEMENTS[1])
    h:process_element(ELEMENTS[2])
    assert.are.same({ 2, 8 }, h:get_state("average"))
    h:process_element(ELEMENTS[3])
    assert.is_nil(h:get_state("average"))
    for i = 4, 6 do h:process_element(ELEMENTS[i]) end
    assert.are.same({ "(1,5.0)", "(2,3.6666666666666665)" }, formatted(h:extract_output()))
    h:close()
  end)

  -- what the example job prints (examples/expected/, as the tutorial has it)
  local function expected(name)
    local want = {}
    for line in io.lines("examples/expected/" .. name .. ".txt") do want[#want + 1] = line end
    return want
  end

  it("ListState average: every element kept per key, averaged after three", function()
    local h = testing.keyed(require("operators.list_average"), { key_by = 1 })
    h:open()
    h:process_element(ELEMENTS[1])
    h:process_element(ELEMENTS[2])
    assert.are.same({ { 1, 3 }, { 1, 5 } }, h:get_state("average"))
    h:process_element(ELEMENTS[3])
    assert.are.same({}, h:get_state("average")) -- cleared after three
    for i = 4, 6 do h:process_element(ELEMENTS[i]) end
    assert.are.same(expected("list_state_average"), formatted(h:extract_output()))
    h:close()
  end)

  it("ListState average: the lists of both keys survive a snapshot and restore", function()
    local ListAverage = require("operators.list_average")
    local h = testing.keyed(ListAverage, { key_by = 1 })
    h:open()
    for _, i in ipairs({ 1, 4, 2, 5 }) do h:process_element(ELEMENTS[i]) end
    local snap = h:snapshot()
    assert.are.same({}, h:extract_output())
    h:close()
    local r = testing.keyed(ListAverage, { key_by = 1 })
    r:restore(snap)
    r:open()
    r:set_current_key(1)
    assert.are.same({ { 1, 3 }, { 1, 5 } }, r:get_state("average"))
    r:set_current_key(2)
    assert.are.same({ { 2, 4 }, { 2, 2 } }, r:get_state("average"))
    r:process_element(ELEMENTS[3])
    r:process_element(ELEMENTS[6])
    assert.are.same(expected("list_state_average"), formatted(r:extract_output()))
    r:close()
  end)

  it("MapState average: a map entry per value, averaged after three, across a restore", function()
    local MapAverage = require("operators.map_average")
    local h = testing.keyed(MapAverage, { key_by = 1 })
    h:open()
    for i = 1, 6 do h:process_element(ELEMENTS[i]) end
    assert.are.same(expected("map_state_average"), formatted(h:extract_output()))
    assert.are.same({}, h:get_state("average"))
    h:close()
    -- two values of key 1 and one of key 2 in state, the rest after a restore
    h = testing.keyed(MapAverage, { key_by = 1 })
    h:open()
    for _, i in ipairs({ 1, 4, 2 }) do h:process_element(ELEMENTS[i]) end
    assert.are.same({ [1] = 3, [2] = 5 }, h:get_state("average"))
    local snap = h:snapshot()
    h:close()
    local r = testing.keyed(MapAverage, { key_by = 1 })
    r:restore(snap)
    r:open()
    for _, i in ipairs({ 3, 5, 6 }) do r:process_element(ELEMENTS[i]) end
    assert.are.same(expected("map_state_average"), formatted(r:extract_output()))
    r:close()
  end)

  it("AggregatingState contains: the values of a key joined into one string", function()
    local h = testing.keyed(require("operators.contains_value"), { key_by = 1 })
    h:open()
    for i = 1, 2 do h:process_element(ELEMENTS[i]) end
    assert.are.equal("Contains：3 and 5", h:get_state("totalStr"))
    for i = 3, 6 do h:process_element(ELEMENTS[i]) end
    assert.are.equal("Contains：4 and 2 and 5", h:get_state("totalStr"))
    h:set_current_key(1)
    assert.are.equal("Contains：3 and 5 and 7", h:get_state("totalStr"))
    assert.are.same(expected("aggregating_state_contains"), formatted(h:extract_output()))
    h:close()
  end)

  it("ReducingState sum: a running sum per key, kept across a restore", function()
    local SumFunction = require("operators.sum_function")
    local h = testing.keyed(SumFunction, { key_by = 1 })
    h:open()
    for i = 1, 4 do h:process_element(ELEMENTS[i]) end
    local snap = h:snapshot()
    local r = testing.keyed(SumFunction, { key_by = 1 })
    r:restore(snap)
    r:open()
    for i = 5, 6 do r:process_element(ELEMENTS[i]) end
    assert.are.same({ "(1,3)", "(1,8)", "(1,15)", "(2,4)" }, formatted(h:extract_output()))
    assert.are.same({ "(2,6)", "(2,11)" }, formatted(r:extract_output()))
    assert.are.equal(11, r:get_state("sum"))
  end)

  it("fraud detection: the job's transactions give the job's alerts", function()
    local h = testing.keyed(require("operators.fraud_detector"),
      { key_by = "account", name = "fraud-detector" })
    h:open()
    -- the job's input and watermarks: bounded out of orderness of 5 s
    local max_ts = nil
    for line in io.lines("examples/data/transactions.csv") do
      local id, amount, ts = line:match("^(%d+),([%d.]+),(%d+)$")
      local t = { account = tonumber(id), amount = tonumber(amount), ts = tonumber(ts) }
      h:process_element(t, t.ts)
      max_ts = math.max(max_ts or t.ts, t.ts)
      h:process_watermark(max_ts - 5000 - 1)
    end
    assert.are.same({ "Alert{id=2}", "Alert{id=5}" }, h:extract_output())
    -- account 6's small transaction at 180000 expired with its timer
    h:set_current_key(6)
    assert.is_nil(h:get_state("small-at"))
    h:close()
  end)

  it("order enrichment: connected keyed streams joined on the order id", function()
    local h = testing.two_input(require("operators.enrichment"),
      { key_by = function(o) return o.order_id end })
    h:open()
    local function fields(line)
      local f = {}
      for x in line:gmatch("[^,]+") do f[#f + 1] = x end
      return f
    end
    -- all of the first file, then all of the second: each pair meets in state
    for line in io.lines("examples/data/OrderInfo1.txt") do
      local f = fields(line)
      h:process_element1({ order_id = math.tointeger(tonumber(f[1])), product_name = f[2],
                           price = tonumber(f[3]) + 0.0 })
    end
    h:set_current_key(123)
    assert.are.same({ order_id = 123, product_name = "拖把", price = 30.0 }, h:get_state("info1"))
    assert.is_nil(h:get_state("info2"))
    for line in io.lines("examples/data/OrderInfo2.txt") do
      local f = fields(line)
      h:process_element2({ order_id = math.tointeger(tonumber(f[1])), order_date = f[2],
                           address = f[3] })
    end
    local want = {}
    for line in io.lines("examples/expected/order_enrichment.txt") do want[#want + 1] = line end
    local got = formatted(h:extract_output())
    table.sort(want)
    table.sort(got)
    assert.are.same(want, got)
    assert.is_nil(h:get_state("info1")) -- the pair cleared it
    h:close()
  end)

  it("state TTL dedup: an id seen again after the TTL counts as new", function()
    local h = testing.keyed(require("operators.dedup"), { key_by = 1 })
    h:open()
    local bursts = {
      { { 1, "a" }, { 2, "b" }, { 1, "a" }, { 3, "c" }, { 2, "b" } },
      { { 1, "a" }, { 3, "c" }, { 3, "c" }, { 4, "d" } },
    }
    for i, burst in ipairs(bursts) do
      if i > 1 then h:set_processing_time(h:current_processing_time() + 2000) end
      for _, event in ipairs(burst) do h:process_element(event) end
    end
    assert.are.same({ "(1,a)", "(2,b)", "(3,c)", "(1,a)", "(3,c)", "(4,d)" },
      formatted(h:extract_output()))
    h:close()
  end)

  it("operator ListState sink: a restore loses no buffered element", function()
    local CustomSink = require("operators.buffering_sink")
    local printed = {}
    local real_print = print
    _G.print = function(s) printed[#printed + 1] = s end
    local ok, err = pcall(function()
      local h = testing.one_input(CustomSink(2), { uid = "sink" })
      h:open()
      h:process_element({ "Spark", 3 })
      h:process_element({ "Hadoop", 5 })
      h:process_element({ "Hadoop", 7 })
      local snap = h:snapshot() -- (Hadoop,7) is buffered
      assert.are.same({ { "Hadoop", 7 } }, h:get_state("buffered-elements"))
      h:destroy()               -- the job fails here
      local r = testing.one_input(CustomSink(2), { uid = "sink" })
      r:restore(snap)
      r:open()
      r:process_element({ "Spark", 4 })
      r:close()
    end)
    _G.print = real_print
    assert(ok, err)
    assert.are.same({ "自定义格式：[(Spark,3), (Hadoop,5)]", "自定义格式：[(Hadoop,7), (Spark,4)]" },
      printed)
  end)
end)
