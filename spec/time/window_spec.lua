-- Keyed windows as a job author sees them: tumbling, sliding and session
-- windows by event time, count windows, processing-time windows; reduce,
-- aggregate, process and their combinations; allowed lateness, the late
-- side output and dropped records; per-window and global state; the
-- argument errors; at -p 1 and -p 2 (and, registered once more by ctest,
-- on RocksDB); and open windows across a SIGKILL and a restore at another
-- parallelism.
local h = require("helpers")

-- Helpers every job below starts with.
--   source(records, bound)  a source of the records ({key, ts, value}),
--                           with timestamps ts and watermarks bounded by
--                           `bound` ms (one subtask, so the watermark is
--                           exactly the one the records make); an entry
--                           {wait = name} waits until
--                           the file <dir>/<name> exists (see show), so a
--                           record can follow a given watermark exactly
--   show(s, label, marks)   prints s's records as (label, fields...);
--                           when a printed line's rendering is a key of
--                           marks, creates <dir>/<marks[line]>
--   elements(key, ctx, elements, out)  a process window function emitting
--                           (key, start, finish, "v1 v2 ...")
--   sum3(a, b)              a reduce function summing field 3
--   AVG                     an aggregate function: the mean of field 3
local PRELUDE = [[
local cstream = require("cstream")
local env = cstream.get_execution_environment()
local dir = arg[1]
local function exists(p) local f = io.open(p) if f then f:close() end return f ~= nil end
local function source(records, bound)
  return env:add_source({ run = function(self, ctx)
    for _, r in ipairs(records) do
      if r.wait then
        while not exists(dir .. "/" .. r.wait) do cstream.sleep(5) end
      else
        ctx:collect(r)
      end
    end
  end }):assign_timestamps_and_watermarks(
    cstream.watermark_strategy.for_bounded_out_of_orderness(bound or 0, function(v) return v[2] end))
    :set_parallelism(1) -- chained to the source: records keep their order
end
local function show(s, label, marks)
  s:map(function(v)
    local out = { label }
    if type(v) == "table" then
      for i, x in ipairs(v) do out[i + 1] = x end
    else
      out[2] = v
    end
    local m = marks and marks[cstream.format(out)]
    if m then assert(io.open(dir .. "/" .. m, "w")):close() end
    return out
  end):print()
end
local function elements(key, ctx, els, out)
  local w, vs = ctx:window(), {}
  for i, e in ipairs(els) do vs[i] = tostring(e[3]) end
  out:collect({ key, w.start, w.finish, table.concat(vs, " ") })
end
local function sum3(a, b) return { a[1], a[2], a[3] + b[3] } end
local AVG = {
  create_accumulator = function() return { 0, 0 } end,
  add = function(v, acc) return { acc[1] + v[3], acc[2] + 1 } end,
  get_result = function(acc) return acc[1] / acc[2] end,
  merge = function(a, b) return { a[1] + b[1], a[2] + b[2] } end,
}
]]

local WM_FLAGS = { "-D", "pipeline.auto-watermark-interval=10ms" }

