-- Event time and timers as a job author sees them: timestamps from a
-- watermark strategy, watermarks that fire event-time timers (and all of
-- them at the end of a bounded input), processing-time timers from the
-- worker's loop, per-key deduplicated timers that can be deleted, side
-- outputs, timers kept across a kill and a restore at another
-- parallelism, and the bad inputs of each. ctest runs this spec on the
-- heap backend and again on RocksDB (CSTREAM_SPEC_BACKEND).
local h = require("helpers")

local function run_job(text, args, opts)
  local job = h.write_job(text)
  local argv = { table.unpack(args or {}) }
  argv[#argv + 1] = job
  for _, a in ipairs(opts and opts.script_args or {}) do argv[#argv + 1] = a end
  return h.run(argv, opts)
end

-- Output lines without the "N> " prefix, sorted.
local function rows(out)
  local r = {}
  for _, l in ipairs(h.lines(out)) do r[#r + 1] = (l:gsub("^%d+> ", "")) end
  table.sort(r)
  return r
end

describe("event-time timers", function()
  after_each(h.cleanup)

  -- Per key: a timer at the end of each 10 s bucket a record falls in,
  -- registered twice (deduplicated), one deleted; on_timer reports the
  -- key, the time, the domain and the count of records in the bucket.
  local JOB = [[
local cstream = require("cstream")
local env = cstream.get_execution_environment()
local rows = {}
for i = 1, 200 do rows[#rows + 1] = { "k" .. (i % 5), i * 100 } end
env:from_collection(rows)
  :assign_timestamps_and_watermarks(
    cstream.watermark_strategy.for_bounded_out_of_orderness(500, function(v) return v[2] end))
  :key_by(1)
  :process({
    open = function(self, ctx)
      self.n = ctx:get_map_state(cstream.map_state_descriptor("n"))
    end,
    process_element = function(self, v, ctx, out)
      local ts = ctx:timestamp()
      assert(ts == v[2], "timestamp " .. tostring(ts))
      local t = ts - ts % 10000 + 9999
      self.n:put(t, (self.n:get(t) or 0) + 1)
      local ts_ = ctx:timer_service()
      ts_:register_event_time_timer(t)
      ts_:register_event_time_timer(t)       -- deduplicated
      ts_:register_event_time_timer(t + 5)
      ts_:delete_event_time_timer(t + 5)     -- never fires
    end,
    on_timer = function(self, ts, ctx, out)
      out:collect({ ctx:get_current_key(), ts, ctx:time_domain(), ctx:timestamp(),
                    self.n:get(ts) })
      self.n:remove(ts)
    end,
  })
  :print()
env:execute("timers")
]]

  local expected = {}
  do
    local n = {}
    for i = 1, 200 do
      local k, t = "k" .. (i % 5), i * 100 - (i * 100) % 10000 + 9999
      n[k .. "," .. t] = (n[k .. "," .. t] or 0) + 1
    end
    for kt, c in pairs(n) do
      local k, t = kt:match("^(.-),(.*)$")
      expected[#expected + 1] = string.format("(%s,%s,event_time,%s,%d)", k, t, t, c)
    end
    table.sort(expected)
  end

  for _, p in ipairs({ "1", "2" }) do
    it("fire once per key and time, deleted ones never, at -p " .. p, function()
      local r = run_job(JOB, { "-p", p })
      assert.are.equal(0, r.code, r.stderr)
      assert.are.same(expected, rows(r.stdout))
    end)
  end

  it("fire as the watermark passes them, before the end of the input", function()
    -- The source sleeps between records, so periodic watermarks (every
    -- 20 ms here) come in between: a timer fires before later records.
    local r = run_job([[
local cstream = require("cstream")
local env = cstream.get_execution_environment()
env:add_source({ run = function(self, ctx)
  for i = 1, 6 do ctx:collect({ "a", i * 1000 }) cstream.sleep(60) end
end })
  :assign_timestamps_and_watermarks(
    cstream.watermark_strategy.for_monotonous_timestamps(function(v) return v[2] end))
  :key_by(1)
  :process({
    process_element = function(self, v, ctx, out)
      out:collect("record " .. v[2] .. " at watermark " .. ctx:timer_service():current_watermark())
      if v[2] == 1000 then ctx:timer_service():register_event_time_timer(2500) end
    end,
    on_timer = function(self, ts, ctx, out)
      out:collect("timer " .. ts .. " at watermark " .. ctx:timer_service():current_watermark())
    end,
  }):print()
env:execute("order")
]], { "-p", "1", "-D", "pipeline.auto-watermark-interval=20" })
    assert.are.equal(0, r.code, r.stderr)
    local lines = h.lines(r.stdout)
    -- the first record sees no watermark yet (Flink's Long.MIN_VALUE)
    assert.are.equal("record 1000 at watermark " .. math.mininteger, lines[1])
    local timer_at, rec3_at
    for i, l in ipairs(lines) do
      if l:match("^timer 2500 at watermark 2999$") then timer_at = i end
      if l:match("^record 3000 ") then rec3_at = i end
    end
    assert.is_truthy(timer_at, r.stdout)
    -- watermark 2999 = 3000 - 1: the timer fires after record 3000, before 4000
    assert.is_true(timer_at > rec3_at, r.stdout)
    assert.is_truthy(lines[timer_at + 1]:match("^record 4000"), r.stdout)
  end)

  for _, p in ipairs({ "1", "2" }) do
    it("send late records to a side output, at -p " .. p, function()
      local r = run_job([[
local cstream = require("cstream")
local env = cstream.get_execution_environment()
local late = cstream.output_tag("late")
local main = env:add_source({ run = function(self, ctx)
  for _, t in ipairs({ 1000, 5000, 2000, 9000, 8000, 3000 }) do
    ctx:collect({ "a", t })
    cstream.sleep(50)
  end
end })
  :assign_timestamps_and_watermarks(
    cstream.watermark_strategy.for_bounded_out_of_orderness(1500, function(v) return v[2] end))
  :set_parallelism(1) -- with the source: one assigner sees every record
  :key_by(1)
  :process({
    process_element = function(self, v, ctx, out)
      if ctx:timestamp() <= ctx:timer_service():current_watermark() then
        ctx:output(late, v)
      else
        out:collect_to(late, { "ontime", v[2] })
        out:collect(v[2])
      end
    end,
  })
main:print("main")
main:get_side_output(late):print("side")
env:execute("late")
]], { "-p", p, "-D", "pipeline.auto-watermark-interval=10" })
      assert.are.equal(0, r.code, r.stderr)
      assert.are.same({ "main> 1000", "main> 5000", "main> 8000", "main> 9000",
                        "side> (a,2000)", "side> (a,3000)",
                        "side> (ontime,1000)", "side> (ontime,5000)", "side> (ontime,8000)",
                        "side> (ontime,9000)" },
                      h.sorted(h.lines((r.stdout:gsub("(%a+):%d+> ", "%1> ")))))
    end)

    -- Keys a, b, c take the records 1..40 (a key by i % 3, time 10 i; a
    -- and c land on one subtask at -p 2, b on the other):
    -- process_element sends the odd ones to a side output (ctx:output),
    -- which is keyed again and summed, and registers a timer whose
    -- on_timer reports it to a second side output (out:collect_to).
    it("route records from process_element and on_timer to side outputs, read downstream, at -p " .. p, function()
      local r = run_job([[
local cstream = require("cstream")
local env = cstream.get_execution_environment()
local ODD, FIRED = cstream.output_tag("odd"), cstream.output_tag("fired")
local rows = {}
for i = 1, 40 do rows[i] = { ({ "a", "b", "c" })[i % 3 + 1], i } end
local main = env:from_collection(rows)
  :assign_timestamps_and_watermarks(
    cstream.watermark_strategy.for_monotonous_timestamps(function(v) return v[2] * 10 end))
  :key_by(1)
  :process({
    process_element = function(self, v, ctx, out)
      if v[2] % 2 == 1 then ctx:output(ODD, v) else out:collect({ "main", v[1], v[2] }) end
      ctx:timer_service():register_event_time_timer(ctx:timestamp() + 5)
    end,
    on_timer = function(self, ts, ctx, out)
      out:collect_to(FIRED, { "fired", ctx:get_current_key(), ts })
    end,
  })
main:print()
main:get_side_output(ODD):key_by(1):reduce(function(a, b) return { a[1], a[2] + b[2] } end)
  :map(function(v) return { "odd-sum", v[1], v[2] } end):print()
main:get_side_output(FIRED):print()
env:execute("sides")
]], { "-p", p })
      assert.are.equal(0, r.code, r.stderr)
      local want, sums = {}, {}
      for i = 1, 40 do
        local k = ({ "a", "b", "c" })[i % 3 + 1]
        if i % 2 == 0 then
          want[#want + 1] = string.format("(main,%s,%d)", k, i)
        else
          sums[k] = (sums[k] or 0) + i
          want[#want + 1] = string.format("(odd-sum,%s,%d)", k, sums[k])
        end
        want[#want + 1] = string.format("(fired,%s,%d)", k, i * 10 + 5)
      end
      table.sort(want)
      assert.are.same(want, rows(r.stdout))
      if p == "2" then
        -- the keys are spread over both subtasks of the process function
        local subtasks = {}
        for n in r.stdout:gmatch("(%d+)> %(main,") do subtasks[n] = true end
        assert.is_truthy(subtasks["1"] and subtasks["2"], r.stdout)
      end
    end)
  end
end)

describe("connected streams", function()
  after_each(h.cleanup)

  it("have state and timers shared by both inputs in process(), at -p 1 and -p 2", function()
    local job = [[
local cstream = require("cstream")
local env = cstream.get_execution_environment()
local function stamped(s)
  return s:assign_timestamps_and_watermarks(
    cstream.watermark_strategy.for_monotonous_timestamps(function(v) return v[3] end))
end
local orders = stamped(env:from_elements({ 1, "o1", 1000 }, { 2, "o2", 2000 }, { 3, "o3", 3000 }))
local notes = stamped(env:from_elements({ 2, "n2", 2500 }, { 4, "n4", 4000 }))
orders:connect(notes):key_by(1, 1):process({
  open = function(self, ctx) self.seen = ctx:get_list_state(cstream.list_state_descriptor("seen")) end,
  process_element1 = function(self, v, ctx, out)
    self.seen:add(v[2])
    ctx:timer_service():register_event_time_timer(v[3] + 5000)
  end,
  process_element2 = function(self, v, ctx, out)
    self.seen:add(v[2])
    ctx:timer_service():register_event_time_timer(v[3] + 5000)
  end,
  on_timer = function(self, ts, ctx, out)
    local seen = self.seen:get()
    table.sort(seen)
    out:collect({ ctx:get_current_key(), ts, table.concat(seen, " ") })
  end,
}):print()
env:execute("co")
]]
    for _, p in ipairs({ "1", "2" }) do
      local r = run_job(job, { "-p", p })
      assert.are.equal(0, r.code, r.stderr)
      assert.are.same({ "(1,6000,o1)", "(2,7000,n2 o2)", "(2,7500,n2 o2)", "(3,8000,o3)",
                        "(4,9000,n4)" }, rows(r.stdout))
    end
  end)

  it("need both process methods", function()
    local r = run_job([[
local cstream = require("cstream")
local env = cstream.get_execution_environment()
env:from_elements(1):connect(env:from_elements(2)):process({ process_element1 = print })
  :print()
env:execute("co")
]])
    assert.are.equal(1, r.code)
    assert.matches("job.lua:3: connect(...):process: expected a table with 'process_element1'"
                   .. " and 'process_element2' methods", r.stderr, 1, true)
  end)
end)

describe("idle sources", function()
  after_each(h.cleanup)

  -- Two sources meet in a connected operator: "a" ticks, "b" sends one
  -- record and goes quiet. The downstream watermark is the minimum of the
  -- two, so it only moves on if "b" is declared idle.
  local function job(idleness)
    return [[
local cstream = require("cstream")
local env = cstream.get_execution_environment()
local function src(name, n)
  return env:add_source({ run = function(self, ctx)
    for i = 1, n do ctx:collect({ name, i * 1000 }) cstream.sleep(40) end
    cstream.sleep(600)
  end })
end
local strategy = cstream.watermark_strategy.for_monotonous_timestamps(function(v) return v[2] end)
local b_strategy = ]] .. (idleness and "strategy:with_idleness(" .. idleness .. ")" or "strategy") .. [[

local a = src("a", 12):assign_timestamps_and_watermarks(strategy)
local b = src("b", 1):assign_timestamps_and_watermarks(b_strategy)
a:connect(b):map({ map1 = function(_, v) return v end, map2 = function(_, v) return v end })
  :key_by(1)
  :process({ process_element = function(self, v, ctx, out)
    if v[1] == "a" then out:collect(ctx:timer_service():current_watermark()) end
  end })
  :print()
env:execute("idle")
]]
  end

  local function last_watermark(out)
    local last
    for _, l in ipairs(h.lines(out)) do last = tonumber((l:gsub("^%d+> ", ""))) end
    return last
  end

  it("hold event time back without with_idleness", function()
    local r = run_job(job(nil), { "-p", "1", "-D", "pipeline.auto-watermark-interval=10" })
    assert.are.equal(0, r.code, r.stderr)
    -- b's only record (1000) holds the minimum at 999
    assert.is_true(last_watermark(r.stdout) <= 999, r.stdout)
  end)

  it("let event time go on once declared idle", function()
    local r = run_job(job(100), { "-p", "1", "-D", "pipeline.auto-watermark-interval=10" })
    assert.are.equal(0, r.code, r.stderr)
    assert.is_true(last_watermark(r.stdout) >= 5000, r.stdout)
  end)
end)

describe("processing-time timers", function()
  after_each(h.cleanup)

  it("fire from the worker's loop while the job runs", function()
    local r = run_job([[
local cstream = require("cstream")
local env = cstream.get_execution_environment()
env:add_source({ run = function(self, ctx)
  for i = 1, 3 do ctx:collect({ "k" .. i, i }) end
  cstream.sleep(400)
end })
  :key_by(1)
  :process({
    process_element = function(self, v, ctx, out)
      local ts = ctx:timer_service()
      self.t0 = self.t0 or ts:current_processing_time()
      ts:register_processing_time_timer(ts:current_processing_time() + 50 * v[2])
      ts:register_processing_time_timer(ts:current_processing_time() + 10000) -- deleted
      ts:delete_processing_time_timer(ts:current_processing_time() + 10000)
    end,
    on_timer = function(self, ts, ctx, out)
      local now = ctx:timer_service():current_processing_time()
      out:collect({ ctx:get_current_key(), ctx:time_domain(), now >= ts,
                    ctx:timestamp() == ts })
    end,
  }):print()
env:execute("proc")
]], { "-p", "2" })
    assert.are.equal(0, r.code, r.stderr)
    assert.are.same({ "(k1,processing_time,true,true)", "(k2,processing_time,true,true)",
                      "(k3,processing_time,true,true)" }, rows(r.stdout))
  end)
end)

describe("timers across a kill and a restore", function()
  after_each(h.cleanup)

  -- Every record registers an event-time timer; no watermarks, so they all
  -- fire at the end of the input. The job is killed while running and
  -- restored at another parallelism: every timer fires exactly once.
  local JOB = [[
local cstream = require("cstream")
local env = cstream.get_execution_environment()
env:read_text_file(arg[1])
  :map(function(line)
    local k, t = line:match("^(%w+),(%d+)$")
    return { k, tonumber(t) }
  end):uid("parse")
  :assign_timestamps_and_watermarks(
    cstream.watermark_strategy.no_watermarks(function(v) return v[2] end)):uid("ts")
  :key_by(1)
  :process({
    n = 0,
    process_element = function(self, v, ctx, out)
      self.n = self.n + 1
      if self.n % 10 == 0 then cstream.sleep(1) end
      ctx:timer_service():register_event_time_timer(v[2] - v[2] % 100)
    end,
    on_timer = function(self, ts, ctx, out)
      out:collect(ctx:get_current_key() .. "@" .. ts)
    end,
  }):uid("timers")
  :print()
env:execute("timer-restore")
]]

  it("fire every timer exactly once after a restore at another parallelism", function()
    local dir = h.tmpdir()
    local input = dir .. "/in.txt"
    local f = assert(io.open(input, "w"))
    local want = {}
    local n = h.sanitized() and 6000 or 20000
    for i = 1, n do
      local k, t = "k" .. (i % 37), i * 7
      f:write(k, ",", t, "\n")
      want[k .. "@" .. (t - t % 100)] = true
    end
    f:close()
    local expected = {}
    for kt in pairs(want) do expected[#expected + 1] = kt end
    table.sort(expected)
    local job = h.write_job(JOB)
    local ckpt = dir .. "/ckpt"
    local backend = os.getenv("CSTREAM_SPEC_BACKEND") or "filesystem"
    local p = h.spawn({ h.bin(), "-p", "1", "--state-backend", backend, "--checkpoint-dir", ckpt,
                        "--checkpoint-interval", "50ms", job, input })
    -- wait for a completed checkpoint, then kill it hard
    local ok = h.wait_for_checkpoint(ckpt .. "/timer-restore", 60)
    assert.is_truthy(ok, "no checkpoint completed")
    h.signal(p, "KILL")
    h.wait(p, 10)
    assert.are.equal("", h.read_file(p.stdout), "timers fired before the end of input")
    local r = h.run({ "-p", "2", "--state-backend", backend, "--checkpoint-dir", ckpt,
                      "--restore", "latest", job, input })
    assert.are.equal(0, r.code, r.stderr)
    assert.are.same(expected, rows(r.stdout))
  end)
end)

describe("processing-time timers across a kill and a restore", function()
  after_each(h.cleanup)

  -- 40 keys register a processing-time timer 1.5 s ahead; the source then
  -- idles. Killed after a checkpoint that holds the timers, the job is
  -- restored at -p 2: the timers fire there (late, as Flink fires timers
  -- whose time passed during the outage), once each.
  local JOB = [[
local cstream = require("cstream")
local env = cstream.get_execution_environment()
env:add_source({
  initialize_state = function(self, ctx)
    self.state = ctx:get_operator_state_store():get_list_state(
      cstream.list_state_descriptor("done"))
    self.done = self.state:get()[1] or 0
  end,
  snapshot_state = function(self, ctx) self.state:update({ self.done }) end,
  run = function(self, ctx)
    for i = self.done + 1, 40 do
      ctx:collect("k" .. i)
      self.done = i
    end
    cstream.sleep(tonumber(arg[1]))
  end,
}):uid("src")
  :key_by(function(k) return k end)
  :process({
    process_element = function(self, k, ctx, out)
      local t = ctx:timer_service()
      t:register_processing_time_timer(t:current_processing_time() + 1500)
    end,
    on_timer = function(self, ts, ctx, out)
      out:collect(ctx:get_current_key() .. " " .. ctx:time_domain())
    end,
  }):uid("timers")
  :print()
env:execute("proc-restore")
]]

  it("fire once each after a restore at another parallelism", function()
    local dir = h.tmpdir()
    local job = h.write_job(JOB)
    local ckpt = dir .. "/ckpt"
    local backend = os.getenv("CSTREAM_SPEC_BACKEND") or "filesystem"
    local p = h.spawn({ h.bin(), "-p", "1", "--state-backend", backend, "--checkpoint-dir",
                        ckpt, "--checkpoint-interval", "50ms", job, "5000" })
    local ok = h.wait_for_checkpoint(ckpt .. "/proc-restore", 30)
    assert.is_truthy(ok, "no checkpoint completed")
    h.signal(p, "KILL")
    h.wait(p, 10)
    assert.are.equal("", h.read_file(p.stdout))
    local r = h.run({ "-p", "2", "--state-backend", backend, "--checkpoint-dir", ckpt,
                      "--restore", "latest", job, "2500" })
    assert.are.equal(0, r.code, r.stderr)
    local want = {}
    for i = 1, 40 do want[#want + 1] = "k" .. i .. " processing_time" end
    table.sort(want)
    assert.are.same(want, rows(r.stdout))
  end)
end)

describe("bad input to event time", function()
  after_each(h.cleanup)

  local function job_with(body)
    return [[
local cstream = require("cstream")
local env = cstream.get_execution_environment()
]] .. body .. "\nenv:execute('bad')\n"
  end

  it("a timestamp extractor returning nil names the operator and the record", function()
    local r = run_job(job_with([[
env:from_elements({ "a", 1 }, { "b" })
  :assign_timestamps_and_watermarks(
    cstream.watermark_strategy.for_monotonous_timestamps(function(v) return v[2] end))
  :print()]]))
    assert.are.equal(1, r.code)
    assert.matches("Timestamps/Watermarks", r.stderr, 1, true)
    assert.matches("on record (b)", r.stderr, 1, true)
    assert.matches("the timestamp extractor returned nil", r.stderr, 1, true)
  end)

  it("a timestamp extractor returning a string is an error", function()
    local r = run_job(job_with([[
env:from_elements({ "a", "noon" })
  :assign_timestamps_and_watermarks(
    cstream.watermark_strategy.no_watermarks(function(v) return v[2] end))
  :print()]]))
    assert.are.equal(1, r.code)
    assert.matches("returned string, not a number of milliseconds", r.stderr, 1, true)
    assert.matches("on record (a,noon)", r.stderr, 1, true)
  end)

  it("a timer outside a keyed stream is an error naming the operator", function()
    local r = run_job(job_with([[
env:from_elements(1):process({
  process_element = function(self, v, ctx, out)
    ctx:timer_service():register_event_time_timer(5)
  end,
  on_timer = function() end,
}):name("unkeyed"):print()]]))
    assert.are.equal(1, r.code)
    assert.matches("timers need a keyed stream: operator 'unkeyed'", r.stderr, 1, true)
    assert.matches("job.lua:5:", r.stderr, 1, true)
  end)

  it("a timer without on_timer is an error at registration", function()
    local r = run_job(job_with([[
env:from_elements({ "a", 1 }):key_by(1):process({
  process_element = function(self, v, ctx, out)
    ctx:timer_service():register_processing_time_timer(5)
  end,
}):name("no-handler"):print()]]))
    assert.are.equal(1, r.code)
    assert.matches("operator 'no-handler' has no on_timer method", r.stderr, 1, true)
    assert.matches("on record (a,1)", r.stderr, 1, true)
  end)

  it("a timer time that is not an integer is an error", function()
    local r = run_job(job_with([[
env:from_elements({ "a", 1 }):key_by(1):process({
  process_element = function(self, v, ctx, out)
    ctx:timer_service():register_event_time_timer("soon")
  end,
  on_timer = function() end,
}):print()]]))
    assert.are.equal(1, r.code)
    assert.matches("register_event_time_timer: expected a time in milliseconds", r.stderr, 1, true)
  end)

  it("strategies check their arguments at the caller's line", function()
    local cases = {
      { "cstream.watermark_strategy.for_bounded_out_of_orderness(-1, function(v) return v end)",
        "for_bounded_out_of_orderness: expected a non-negative number of milliseconds, got -1" },
      { "cstream.watermark_strategy.for_monotonous_timestamps(function(v) return v end):with_idleness(0)",
        "with_idleness: expected a positive number of milliseconds, got 0" },
      { "cstream.watermark_strategy.for_monotonous_timestamps(42)",
        "for_monotonous_timestamps: expected a timestamp extractor" },
      { "env:from_elements(1):assign_timestamps_and_watermarks({})",
        "assign_timestamps_and_watermarks: expected a strategy" },
      { "env:from_elements(1):get_side_output('late')",
        "get_side_output: expected a tag from cstream.output_tag(name)" },
      { "cstream.output_tag('')", "output_tag: expected a tag name" },
    }
    for _, c in ipairs(cases) do
      local r = run_job(job_with("local x = " .. c[1] .. "\nenv:from_elements(1):print()"))
      assert.are.equal(1, r.code, c[1])
      assert.matches("job.lua:3: " .. c[2], r.stderr, 1, true)
    end
  end)

  it("ctx:output with something that is not a tag is an error", function()
    local r = run_job(job_with([[
env:from_elements(1):process(function(v, ctx, out) ctx:output(7, v) end):print()]]))
    assert.are.equal(1, r.code)
    assert.matches("output: expected an output tag from cstream.output_tag(name), got number",
                   r.stderr, 1, true)
  end)
end)
