-- Hot reload across time: a job with pending event-time timers (or open
-- windows, or pending processing-time timers) is edited while it runs; the
-- timers registered under the old code fire under the new one (a reloaded
-- on_timer or window function takes effect), and every timer and window
-- fires exactly once, with its contents whole.
local h = require("helpers")

-- A source that counts in its operator state (so a reload, which restarts
-- run(), goes on where it was) and stops when the stop file exists; every
-- record registers an event-time timer 200 ms of event time later, and
-- on_timer prints VERSION with the timer.
local JOB = [[
local cstream = require("cstream")
local env = cstream.get_execution_environment()
local stop, countfile = arg[1], arg[2]
env:add_source({
  initialize_state = function(self, ctx)
    self.pos = ctx:get_operator_state_store():get_list_state(
      cstream.list_state_descriptor("pos"))
    self.i = self.pos:get()[1] or 0
  end,
  snapshot_state = function(self, ctx) self.pos:update({ self.i }) end,
  run = function(self, ctx)
    while true do
      local f = io.open(stop)
      if f then f:close() break end
      self.i = self.i + 1
      ctx:collect({ "k" .. (self.i % 5), self.i * 10 })
      cstream.sleep(3)
    end
    local c = assert(io.open(countfile, "w"))
    c:write(self.i)
    c:close()
  end,
})
  :assign_timestamps_and_watermarks(
    cstream.watermark_strategy.for_monotonous_timestamps(function(v) return v[2] end))
  :key_by(1)
  :process({
    process_element = function(self, v, ctx, out)
      ctx:timer_service():register_event_time_timer(ctx:timestamp() + 200)
    end,
    on_timer = function(self, ts, ctx, out)
      out:collect("VERSION " .. ctx:get_current_key() .. " " .. ts)
    end,
  })
  :print()
env:execute("reload-timers")
]]

-- The same source, into tumbling windows of 100 ms of event time whose
-- process function prints VERSION, the key, the window and its records.
local WINDOW_JOB = JOB:gsub("  :key_by%(1%)\n  :process%(.-\n  }%)\n", [[
  :key_by(1)
  :window(cstream.tumbling_event_time_windows(100))
  :process(function(key, ctx, elements, out)
    local ts = {}
    for i, v in ipairs(elements) do ts[i] = v[2] end
    table.sort(ts)
    out:collect("VERSION " .. key .. " " .. ctx:window().start .. " " .. table.concat(ts, ","))
  end)
]])
-- The same source; every record registers a processing-time timer 300 ms
-- ahead and prints it ("reg VERSION key time"), on_timer prints "fire
-- VERSION key time". Once stopped, the source waits a second, so every
-- timer is due before the input ends.
local PROC_JOB = JOB:gsub("    cstream%.sleep%(3%)\n    end\n", "%0    cstream.sleep(1000)\n", 1)
  :gsub("  :assign_timestamps_and_watermarks%(.-\n  :key_by%(1%)\n  :process%(.-\n  }%)\n", [[
  :key_by(1)
  :process({
    process_element = function(self, v, ctx, out)
      local t = ctx:timer_service():current_processing_time() + 300
      ctx:timer_service():register_processing_time_timer(t)
      out:collect("reg VERSION " .. v[1] .. " " .. t)
    end,
    on_timer = function(self, ts, ctx, out)
      out:collect("fire VERSION " .. ctx:get_current_key() .. " " .. ts .. " " .. ctx:time_domain())
    end,
  })
]])

-- ctest runs this spec again with CSTREAM_SPEC_BACKEND=rocksdb, which
-- h.spawn passes on as --state-backend; RocksDB then keeps its working
-- directories under <dir>/rocksdb, which the spec checks while the job runs.
local ROCKSDB = os.getenv("CSTREAM_SPEC_BACKEND") == "rocksdb"