-- Runs the job `body` (after PRELUDE) at parallelism p with extra flags;
-- returns the result and its printed lines without "N> ", sorted.
local function run_job(body, p, flags, opts)
  local dir = h.tmpdir()
  local job = h.write_job(PRELUDE .. body .. '\nenv:execute("windows")\n')
  local args = { "-p", tostring(p) }
  for _, f in ipairs(WM_FLAGS) do args[#args + 1] = f end
  for _, f in ipairs(flags or {}) do args[#args + 1] = f end
  args[#args + 1] = job
  args[#args + 1] = dir
  local r = h.run(args, opts)
  local lines = {}
  for i, l in ipairs(h.lines(r.stdout)) do lines[i] = l:gsub("^%d+> ", "") end
  return r, h.sorted(lines), job
end

local function ok(r) assert.are.equal(0, r.code, r.stderr) end

describe("event-time windows", function()
  after_each(h.cleanup)

  for _, p in ipairs({ 1, 2 }) do
    it("tumbling: reduce, reduce+process, aggregate, aggregate+process, process, sum, max at -p " .. p, function()
      local r, lines = run_job([[
local keyed = source({
  { "a", 1, 1 }, { "b", 2, 10 }, { "a", 4, 2 }, { "a", 11, 3 }, { "b", 13, 20 },
  { "a", 9, 4 }, { "a", 10, 5 }, { "b", 25, 30 } }, 5):key_by(1)
local w = keyed:window(cstream.tumbling_event_time_windows(10))
show(w:reduce(sum3), "reduce")
show(w:reduce(sum3, function(key, ctx, els, out)
  local win = ctx:window()
  out:collect({ key, win.start, win.finish, win.max_timestamp, els[1][3], #els })
end), "reduce+process")
show(w:aggregate(AVG), "aggregate")
show(w:aggregate(AVG, { process = function(self, key, ctx, els, out)
  out:collect({ key, ctx:window().start, els[1] })
end }), "aggregate+process")
show(w:process(elements), "process")
show(w:sum(3), "sum")
show(w:max(3), "max")
]], p)
      ok(r)
      assert.are.same(h.sorted({
        "(reduce,a,1,7)", "(reduce,a,11,8)", "(reduce,b,2,10)", "(reduce,b,13,20)", "(reduce,b,25,30)",
        "(reduce+process,a,0,10,9,7,1)", "(reduce+process,a,10,20,19,8,1)",
        "(reduce+process,b,0,10,9,10,1)", "(reduce+process,b,10,20,19,20,1)",
        "(reduce+process,b,20,30,29,30,1)",
        "(aggregate,2.3333333333333335)", "(aggregate,4.0)", "(aggregate,10.0)",
        "(aggregate,20.0)", "(aggregate,30.0)",
        "(aggregate+process,a,0,2.3333333333333335)", "(aggregate+process,a,10,4.0)",
        "(aggregate+process,b,0,10.0)", "(aggregate+process,b,10,20.0)",
        "(aggregate+process,b,20,30.0)",
        "(process,a,0,10,1 2 4)", "(process,a,10,20,3 5)", "(process,b,0,10,10)",
        "(process,b,10,20,20)", "(process,b,20,30,30)",
        "(sum,a,1,7)", "(sum,a,11,8)", "(sum,b,2,10)", "(sum,b,13,20)", "(sum,b,25,30)",
        "(max,a,1,4)", "(max,a,11,5)", "(max,b,2,10)", "(max,b,13,20)", "(max,b,25,30)",
      }), lines)
    end)

    it("gives results the window's max_timestamp as their time, so windows of windows work, at -p " .. p, function()
      local r, lines = run_job([[
local keyed = source({ { "a", 1, 1 }, { "a", 12, 2 }, { "b", 15, 3 }, { "a", 25, 4 }, { "b", 31, 5 } }):key_by(1)
local per10 = keyed:window(cstream.tumbling_event_time_windows(10)):reduce(sum3, function(key, ctx, els, out)
  out:collect({ "all", ctx:window().max_timestamp, els[1][3] })
end)
show(per10:key_by(1):window(cstream.tumbling_event_time_windows(15)):process(function(key, ctx, els, out)
  local vs = {}
  for i, e in ipairs(els) do vs[i] = e[2] .. ":" .. e[3] end
  table.sort(vs)
  out:collect({ key, ctx:window().start, table.concat(vs, " ") })
end), "per15")
]], p)
      ok(r)
      -- by the records' own times, [0,15) would hold 1 and 12
      assert.are.same({ "(per15,all,0,9:1)", "(per15,all,15,19:2 19:3 29:4)", "(per15,all,30,39:5)" },
                      lines)
    end)

    it("sliding windows, an offset, and slides longer than the size (records in the gaps go nowhere) at -p " .. p, function()
      local r, lines = run_job([[
local keyed = source({ { "a", 1, 1 }, { "a", 6, 2 }, { "b", 7, 10 }, { "a", 12, 3 } }):key_by(1)
show(keyed:window(cstream.sliding_event_time_windows(10, 5)):process(elements), "sliding")
show(keyed:window(cstream.tumbling_event_time_windows(10, 3)):process(elements), "offset")
show(keyed:window(cstream.sliding_event_time_windows(2, 5)):process(elements), "gaps")
show(keyed:window(cstream.sliding_event_time_windows(10, 5)):sum(3), "sliding-sum")
]], p)
      ok(r)
      assert.are.same(h.sorted({
        "(sliding,a,-5,5,1)", "(sliding,a,0,10,1 2)", "(sliding,a,5,15,2 3)", "(sliding,a,10,20,3)",
        "(sliding,b,0,10,10)", "(sliding,b,5,15,10)",
        "(offset,a,-7,3,1)", "(offset,a,3,13,2 3)", "(offset,b,3,13,10)",
        "(gaps,a,0,2,1)", "(gaps,a,5,7,2)",
        "(sliding-sum,a,1,1)", "(sliding-sum,a,1,3)", "(sliding-sum,a,6,5)", "(sliding-sum,a,12,3)",
        "(sliding-sum,b,7,10)", "(sliding-sum,b,7,10)",
      }), lines)
    end)

    it("session windows merge overlapping and touching sessions: process, reduce, aggregate at -p " .. p, function()
      -- a: [1,8) from 1 and 3; 2 falls inside it; [12,17) from 12; 7 opens
      -- [7,12), which touches both, so all merge into [1,17); 40 is alone.
      local r, lines = run_job([[
local keyed = source({
  { "a", 1, 1 }, { "a", 3, 2 }, { "b", 2, 10 }, { "a", 2, 6 }, { "a", 12, 3 }, { "a", 7, 4 },
  { "b", 30, 20 }, { "a", 40, 5 } }, 10):key_by(1)
local w = keyed:window(cstream.event_time_session_windows(5))
show(w:process(elements), "session")
show(w:reduce(sum3, function(key, ctx, els, out)
  out:collect({ key, ctx:window().start, ctx:window().finish, els[1][3] })
end), "session-reduce")
show(w:aggregate(AVG, function(key, ctx, els, out)
  out:collect({ key, ctx:window().start, els[1] })
end), "session-avg")
]], p)
      ok(r)
      assert.are.same(h.sorted({
        "(session,a,1,17,1 2 6 3 4)", "(session,a,40,45,5)", "(session,b,2,7,10)", "(session,b,30,35,20)",
        "(session-reduce,a,1,17,16)", "(session-reduce,a,40,45,5)", "(session-reduce,b,2,7,10)",
        "(session-reduce,b,30,35,20)",
        "(session-avg,a,1,3.2)", "(session-avg,a,40,5.0)", "(session-avg,b,2,10.0)",
        "(session-avg,b,30,20.0)",
      }), lines)
    end)

    it("allowed lateness fires a window again per late record; later ones go to the late side output at -p " .. p, function()
      -- [0,10) fires at watermark 11 with 1 2; 8 comes within the lateness
      -- (cleanup at 14) and fires it again; the watermark then jumps to 24,
      -- firing and clearing [10,20); 3 and 17 are too late for any window.
      local r, lines = run_job([[
local LATE = cstream.output_tag("late")
local keyed = source({
  { "a", 1, 1 }, { "a", 5, 2 }, { "a", 12, 3 }, { wait = "m1" }, { "a", 8, 4 }, { "a", 16, 5 },
  { "b", 14, 10 }, { "a", 25, 8 }, { wait = "m2" }, { "a", 3, 6 }, { "a", 17, 7 }, { "b", 19, 20 },
  { "b", 26, 30 } }):key_by(1)
local result = keyed:window(cstream.tumbling_event_time_windows(10))
  :allowed_lateness(5):side_output_late_data(LATE):process(elements)
show(result, "win", { ["(win,a,0,10,1 2)"] = "m1", ["(win,a,10,20,3 5)"] = "m2" })
show(result:get_side_output(LATE), "late")
]], p)
      ok(r)
      assert.are.same(h.sorted({
        "(win,a,0,10,1 2)", "(win,a,0,10,1 2 4)", "(win,a,10,20,3 5)", "(win,b,10,20,10)",
        "(win,a,20,30,8)", "(win,b,20,30,30)",
        "(late,a,3,6)", "(late,a,17,7)", "(late,b,19,20)",
      }), lines)
    end)
  end

  it("gives a late firing's result the window's max_timestamp too", function()
    local r, lines = run_job([[
local keyed = source({
  { "a", 1, 1 }, { "a", 12, 3 }, { wait = "m1" }, { "a", 8, 4 } }):key_by(1)
local result = keyed:window(cstream.tumbling_event_time_windows(10))
  :allowed_lateness(5):process(elements)
show(result, "win", { ["(win,a,0,10,1)"] = "m1" })
show(result:process(function(v, ctx, out) out:collect({ v[4], ctx:timestamp() }) end), "ts")
]], 1)
    ok(r)
    assert.are.same(h.sorted({ "(win,a,0,10,1)", "(win,a,0,10,1 4)", "(win,a,10,20,3)",
                               "(ts,1,9)", "(ts,1 4,9)", "(ts,3,19)" }), lines)
  end)

  it("drops late records without a side output, counting them, and says so with CSTREAM_VERBOSE", function()
    local r, lines = run_job([[
local keyed = source({ { "a", 1, 1 }, { "a", 12, 2 }, { wait = "m1" }, { "a", 3, 3 }, { "a", 4, 4 },
                       { "a", 13, 5 } }):key_by(1)
show(keyed:window(cstream.tumbling_event_time_windows(10)):process(elements):name("per10"),
     "win", { ["(win,a,0,10,1)"] = "m1" })
]], 2, {}, { env = "CSTREAM_VERBOSE=1" })
    ok(r)
    assert.are.same({ "(win,a,0,10,1)", "(win,a,10,20,2 5)" }, lines)
    assert.matches("cstream%-lua: window operator 'per10': dropped a late record %(timestamp 3, watermark 11%)",
                   r.stderr)
    local n = 0
    for _ in r.stderr:gmatch("dropped a late record") do n = n + 1 end
    assert(n >= 1 and n <= 2, r.stderr)
  end)

  it("gives a process window function per-window state, global state, clear() and side outputs", function()
    local r, lines = run_job([[
local TOO_BIG = cstream.output_tag("too-big")
local keyed = source({
  { "a", 1, 1 }, { "a", 5, 2 }, { "a", 12, 3 }, { wait = "m1" }, { "a", 8, 4 }, { "a", 16, 5 },
  { "a", 25, 8 } }):key_by(1)
local result = keyed:window(cstream.tumbling_event_time_windows(10)):allowed_lateness(5):process({
  process = function(self, key, ctx, els, out)
    local fired = ctx:window_state():get_state(cstream.value_state_descriptor("fired"))
    local n = (fired:value() or 0) + 1
    fired:update(n)
    local seen = ctx:window_state():get_map_state(cstream.map_state_descriptor("seen"))
    for _, e in ipairs(els) do seen:put(e[3], true) end
    local nseen = 0
    for _ in seen:keys() do nseen = nseen + 1 end
    local total = ctx:global_state():get_state(cstream.value_state_descriptor("total"))
    total:update((total:value() or 0) + #els)
    local cleared = ctx:global_state():get_list_state(cstream.list_state_descriptor("cleared"))
    local c = {}
    for i, s in ipairs(cleared:get()) do c[i] = tostring(s) end
    out:collect({ key, ctx:window().start, n, nseen, total:value(), table.concat(c, " "),
                  ctx:current_watermark() >= ctx:window().max_timestamp })
    for _, e in ipairs(els) do
      if e[3] >= 8 then ctx:output(TOO_BIG, { key, e[3] }) end
    end
  end,
  clear = function(self, ctx)
    local fired = ctx:window_state():get_state(cstream.value_state_descriptor("fired"))
    ctx:global_state():get_list_state(cstream.list_state_descriptor("cleared"))
      :add(ctx:window().start * 100 + fired:value())
  end,
})
show(result, "w", { ["(w,a,0,1,2,2,,true)"] = "m1" })
show(result:get_side_output(TOO_BIG), "big")
]], 1)
    ok(r)
    assert.are.same(h.sorted({
      "(w,a,0,1,2,2,,true)", "(w,a,0,2,3,5,,true)", "(w,a,10,1,2,7,2,true)",
      "(w,a,20,1,1,8,2 1001,true)", "(big,a,8)",
    }), lines)
  end)

  it("fails a job whose event-time window gets records without timestamps, saying why", function()
    local r = run_job([[
env:from_collection({ { "a", 1, 1 } }):key_by(1)
  :window(cstream.tumbling_event_time_windows(10)):process(elements):print()
]], 1)
    assert.are_not.equal(0, r.code)
    assert.matches("event%-time window: the record has no timestamp", r.stderr)
    assert.matches("Window%(TumblingEventTimeWindows%(10%), EventTimeTrigger, process%)", r.stderr)
  end)
end)

describe("count windows", function()
  after_each(h.cleanup)

  for _, p in ipairs({ 1, 2 }) do
    it("tumbling count windows fire and purge every n records; sliding ones every slide records over the last n, at -p " .. p, function()
      local r, lines = run_job([[
local keyed = env:from_collection({ { "a", 0, 1 }, { "a", 0, 2 }, { "b", 0, 10 }, { "a", 0, 3 },
  { "a", 0, 4 }, { "b", 0, 20 }, { "a", 0, 5 } }):key_by(1)
show(keyed:count_window(2):sum(3), "sum2")
show(keyed:count_window(2):aggregate(AVG), "avg2")
show(keyed:count_window(2):process(function(key, ctx, els, out)
  local vs = {}
  for i, e in ipairs(els) do vs[i] = e[3] end
  out:collect({ key, table.concat(vs, " "), ctx:window().max_timestamp == math.maxinteger })
end), "list2")
show(keyed:count_window(3, 1):process(elements), "slide31")
show(keyed:count_window(3, 2):reduce(sum3), "slide32")
]], p)
      ok(r)
      local g = "-9223372036854775808,9223372036854775807"
      assert.are.same(h.sorted({
        "(sum2,a,0,3)", "(sum2,a,0,7)", "(sum2,b,0,30)",
        "(avg2,1.5)", "(avg2,3.5)", "(avg2,15.0)",
        "(list2,a,1 2,true)", "(list2,a,3 4,true)", "(list2,b,10 20,true)",
        "(slide31,a," .. g .. ",1)", "(slide31,a," .. g .. ",1 2)", "(slide31,a," .. g .. ",1 2 3)",
        "(slide31,a," .. g .. ",2 3 4)", "(slide31,a," .. g .. ",3 4 5)",
        "(slide31,b," .. g .. ",10)", "(slide31,b," .. g .. ",10 20)",
        "(slide32,a,0,3)", "(slide32,a,0,9)", "(slide32,b,0,30)",
      }), lines)
    end)
  end
end)

describe("processing-time windows", function()
  after_each(h.cleanup)

  -- Bursts of records from a slow source: each burst waits until the
  -- window holding the previous burst's last record has fired.
  local SLOW = [[
local function bursts(list)
  return env:add_source({ run = function(self, ctx)
    for _, r in ipairs(list) do
      if r.wait then
        while not exists(dir .. "/" .. r.wait) do cstream.sleep(5) end
      else
        ctx:collect(r)
      end
    end
  end })
end
local function marked(s, label)
  return s:map(function(v)
    for _, x in ipairs(v[4]) do assert(io.open(dir .. "/after" .. x, "w")):close() end
    return { label, v[1], v[2], v[3], table.concat(v[4], " ") }
  end)
end
local function listing(key, ctx, els, out)
  local vs = {}
  for i, e in ipairs(els) do vs[i] = e[3] end
  out:collect({ key, ctx:window().start, ctx:window().finish, vs })
end
]]

  for _, p in ipairs({ 1, 2 }) do
    it("tumbling processing-time windows of 100 ms hold every record once, aligned, per burst, at -p " .. p, function()
      local r, lines = run_job(SLOW .. [[
local s = bursts({ { "a", 0, 1 }, { "a", 0, 2 }, { "b", 0, 10 }, { "a", 0, 3 }, { wait = "after3" },
                   { wait = "after10" }, { "a", 0, 4 }, { "b", 0, 20 }, { "a", 0, 5 },
                   { wait = "after5" }, { wait = "after20" } })
local w = s:key_by(1):window(cstream.tumbling_processing_time_windows(100)):process(listing)
marked(w, "pt"):print()
]], p)
      ok(r)
      -- Which 100 ms window a burst lands in is up to the clock (a burst
      -- may straddle two); what is fixed is the partition of the records.
      local got = { a = {}, b = {} }
      for _, l in ipairs(lines) do
        local key, s, f, vs = l:match("^%(pt,(%a),(%d+),(%d+),([%d ]+)%)$")
        assert(key, "unexpected line " .. l)
        s, f = tonumber(s), tonumber(f)
        assert.are.equal(100, f - s)
        assert.are.equal(0, s % 100)
        local burst
        for v in vs:gmatch("%d+") do
          local b = (tonumber(v) <= 3 or tonumber(v) == 10) and 1 or 2
          assert(burst == nil or burst == b, "a window holds two bursts: " .. l)
          burst = b
          table.insert(got[key], tonumber(v))
        end
      end
      assert.are.same({ 1, 2, 3, 4, 5 }, got.a)
      assert.are.same({ 10, 20 }, got.b)
    end)
  end

  for _, p in ipairs({ 1, 2 }) do
    -- Windows of 200 ms every 100 ms: a record's two windows are [s - 100,
    -- s + 100) and [s, s + 200) for the 100 ms slot s its arrival falls in.
    -- Each burst waits until every window holding a record of the one
    -- before fired (marked() creates twice<v> at v's second window), so the
    -- records span several slots, and the job ends only once all fired.
    -- (At -p 2 the keys a and b are on different subtasks.)
    it("sliding processing-time windows of 200 ms every 100 ms hold each record twice, in consecutive windows, at -p " .. p, function()
      local r, lines = run_job(SLOW .. [[
local s = bursts({ { "a", 0, 1 }, { "a", 0, 2 }, { "b", 0, 10 }, { wait = "twice2" },
                   { wait = "twice10" }, { "a", 0, 3 }, { "b", 0, 20 }, { wait = "after3" },
                   { wait = "after20" }, { "a", 0, 4 }, { "b", 0, 30 }, { "a", 0, 5 }, { wait = "twice4" },
                   { wait = "twice30" }, { wait = "twice5" } })
local w = s:key_by(1):window(cstream.sliding_processing_time_windows(200, 100)):process(listing)
w:map(function(v)
  for _, x in ipairs(v[4]) do
    local after = dir .. "/after" .. x
    if exists(after) then assert(io.open(dir .. "/twice" .. x, "w")):close() end
    assert(io.open(after, "w")):close()
  end
  return { "pts", v[1], v[2], v[3], table.concat(v[4], " ") }
end):print()
]], p)
      ok(r)
      -- key -> window start -> its records; record -> the starts of its windows
      local windows, starts = { a = {}, b = {} }, {}
      for _, l in ipairs(lines) do
        local key, st, f, vs = l:match("^%(pts,(%a),(%d+),(%d+),([%d ]+)%)$")
        assert(key, "unexpected line " .. l)
        st, f = tonumber(st), tonumber(f)
        assert.are.equal(200, f - st, l)
        assert.are.equal(0, st % 100, l)
        assert.is_nil(windows[key][st], "window fired twice: " .. l)
        windows[key][st] = {}
        for v in vs:gmatch("%d+") do
          v = tonumber(v)
          windows[key][st][v] = true
          starts[v] = starts[v] or {}
          table.insert(starts[v], st)
        end
      end
      -- each record in exactly two windows of its key, consecutive ones
      local slot = {}
      for _, v in ipairs({ 1, 2, 3, 4, 5, 10, 20, 30 }) do
        local st = starts[v]
        assert.is_truthy(st, "record " .. v .. " in no window")
        table.sort(st)
        assert.are.equal(2, #st, "record " .. v .. " in windows " .. table.concat(st, ","))
        assert.are.equal(100, st[2] - st[1], "record " .. v)
        slot[v] = st[2]
      end
      -- a window holds exactly the records of its key whose slot it covers
      for key, list in pairs({ a = { 1, 2, 3, 4, 5 }, b = { 10, 20, 30 } }) do
        for st, got in pairs(windows[key]) do
          local want = {}
          for _, v in ipairs(list) do
            if slot[v] == st or slot[v] == st + 100 then want[v] = true end
          end
          assert.are.same(want, got, key .. " window at " .. st)
        end
      end
      -- the bursts fell in different slots
      assert.is_true(slot[3] > slot[2] and slot[3] > slot[10] and slot[20] > slot[10])
      assert.is_true(slot[4] > slot[3] and slot[30] > slot[20] and slot[5] > slot[3])
    end)

    it("processing-time sessions close after the gap, at -p " .. p, function()
      local r, lines = run_job(SLOW .. [[
local s = bursts({ { "a", 0, 1 }, { "a", 0, 2 }, { "b", 0, 10 }, { "a", 0, 3 }, { wait = "after3" },
                   { wait = "after10" }, { "a", 0, 4 }, { "b", 0, 20 }, { "a", 0, 5 },
                   { wait = "after5" }, { wait = "after20" } })
marked(s:key_by(1):window(cstream.processing_time_session_windows(1000)):process(listing), "ps")
  :map(function(v) return { v[1], v[2], v[4] - v[3] >= 1000, v[5] } end):print()
]], p)
      ok(r)
      assert.are.same({ "(ps,a,true,1 2 3)", "(ps,a,true,4 5)", "(ps,b,true,10)", "(ps,b,true,20)" },
                      lines)
    end)
  end
end)

describe("window argument errors", function()
  after_each(h.cleanup)

  local CASES = {
    { "cstream.tumbling_event_time_windows(0)", "tumbling_event_time_windows: the size must be positive, got 0" },
    { "cstream.tumbling_event_time_windows(-5)", "tumbling_event_time_windows: the size must be positive, got %-5" },
    { "cstream.tumbling_event_time_windows(1.5)",
      "tumbling_event_time_windows: the size must be an integer number of milliseconds, got 1.5" },
    { "cstream.tumbling_event_time_windows(10, 10)",
      "tumbling_event_time_windows: the offset must be smaller than the size in absolute value %(|offset| < 10%), got 10" },
    { "cstream.sliding_event_time_windows(-10, 5)", "sliding_event_time_windows: the size must be positive, got %-10" },
    { "cstream.sliding_event_time_windows(10, 0)", "sliding_event_time_windows: the slide must be positive, got 0" },
    { "cstream.event_time_session_windows(0)", "event_time_session_windows: the gap must be positive, got 0" },
    { "cstream.event_time_session_windows(-1)", "event_time_session_windows: the gap must be positive, got %-1" },
    { "cstream.tumbling_processing_time_windows(0)", "tumbling_processing_time_windows: the size must be positive, got 0" },
    { "cstream.sliding_processing_time_windows(10, -2)",
      "sliding_processing_time_windows: the slide must be positive, got %-2" },
    { "cstream.processing_time_session_windows(-3)", "processing_time_session_windows: the gap must be positive, got %-3" },
    { "env:from_elements(1):window(cstream.tumbling_event_time_windows(10))",
      "window%(%) needs a keyed stream %(use key_by first%)" },
    { "env:from_elements(1):count_window(5)", "count_window%(%) needs a keyed stream %(use key_by first%)" },
    { "env:from_elements(1):key_by(1):count_window(0)", "count_window: the size must be a positive integer, got 0" },
    { "env:from_elements(1):key_by(1):count_window(3, -1)", "count_window: the slide must be a positive integer, got %-1" },
    { "env:from_elements(1):key_by(1):window(60000)", "window: expected a window assigner" },
    { "env:from_elements(1):key_by(1):window(cstream.tumbling_event_time_windows(10)):allowed_lateness(-1)",
      "allowed_lateness: the lateness must be zero or positive, got %-1" },
    { "env:from_elements(1):key_by(1):window(cstream.tumbling_event_time_windows(10)):side_output_late_data('late')",
      "side_output_late_data: expected an output tag" },
    { "env:from_elements(1):key_by(1):window(cstream.tumbling_event_time_windows(10)):reduce(42)",
      "reduce: expected a function or a table with a 'reduce' method, got number" },
    { "env:from_elements(1):key_by(1):window(cstream.tumbling_event_time_windows(10)):process({})",
      "process: the table passed has no 'process' method" },
    { "env:from_elements(1):key_by(1):window(cstream.event_time_session_windows(10))" ..
      ":aggregate({ create_accumulator = function() return 0 end, add = function(v, a) return a end, " ..
      "get_result = function(a) return a end })",
      "aggregate: the aggregate function has no 'merge' function %(session windows merge accumulators%)" },
  }

  it("names the function, the value and the caller's line", function()
    for _, c in ipairs(CASES) do
      local job = h.write_job("local cstream = require('cstream')\nlocal env = cstream.get_execution_environment()\n" ..
                              "local x = " .. c[1] .. "\n")
      local r = h.run({ "-p", "1", job })
      assert.are_not.equal(0, r.code, c[1])
      assert.matches("job%.lua:3: " .. c[2], r.stderr, 1, false, c[1])
    end
  end)
end)

-- ------------------------------------------------- checkpoints and restore --

-- Windows over lines "k<key>,<ts>,<value>" of a file read in order (one
-- source subtask, so timestamps only grow): a tumbling process window
-- keeping every element, a sliding aggregate keeping an accumulator,
-- session windows of a 500 ms gap (every record merges into its key's open
-- session) over the records outside the hole [5000n + 4000, 5000n + 5000),
-- tumbling count windows of 100 and sliding count windows of 50 every 25
-- (a reduce over the elements the evictor keeps). The process windows
-- report their elements' count, sum, sum of squared timestamps and whether
-- they came in order: a lost or replayed record changes them. arg[2]:
-- sleep 1 ms every that many records.
local KILL_JOB = [[
local cstream = require("cstream")
local env = cstream.get_execution_environment()
local input, throttle = arg[1], tonumber(arg[2])
local seen = 0
local stamped = env:read_text_file(input):set_parallelism(1)
  :map(function(line)
    seen = seen + 1
    if seen % throttle == 0 then cstream.sleep(1) end
    local k, ts, v = line:match("^(k%d+),(%d+),(%d+)$")
    return { k, tonumber(ts), tonumber(v) }
  end):uid("parse"):set_parallelism(1)
  :assign_timestamps_and_watermarks(
    cstream.watermark_strategy.for_monotonous_timestamps(function(r) return r[2] end))
  :uid("timestamps"):set_parallelism(1)
local keyed = stamped:key_by(1)
local function summary(els)
  local sum, sq, ordered, prev = 0, 0, true, nil
  for _, e in ipairs(els) do
    sum, sq = sum + e[3], sq + e[2] * e[2]
    if prev and e[2] <= prev then ordered = false end
    prev = e[2]
  end
  return #els, sum, sq, ordered
end
keyed:window(cstream.tumbling_event_time_windows(1000)):process(function(key, ctx, els, out)
  out:collect({ "tumbling", key, ctx:window().start, summary(els) })
end):uid("tumbling"):print()
stamped:filter(function(r) return r[2] // 1000 % 5 ~= 4 end):uid("holes"):set_parallelism(1)
  :key_by(1)
  :window(cstream.event_time_session_windows(500)):process(function(key, ctx, els, out)
    out:collect({ "session", key, ctx:window().start, ctx:window().finish, summary(els) })
  end):uid("session"):print()
keyed:count_window(100):process(function(key, ctx, els, out)
  out:collect({ "count", key, els[1][2], summary(els) })
end):uid("count"):print()
keyed:count_window(50, 25):reduce(function(a, b)
  return { a[1], math.max(a[2], b[2]), a[3] + b[3], (a[4] or 1) + 1 }
end, function(key, ctx, els, out)
  out:collect({ "countslide", key, els[1][2], els[1][4] or 1, els[1][3] })
end):uid("countslide"):print()
keyed:window(cstream.sliding_event_time_windows(2000, 1000)):aggregate({
  create_accumulator = function() return { 0, 0 } end,
  add = function(v, acc) return { acc[1] + 1, acc[2] + v[3] } end,
  get_result = function(acc) return acc end,
  merge = function(a, b) return { a[1] + b[1], a[2] + b[2] } end,
}, function(key, ctx, els, out)
  out:collect({ "sliding", key, ctx:window().start, els[1][1], els[1][2] })
end):uid("sliding"):print()
env:execute("windows")
]]

local KILL_RECORDS = h.sanitized() and 60000 or 200000
local KILL_KEYS = 20

-- Writes the input; returns its path and the line every window must
-- print, by "<label>,<key>,<start>".
local function kill_input(dir, n)
  local path = dir .. "/input.txt"
  assert(os.execute(string.format(
    "awk 'BEGIN { for (i = 1; i <= %d; i++) print \"k\" (i %% %d) \",\" i \",\" (i %% 7) }' > %s",
    n, KILL_KEYS, h.quote(path))))
  local tumbling, sliding = {}, {}
  for i = 1, n do
    local k, v = "k" .. (i % KILL_KEYS), i % 7
    local id = k .. "," .. (i // 1000 * 1000)
    local t = tumbling[id] or { 0, 0, 0 }
    tumbling[id] = { t[1] + 1, t[2] + v, t[3] + i * i }
    for _, start in ipairs({ i // 1000 * 1000, i // 1000 * 1000 - 1000 }) do
      local sid = k .. "," .. start
      local s = sliding[sid] or { 0, 0 }
      sliding[sid] = { s[1] + 1, s[2] + v }
    end
  end
  -- per key: its open session, its count window and its last 50 records
  local sessions, counts, last50, expected = {}, {}, {}, {}
  local function close_session(k)
    local s = sessions[k]
    expected["session," .. k .. "," .. s.start] = string.format("(session,%s,%d,%d,%d,%d,%d,true)",
      k, s.start, s.last + 500, s.n, s.sum, s.sq)
  end
  for i = 1, n do
    local k, v = "k" .. (i % KILL_KEYS), i % 7
    if i // 1000 % 5 ~= 4 then
      local s = sessions[k]
      if s and i - s.last > 500 then close_session(k) s = nil end
      if not s then s = { start = i, n = 0, sum = 0, sq = 0 } sessions[k] = s end
      s.last, s.n, s.sum, s.sq = i, s.n + 1, s.sum + v, s.sq + i * i
    end
    local c = counts[k] or { first = i, n = 0, sum = 0, sq = 0 }
    c.n, c.sum, c.sq = c.n + 1, c.sum + v, c.sq + i * i
    counts[k] = c
    if c.n == 100 then
      expected["count," .. k .. "," .. c.first] = string.format("(count,%s,%d,100,%d,%d,true)",
        k, c.first, c.sum, c.sq)
      counts[k] = nil
    end
    local l = last50[k] or { seen = 0 }
    l.seen = l.seen + 1
    l[(l.seen - 1) % 50 + 1] = v
    last50[k] = l
    if l.seen % 25 == 0 then
      local sum = 0
      for j = 1, math.min(l.seen, 50) do sum = sum + l[j] end
      expected["countslide," .. k .. "," .. i] = string.format("(countslide,%s,%d,%d,%d)",
        k, i, math.min(l.seen, 50), sum)
    end
  end
  for k in pairs(sessions) do close_session(k) end
  for k, c in pairs(counts) do error("the input leaves count window " .. k .. " unfinished") end
  for id, t in pairs(tumbling) do
    expected["tumbling," .. id] = string.format("(tumbling,%s,%d,%d,%d,true)", id, t[1], t[2], t[3])
  end
  for id, s in pairs(sliding) do
    expected["sliding," .. id] = string.format("(sliding,%s,%d,%d)", id, s[1], s[2])
  end
  return path, expected
end

-- Checks the outputs of the runs: every window printed, each exactly what
-- the input makes it, none twice in one run. (The print sink is
-- at-least-once: a window that fired after the last checkpoint before a
-- kill fires again, with the same contents, in the next run.)
local function assert_windows(outputs, expected)
  local seen, problems = {}, {}
  for run, out in ipairs(outputs) do
    local this_run = {}
    for line in out:gmatch("[^\n]+") do
      line = line:gsub("^%d+> ", "")
      local id = line:match("^%((%a+,k%d+,%-?%d+),")
      if id == nil or expected[id] == nil then
        problems[#problems + 1] = "run " .. run .. ": unexpected line " .. line
      elseif expected[id] ~= line then
        problems[#problems + 1] = string.format("run %d: %s, expected %s", run, line, expected[id])
      elseif this_run[id] then
        problems[#problems + 1] = string.format("run %d: %s printed twice", run, line)
      end
      if id then this_run[id], seen[id] = true, true end
      if #problems >= 10 then break end
    end
  end
  for id, line in pairs(expected) do
    if not seen[id] and #problems < 10 then problems[#problems + 1] = "never printed: " .. line end
  end
  assert(#problems == 0, table.concat(problems, "\n"))
end

describe("windows across a SIGKILL", function()
  after_each(h.cleanup)

  -- The spec sets its backends itself; the RocksDB run of ctest skips it.
  if os.getenv("CSTREAM_SPEC_BACKEND") then return end

  local function backend_flags(backend, dir)
    local flags = { "--state-backend", backend, "--checkpoint-interval", "100ms",
                    "--checkpoint-dir", dir .. "/chk", "-D", "pipeline.auto-watermark-interval=20ms" }
    if backend == "rocksdb" then
      os.execute("mkdir -p " .. h.quote(dir .. "/rocksdb-work"))
      flags[#flags + 1] = "-D"
      flags[#flags + 1] = "state.backend.rocksdb.localdir=" .. dir .. "/rocksdb-work"
    end
    return flags
  end

  for i, case in ipairs({ { "filesystem", { 2, 1, 2 } }, { "rocksdb", { 1, 2, 1 } } }) do
    local backend, parallelisms = case[1], case[2]
    it(backend .. ": open windows are checkpointed; killed twice and restored at -p " ..
       table.concat(parallelisms, ", then -p ") .. ", every window fires with its exact contents", function()
      local dir = h.tmpdir()
      local input, expected = kill_input(dir, KILL_RECORDS)
      local job = h.write_job(KILL_JOB)
      math.randomseed(4000 + i)
      local outputs, last_restored = {}, 0
      for run, p in ipairs(parallelisms) do
        local args = { "-p", tostring(p) }
        for _, f in ipairs(backend_flags(backend, dir)) do args[#args + 1] = f end
        if run > 1 then args[#args + 1] = "--restore" args[#args + 1] = "latest" end
        for _, a in ipairs({ job, input, "50" }) do args[#args + 1] = a end
        local err
        if run < #parallelisms then
          local proc = h.spawn({ h.bin(), table.unpack(args) }, { env = "CSTREAM_VERBOSE=1" })
          local done = h.wait_for(function()
            local e = h.read_file(proc.stderr) or ""
            if e:match("checkpoint %d+ completed") then return true end
            if h.read_file(proc.codefile) then return true end
          end, 60)
          assert(done, "no checkpoint completed:\n" .. (h.read_file(proc.stderr) or ""))
          h.sleep(math.random(50, 400) / 1000)
          h.signal(proc, "KILL")
          local code = h.wait(proc, 30)
          err = h.read_file(proc.stderr) or ""
          assert(code == 137, "run " .. run .. " ended (" .. tostring(code) ..
                 ") before it was killed:\n" .. err)
          outputs[run] = h.read_file(proc.stdout) or ""
        else
          local r = h.run(args, { env = "CSTREAM_VERBOSE=1", timeout = 300 })
          assert.are.equal(0, r.code, r.stderr)
          err, outputs[run] = r.stderr, r.stdout
        end
        if run > 1 then
          local n = tonumber(err:match("restoring job 'windows' from checkpoint (%d+) %("))
          assert(n and n > last_restored, "run " .. run .. " did not restore a newer checkpoint:\n" .. err)
          last_restored = n
        end
      end
      assert_windows(outputs, expected)
    end)
  end
end)
