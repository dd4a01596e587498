-- The operator test harness (cstream.testing) as a job author uses it from
-- busted: records in, output out, state per key, timers fired by
-- watermarks and processing time, side outputs, snapshots restored into a
-- new harness, and clear errors for what a test gets wrong. The operator
-- runs in the engine's machinery loaded from cstream/core.so (LUA_CPATH).
local cstream = require("cstream")
local testing = require("cstream.testing")

-- A keyed process function: counts records per key, emits the count with
-- the record's timestamp, sends negative values to a side output, and
-- registers an event-time timer 10 s after each record and a
-- processing-time timer 5 s after it; the timers emit what fired.
local late = cstream.output_tag("negative")
local Counter = {
  open = function(self, ctx)
    self.count = ctx:get_state(cstream.value_state_descriptor("count"))
    self.seen = ctx:get_list_state(cstream.list_state_descriptor("seen"))
    self.last = ctx:get_map_state(cstream.map_state_descriptor("last"))
    self.sum = ctx:get_reducing_state(
      cstream.reducing_state_descriptor("sum", function(a, b) return a + b end))
  end,
  process_element = function(self, v, ctx, out)
    if v.n < 0 then
      ctx:output(late, v.n)
      return
    end
    local c = (self.count:value() or 0) + 1
    self.count:update(c)
    self.seen:add(v.n)
    self.last:put("n", v.n)
    self.sum:add(v.n)
    out:collect({ ctx:get_current_key(), c, ctx:timestamp() })
    local ts = ctx:timestamp()
    if ts then ctx:timer_service():register_event_time_timer(ts + 10000) end
    local now = ctx:timer_service():current_processing_time()
    ctx:timer_service():register_processing_time_timer(now + 5000)
  end,
  on_timer = function(self, ts, ctx, out)
    out:collect({ ctx:get_current_key(), ctx:time_domain(), ts, self.count:value() })
  end,
}

local function by_id(v) return v.id end

-- Asserts that fn raises an error whose message contains text.
local function fails_with(text, fn)
  local ok, err = pcall(fn)
  assert.is_false(ok, "no error")
  assert.matches(text, tostring(err), 1, true)
end