-- Starts the job at -p 2 with --watch; returns the process.
local function start(dir, job, ...)
  local argv = { h.bin(), "--watch", "-p", "2", "-D", "pipeline.auto-watermark-interval=20" }
  if ROCKSDB then
    os.execute("mkdir -p " .. h.quote(dir .. "/rocksdb"))
    for _, a in ipairs({ "-D", "state.backend.rocksdb.localdir=" .. dir .. "/rocksdb" }) do
      argv[#argv + 1] = a
    end
  end
  for _, a in ipairs({ job, ... }) do argv[#argv + 1] = a end
  return h.spawn(argv)
end

-- On the RocksDB run, asserts that the running job keeps its keyed state in
-- RocksDB databases (each one's CURRENT file) under <dir>/rocksdb.
local function assert_backend(dir)
  if not ROCKSDB then return end
  local l = io.popen("ls " .. h.quote(dir .. "/rocksdb") .. "/*/*/CURRENT 2>/dev/null")
  local found = h.lines(l:read("a"))
  l:close()
  assert.is_true(#found >= 2, "no RocksDB database under " .. dir .. "/rocksdb")
end

-- Starts SOURCE (a job text with VERSION in it) as v1, waits for NEED
-- lines matching PATTERN(version) under v1, reloads it as v2, waits for
-- NEED under v2, checks the backend, stops the job and checks it exits 0.
-- Returns the job's output and the count of records its source sent.
local function reload_run(source, pattern, need)
  local dir = h.tmpdir()
  local job = dir .. "/job.lua"
  local stop, countfile = dir .. "/stop", dir .. "/count"
  h.write_file(job, (source:gsub("VERSION", "v1")))
  local p = start(dir, job, stop, countfile)
  local function out() return h.read_file(p.stdout) or "" end
  local function fired(v)
    local n = 0
    for _ in out():gmatch(pattern(v)) do n = n + 1 end
    return n
  end
  assert.is_truthy(h.wait_for(function() return fired("v1") >= need end, 20),
                   h.read_file(p.stderr))
  h.write_file(job, (source:gsub("VERSION", "v2")))
  assert.is_truthy(h.wait_for(function()
    return (h.read_file(p.stderr) or ""):match("reloaded")
  end, 20), h.read_file(p.stderr))
  assert.is_truthy(h.wait_for(function() return fired("v2") >= need end, 20),
                   h.read_file(p.stderr))
  assert_backend(dir)
  h.write_file(stop, "")
  assert.are.equal(0, h.wait(p, 30), h.read_file(p.stderr))
  return out(), tonumber(h.read_file(countfile))
end

describe("hot reload with event time", function()
  after_each(h.cleanup)

  it("keeps pending timers, and a reloaded on_timer fires them", function()
    local text, n = reload_run(JOB, function(v) return v .. " k%d+ %d+" end, 20)
    local function out() return text end
    assert.is_truthy(n and n > 0)
    -- every record's timer fired exactly once, under one version or the other
    local seen = {}
    for version, k, ts in out():gmatch("(v%d) (k%d+) (%d+)") do
      local key = k .. " " .. ts
      assert.is_nil(seen[key], "timer fired twice: " .. key)
      seen[key] = version
    end
    local missing = 0
    for i = 1, n do
      if not seen["k" .. (i % 5) .. " " .. (i * 10 + 200)] then missing = missing + 1 end
    end
    assert.are.equal(0, missing)
    local count = 0
    for _ in pairs(seen) do count = count + 1 end
    assert.are.equal(n, count)
    -- timers fire in time order, so no v1 timer comes after a v2 one: the
    -- new on_timer took over from the reload on, with nothing lost (above)
    local first_v2, last_v1 = math.maxinteger, 0
    for key, v in pairs(seen) do
      local ts = tonumber(key:match(" (%d+)$"))
      if v == "v2" and ts < first_v2 then first_v2 = ts end
      if v == "v1" and ts > last_v1 then last_v1 = ts end
    end
    assert.is_true(first_v2 > last_v1, "a v1 timer fired after a v2 one")
  end)

  it("keeps open windows, and the reloaded window function fires them", function()
    assert.is_truthy(WINDOW_JOB:match("tumbling_event_time_windows"))
    local text, n = reload_run(WINDOW_JOB, function(v) return v .. " k%d+ %d+ " end, 10)
    local function out() return text end
    -- the windows the records make: key -> start -> the sorted timestamps
    local want = {}
    for i = 1, n do
      local k, ts = "k" .. (i % 5), i * 10
      local start = ts - ts % 100
      want[k .. " " .. start] = want[k .. " " .. start] or {}
      table.insert(want[k .. " " .. start], ts)
    end
    local got, versions = {}, {}
    for version, kw, list in out():gmatch("(v%d) (k%d+ %d+) ([%d,]+)") do
      assert.is_nil(got[kw], "window fired twice: " .. kw)
      got[kw] = list
      versions[version] = (versions[version] or 0) + 1
    end
    for kw, ts in pairs(want) do
      assert.are.equal(table.concat(ts, ","), got[kw], "window " .. kw)
    end
    for kw in pairs(got) do assert.is_truthy(want[kw], "unexpected window " .. kw) end
    assert.is_true(versions.v1 > 0 and versions.v2 > 0)
  end)

  it("keeps pending processing-time timers, and a reloaded on_timer fires them", function()
    assert.is_truthy(PROC_JOB:match("register_processing_time_timer"))
    assert.is_truthy(PROC_JOB:match("cstream%.sleep%(1000%)"))
    local text, n = reload_run(PROC_JOB, function(v) return "fire " .. v .. " k%d+ %d+" end, 20)
    local function out() return text end
    local function count(pattern)
      local c = 0
      for _ in text:gmatch(pattern) do c = c + 1 end
      return c
    end
    assert.is_truthy(n and n > 0)
    -- timers registered (per key and time, deduplicated) and the version
    -- that registered them
    local registered, nreg = {}, 0
    for version, kt in out():gmatch("reg (v%d) (k%d+ %d+)") do
      if not registered[kt] then nreg = nreg + 1 end
      registered[kt] = registered[kt] or version
    end
    assert.are.equal(n, count("reg v%d k%d+ %d+"))
    -- each fired exactly once, in the processing-time domain
    local fired, nfired, carried = {}, 0, 0
    local last_v1, first_v2 = {}, {}
    for version, k, ts, domain in out():gmatch("fire (v%d) (k%d+) (%d+) (%S+)") do
      local kt = k .. " " .. ts
      assert.are.equal("processing_time", domain)
      assert.is_nil(fired[kt], "timer fired twice: " .. kt)
      assert.is_truthy(registered[kt], "timer never registered: " .. kt)
      fired[kt], nfired = version, nfired + 1
      ts = tonumber(ts)
      if version == "v1" then last_v1[k] = math.max(last_v1[k] or 0, ts) end
      if version == "v2" then first_v2[k] = math.min(first_v2[k] or math.maxinteger, ts) end
      -- registered under v1, pending at the reload, fired by v2's on_timer
      if version == "v2" and registered[kt] == "v1" then carried = carried + 1 end
    end
    assert.are.equal(nreg, nfired)
    assert.is_true(carried > 0, "no timer registered before the reload fired after it")
    -- per key, the timers fire in time order, so v2's on_timer took over
    -- from the reload on
    for k, ts in pairs(first_v2) do
      assert.is_true(ts > (last_v1[k] or 0), "a v1 timer of " .. k .. " fired after a v2 one")
    end
  end)
end)