describe("cstream.testing.keyed", function()
  it("collects the output with timestamps and keeps state per key", function()
    local h = testing.keyed(Counter, { key_by = by_id })
    h:open()
    h:process_element({ id = "a", n = 1 }, 1000)
    h:process_element({ id = "b", n = 2 }, 1500)
    h:process_element({ id = "a", n = 3 }, 2000)
    assert.are.same({ { "a", 1, 1000 }, { "b", 1, 1500 }, { "a", 2, 2000 } },
      h:extract_output())
    assert.are.same({ value = { "a", 1, 1000 }, timestamp = 1000 },
      h:extract_timestamped_output()[1])
    -- the current key is the last record's
    assert.are.equal(2, h:get_state("count"))
    assert.are.same({ 1, 3 }, h:get_state("seen"))
    assert.are.same({ n = 3 }, h:get_state("last"))
    assert.are.equal(4, h:get_state("sum"))
    h:set_current_key("b")
    assert.are.equal(1, h:get_state("count"))
    h:set_current_key("nobody")
    assert.is_nil(h:get_state("count"))
    assert.are.same({}, h:get_state("seen"))
    assert.are.same({}, h:get_state("last"))
    h:close()
  end)

  it("fires event-time timers when the watermark passes them", function()
    local h = testing.keyed(Counter, { key_by = by_id })
    h:open()
    h:process_element({ id = "a", n = 1 }, 1000)
    h:process_element({ id = "b", n = 1 }, 4000)
    h:clear_output()
    assert.is_nil(h:current_watermark())
    h:process_watermark(10999)
    assert.are.same({}, h:extract_output())
    h:process_watermark(11000)
    assert.are.same({ { "a", "event_time", 11000, 1 } }, h:extract_output())
    -- output of an event-time timer carries the timer's time
    assert.are.equal(11000, h:extract_timestamped_output()[1].timestamp)
    h:process_watermark(500) -- older: nothing
    assert.are.equal(11000, h:current_watermark())
    h:process_watermark(20000)
    assert.are.same({ "b", "event_time", 14000, 1 }, h:extract_output()[2])
    h:close()
  end)

  it("fires processing-time timers when processing time moves", function()
    local h = testing.keyed(Counter, { key_by = by_id })
    h:open()
    assert.are.equal(0, h:current_processing_time())
    h:process_element({ id = "a", n = 1 }) -- timer at 5000
    h:set_processing_time(3000)
    h:process_element({ id = "b", n = 1 }) -- timer at 8000
    h:clear_output()
    h:set_processing_time(4999)
    assert.are.same({}, h:extract_output())
    h:set_processing_time(8000)
    assert.are.same({ { "a", "processing_time", 5000, 1 }, { "b", "processing_time", 8000, 1 } },
      h:extract_output())
    -- processing-time output has no timestamp, as in Flink
    assert.is_nil(h:extract_timestamped_output()[1].timestamp)
    fails_with("set_processing_time: processing time does not go back (it is 8000, asked "
      .. "for 100)", function() h:set_processing_time(100) end)
    h:close()
  end)

  it("keeps side outputs per tag", function()
    local h = testing.keyed(Counter, { key_by = by_id })
    h:open()
    h:process_element({ id = "a", n = -1 }, 10)
    h:process_element({ id = "a", n = 2 }, 20)
    h:process_element({ id = "b", n = -3 }, 30)
    assert.are.same({ -1, -3 }, h:extract_side_output(late))
    assert.are.same({ -1, -3 }, h:extract_side_output("negative"))
    assert.are.same({ value = -3, timestamp = 30 }, h:extract_timestamped_side_output(late)[2])
    assert.are.same({}, h:extract_side_output("other"))
    assert.are.equal(1, #h:extract_output())
    h:close()
  end)

  it("restores state and timers from a snapshot into a new harness", function()
    local h = testing.keyed(Counter, { key_by = by_id, uid = "counter" })
    h:open()
    h:process_element({ id = "a", n = 1 }, 1000)
    h:process_element({ id = "a", n = 2 }, 2000)
    local snap = h:snapshot()
    h:process_element({ id = "a", n = 3 }, 3000) -- after the snapshot
    h:close()

    local r = testing.keyed(Counter, { key_by = by_id, uid = "counter" })
    r:restore(snap)
    r:open()
    r:set_current_key("a")
    assert.are.equal(2, r:get_state("count"))
    assert.are.same({ 1, 2 }, r:get_state("seen"))
    assert.are.same({}, r:extract_output())
    -- the timers came back with the state (deduplicated per key and time)
    r:process_watermark(12000)
    assert.are.same({ { "a", "event_time", 11000, 2 }, { "a", "event_time", 12000, 2 } },
      r:extract_output())
    r:set_processing_time(5000)
    assert.are.equal(3, #r:extract_output())
    r:process_element({ id = "a", n = 5 }, 13000)
    assert.are.same({ "a", 3, 13000 }, r:extract_output()[4])
    r:close()
    -- the first harness was not changed by the second
    assert.are.equal(3, #h:extract_output())
  end)

  it("runs flat_map, map, filter and reduce functions", function()
    local fm = testing.keyed(function(v, out)
      for w in v:gmatch("%a+") do out:collect(w) end
    end, { kind = "flat_map", key_by = function(v) return #v end })
    fm:open()
    fm:process_element("to be")
    assert.are.same({ "to", "be" }, fm:extract_output())

    local m = testing.one_input(function(v) return v * 2 end, { kind = "map" })
    m:open()
    m:process_element(21)
    assert.are.same({ 42 }, m:extract_output())

    local f = testing.one_input({ filter = function(self, v) return v % 2 == 0 end })
    f:open()
    for i = 1, 5 do f:process_element(i) end
    assert.are.same({ 2, 4 }, f:extract_output())

    local r = testing.keyed(function(a, b) return { a[1], a[2] + b[2] } end,
      { kind = "reduce", key_by = 1 })
    r:open()
    r:process_element({ "x", 1 })
    r:process_element({ "y", 5 })
    r:process_element({ "x", 2 })
    assert.are.same({ { "x", 1 }, { "y", 5 }, { "x", 3 } }, r:extract_output())
  end)

  it("gives each harness its own copy of a rich function", function()
    local Op = {
      seen = {},
      flat_map = function(self, v, out)
        self.seen[#self.seen + 1] = v
        out:collect(#self.seen)
      end,
    }
    local a = testing.one_input(Op)
    local b = testing.one_input(Op)
    a:open()
    b:open()
    a:process_element(1)
    a:process_element(2)
    b:process_element(3)
    assert.are.same({ 1, 2 }, a:extract_output())
    assert.are.same({ 1 }, b:extract_output())
    assert.are.same({}, Op.seen)
  end)

  it("runs open, close, initialize_state and snapshot_state with operator state", function()
    local calls = {}
    local Buffering = {
      initialize_state = function(self, ctx)
        calls[#calls + 1] = "initialize_state " .. tostring(ctx:is_restored())
        self.state = ctx:get_operator_state_store()
          :get_list_state(cstream.list_state_descriptor("buffer"))
        self.buffer = ctx:is_restored() and self.state:get() or {}
      end,
      open = function() calls[#calls + 1] = "open" end,
      close = function() calls[#calls + 1] = "close" end,
      snapshot_state = function(self)
        calls[#calls + 1] = "snapshot_state"
        self.state:update(self.buffer)
      end,
      invoke = function(self, v) self.buffer[#self.buffer + 1] = v end,
    }
    local h = testing.one_input(Buffering, { uid = "sink" })
    h:open()
    h:process_element("x")
    h:process_element("y")
    local snap = h:snapshot()
    assert.are.same({ "x", "y" }, h:get_state("buffer"))
    h:close()
    h:close() -- once is enough
    local r = testing.one_input(Buffering, { uid = "sink" })
    r:restore(snap)
    r:open()
    r:process_element("z")
    r:snapshot()
    assert.are.same({ "x", "y", "z" }, r:get_state("buffer"))
    r:destroy()
    assert.are.same({ "initialize_state false", "open", "snapshot_state", "close",
                      "initialize_state true", "open", "snapshot_state" }, calls)
  end)

  it("reads state with a time to live by the harness's processing time", function()
    local Dedup = {
      open = function(self, ctx)
        local d = cstream.value_state_descriptor("seen")
        d:enable_time_to_live(cstream.state_ttl_config(1000))
        self.seen = ctx:get_state(d)
      end,
      flat_map = function(self, v, out)
        if not self.seen:value() then out:collect(v) end
        self.seen:update(true)
      end,
    }
    local h = testing.keyed(Dedup, { key_by = 1 })
    h:open()
    h:process_element({ 1, "a" })
    h:set_processing_time(999)
    h:process_element({ 1, "a" })
    assert.is_true(h:get_state("seen"))
    h:set_processing_time(2000)
    assert.is_nil(h:get_state("seen"))
    h:process_element({ 1, "a" })
    assert.are.same({ { 1, "a" }, { 1, "a" } }, h:extract_output())
  end)
end)

describe("cstream.testing.two_input", function()
  it("runs a co_map on connected streams that are not keyed", function()
    local h = testing.two_input({
      map1 = function(self, v) return "left " .. v end,
      map2 = function(self, v) return "right " .. v end,
    })
    h:open()
    h:process_element1("a")
    h:process_element2("b")
    assert.are.same({ "left a", "right b" }, h:extract_output())
    fails_with("has two inputs: use process_element1 or process_element2",
      function() h:process_element("c") end)
  end)

  it("keys each input by its selector; the smaller input watermark fires timers", function()
    -- Flink's KeyedCoProcessFunction: an order waits for its payment
    local Match = {
      open = function(self, ctx)
        self.order = ctx:get_state(cstream.value_state_descriptor("order"))
      end,
      process_element1 = function(self, order, ctx, out)
        self.order:update(order.item)
        ctx:timer_service():register_event_time_timer(ctx:timestamp() + 100)
      end,
      process_element2 = function(self, payment, ctx, out)
        local item = self.order:value()
        if item then out:collect({ ctx:get_current_key(), item, "paid" }) end
        self.order:clear()
      end,
      on_timer = function(self, ts, ctx, out)
        if self.order:value() then out:collect({ ctx:get_current_key(), self.order:value(), "unpaid" }) end
      end,
    }
    local h = testing.two_input(Match, { key_by = { "order_id", function(p) return p.ref end } })
    h:open()
    h:process_element1({ order_id = 1, item = "book" }, 10)
    h:process_element1({ order_id = 2, item = "pen" }, 20)
    h:process_element2({ ref = 1 }, 30)
    assert.are.same({ { 1, "book", "paid" } }, h:extract_output())
    h:process_watermark1(500)
    assert.is_nil(h:current_watermark()) -- input 2 has no watermark yet
    h:process_watermark2(119)
    assert.are.equal(119, h:current_watermark())
    assert.are.equal(1, #h:extract_output())
    h:process_watermark2(120)
    assert.are.same({ 2, "pen", "unpaid" }, h:extract_output()[2])
    fails_with("testing.two_input: a process function has one input; use testing.keyed",
      function() testing.two_input(Counter, { key_by = by_id }) end)
    fails_with("testing.keyed: a co_process function has two inputs; use testing.two_input",
      function() testing.keyed(Match, { key_by = 1 }) end)
  end)
end)

describe("cstream.testing lifetimes", function()
  it("frees a harness when it is collected, or at the end of a <close> scope", function()
    for _ = 1, 20 do
      local h = testing.keyed(Counter, { key_by = by_id })
      h:open()
      h:process_element({ id = "a", n = 1 }, 1000) -- state, and two timers
      local m = h:get_state("last")
      assert.are.same({ n = 1 }, m)
    end
    collectgarbage("collect")
    collectgarbage("collect")
    local kept
    do
      local h <close> = testing.keyed(Counter, { key_by = by_id })
      h:open()
      h:process_element({ id = "a", n = 1 }, 1000)
      kept = h
    end
    fails_with("this harness was destroyed", function() kept:get_state("count") end)
    -- the registrations of the freed harnesses are gone with them
    local other = testing.keyed({
      open = function(self, ctx) self.count = ctx:get_list_state(cstream.list_state_descriptor("count")) end,
      flat_map = function(self, v) self.count:add(v.n) end,
    }, { key_by = by_id, uid = "process" })
    other:open()
    other:process_element({ id = "a", n = 1 })
    assert.are.same({ 1 }, other:get_state("count"))
  end)
end)

describe("cstream.testing bad input", function()
  it("refuses a record before open", function()
    local h = testing.keyed(Counter, { key_by = by_id, name = "counter" })
    -- errors name the test's line
    local ok, err = pcall(function() h:process_element({ id = "a", n = 1 }) end)
    assert.is_false(ok)
    assert.matches("^[^\n]*harness_spec.lua:%d+: cstream.testing: process_element", err)
    ok, err = pcall(function() testing.keyed(Counter) end)
    assert.matches("^[^\n]*harness_spec.lua:%d+: testing.keyed: opts.key_by is missing", err)
    fails_with("cstream.testing: process_element: the harness of operator 'counter' is not open "
        .. "(call h:open() first)", function() h:process_element({ id = "a", n = 1 }) end)
    fails_with("process_watermark: the harness of operator 'counter' is not open",
      function() h:process_watermark(1) end)
    h:open()
    fails_with("cstream.testing: open: the harness is already open", function() h:open() end)
    h:close()
    fails_with("cstream.testing: process_element: the harness of operator 'counter' is closed",
      function() h:process_element({ id = "a", n = 1 }) end)
  end)

  it("names the operator and the state when keyed state is used without a key", function()
    local h = testing.one_input(Counter, { name = "unkeyed-counter" })
    local ok, err = pcall(h.open, h)
    assert.is_false(ok)
    assert.matches("error in operator 'unkeyed-counter'", err, 1, true)
    assert.matches("get_state('count'): operator 'unkeyed-counter' is not on a keyed stream",
      err, 1, true)

    -- state obtained lazily, on the first record
    local Lazy = {
      flat_map = function(self, v, out)
        out:collect(self.ctx:get_state(cstream.value_state_descriptor("total")):value())
      end,
      open = function(self, ctx) self.ctx = ctx end,
    }
    local l = testing.one_input(Lazy, { name = "lazy" })
    l:open()
    ok, err = pcall(l.process_element, l, 5)
    assert.is_false(ok)
    assert.matches("error in operator 'lazy' (id lazy, subtask 1/1) on record 5", err, 1, true)
    assert.matches("get_state('total'): operator 'lazy' is not on a keyed stream", err, 1, true)
    -- timers need a keyed stream too
    local t = testing.one_input({ process_element = function(self, v, ctx)
      ctx:timer_service():register_event_time_timer(1)
    end, on_timer = function() end }, { name = "timed" })
    t:open()
    ok, err = pcall(t.process_element, t, 1)
    assert.matches("timers need a keyed stream: operator 'timed'", err, 1, true)
    fails_with("set_current_key: operator 'timed' is not on a keyed stream",
      function() t:set_current_key(1) end)
  end)

  it("reports the user's error with the operator and the record, and goes on", function()
    local h = testing.keyed({
      flat_map = function(self, v, out)
        if v[2] == 0 then error("division by zero") end
        out:collect(10 // v[2])
      end,
    }, { key_by = 1, name = "divide" })
    h:open()
    local ok, err = pcall(h.process_element, h, { "k", 0 })
    assert.is_false(ok)
    assert.matches("error in operator 'divide' (id divide, subtask 1/1) on record (k,0)", err, 1, true)
    assert.matches("harness_spec.lua:%d+: division by zero", err)
    h:process_element({ "k", 5 })
    assert.are.same({ 2 }, h:extract_output())
  end)

  it("explains a bad operator, key, state name or snapshot", function()
    assert.has_error(function() testing.keyed({ nothing = true }, { key_by = 1 }) end)
    assert.has_error(function() testing.keyed(function() end, { key_by = 1 }) end)
    assert.has_error(function() testing.keyed(Counter, {}) end)
    assert.has_error(function() testing.one_input(function() end, { kind = "reduce" }) end)
    local ok, err = pcall(testing.keyed, { flat_map = 1, map = function() end },
      { kind = "flat_map", key_by = 1, name = "m" })
    assert.is_false(ok)
    assert.matches("the rich function has no 'flat_map' method", err, 1, true)

    local h = testing.keyed(Counter, { key_by = by_id, name = "counter" })
    h:open()
    ok, err = pcall(h.process_element, h, { n = 1 })
    assert.matches("key_by of operator 'counter' returned nil on record", err, 1, true)
    ok, err = pcall(h.get_state, h, "count")
    assert.matches("there is no current key", err, 1, true)
    ok, err = pcall(h.process_element, h, { id = print, n = 1 })
    assert.matches("process_element: the key cannot be used (operator 'counter')", err, 1, true)
    fails_with("expected a time in milliseconds (an integer), got string",
      function() h:process_element({ id = "a", n = 1 }, "soon") end)
    h:process_element({ id = "a", n = 1 })
    ok, err = pcall(h.get_state, h, "cuont")
    assert.matches("operator 'counter' has no state named 'cuont' (its states: 'count', "
      .. "'seen', 'last', 'sum')", err, 1, true)
    assert.has_error(function() h:restore({}) end)
    local other = testing.keyed(Counter, { key_by = by_id, uid = "other" })
    assert.has_error(function() other:restore(h:snapshot()) end)
    assert.has_error(function() h:restore(h:snapshot()) end)
    local fresh = testing.keyed(Counter, { key_by = by_id, name = "counter" })
    local snap = h:snapshot()
    snap.bytes = snap.bytes:sub(1, #snap.bytes // 2)
    ok, err = pcall(fresh.restore, fresh, snap)
    assert.matches("the snapshot is corrupt or truncated", err, 1, true)
    fresh:destroy()
    fails_with("cstream.testing: this harness was destroyed", function() fresh:open() end)
  end)
end)

describe("cstream.testing windows", function()
  local count = {
    create_accumulator = function() return 0 end,
    add = function(_, n) return n + 1 end,
    get_result = function(n) return n end,
    merge = function(a, b) return a + b end,
  }

  it("fires event-time windows with the watermark, late records to a side output", function()
    local late = cstream.output_tag("late")
    local op = testing.window(cstream.tumbling_event_time_windows(60000))
      :side_output_late_data(late)
      :aggregate(count, function(status, ctx, counts, out)
        out:collect({ status, ctx:window().start, counts[1] })
      end)
    local h = testing.keyed(op, { key_by = "status" })
    h:open()
    h:process_element({ status = 200 }, 1000)
    h:process_element({ status = 200 }, 59999)
    h:process_element({ status = 404 }, 30000)
    h:process_element({ status = 200 }, 60000)
    h:process_watermark(59998)
    assert.are.same({}, h:extract_output())
    h:process_watermark(59999)
    local got = h:extract_output()
    table.sort(got, function(a, b) return a[1] < b[1] end)
    assert.are.same({ { 200, 0, 2 }, { 404, 0, 1 } }, got)
    -- a window result carries the window's max timestamp
    assert.are.equal(59999, h:extract_timestamped_output()[1].timestamp)
    h:process_element({ status = 500 }, 5000) -- its window has fired
    assert.are.same({ { status = 500 } }, h:extract_side_output(late))
    h:process_watermark(200000)
    assert.are.same({ 200, 60000, 1 }, h:extract_output()[3])
    h:close()
  end)

  it("runs count windows and processing-time windows", function()
    local h = testing.keyed(testing.count_window(2):reduce(function(a, b) return a + b end),
      { key_by = function(v) return v % 2 end })
    h:open()
    for i = 1, 7 do h:process_element(i) end
    assert.are.same({ 4, 6, 12 }, h:extract_output()) -- 7 waits for its pair

    local p = testing.keyed(testing.window(cstream.tumbling_processing_time_windows(1000)):sum(2),
      { key_by = 1 })
    p:open()
    p:set_processing_time(100)
    p:process_element({ "a", 1 })
    p:process_element({ "a", 2 })
    p:set_processing_time(998)
    assert.are.same({}, p:extract_output())
    p:set_processing_time(1000)
    assert.are.same({ { "a", 3 } }, p:extract_output())
  end)
end)
