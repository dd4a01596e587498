-- The dataflow runtime as a job author sees it: word counts over files and
-- sockets at several parallelisms, key partitioning, Flink's print format,
-- backpressure and clean stops.
local h = require("helpers")

local HEADER = [[
local cstream = require("cstream")
local env = cstream.get_execution_environment()
]]

-- The running counts an independent reference computes for a word count.
local function reference_counts(text, pattern)
  local counts, out = {}, {}
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    line = line:gsub("\r$", "")
    for w in line:gmatch(pattern) do
      counts[w] = (counts[w] or 0) + 1
      out[#out + 1] = string.format("(%s,%d)", w, counts[w])
    end
  end
  return out
end

-- Splits "2> (a,1)" into 2 and "(a,1)".
local function strip(line)
  local n, rest = line:match("^(%d+)> (.*)$")
  return rest or line, tonumber(n)
end

local function words_file(dir, nlines)
  local words = { "flink", "lua", "state", "keyed", "rocksdb", "spark", "checkpoint",
                  "barrier", "stream", "window", "sink", "source" }
  local lines, seed = {}, 7
  for i = 1, nlines do
    local parts = {}
    for j = 1, 1 + (i % 5) do
      seed = (seed * 1103515245 + 12345) % 2147483648
      parts[#parts + 1] = words[seed % #words + 1] .. (seed % 3 == 0 and tostring(i % 17) or "")
    end
    lines[#lines + 1] = table.concat(parts, ",")
  end
  local text = table.concat(lines, "\n") .. "\n"
  local path = dir .. "/words.txt"
  h.write_file(path, text)
  return path, text
end

describe("dataflow", function()
  after_each(h.cleanup)

  it("counts words from a file at -p 1 exactly as a reference does", function()
    local dir = h.tmpdir()
    local path, text = words_file(dir, 2000)
    local r = h.run({ "-p", "1", h.src("examples/file_word_count.lua"), path })
    assert.are.equal(0, r.code, r.stderr)
    assert.are.same(reference_counts(text, "[^,%s]+"), h.lines(r.stdout))
  end)

  it("counts words at -p 2: same multiset, prefixes, each key in order on one subtask", function()
    local dir = h.tmpdir()
    local path, text = words_file(dir, 2000)
    local r = h.run({ "-p", "2", h.src("examples/file_word_count.lua"), path })
    assert.are.equal(0, r.code, r.stderr)
    local got, by_key, subtask_of = {}, {}, {}
    for _, line in ipairs(h.lines(r.stdout)) do
      local rec, n = strip(line)
      assert.is_truthy(n == 1 or n == 2, "missing prefix: " .. line)
      got[#got + 1] = rec
      local w, c = rec:match("^%((.*),(%d+)%)$")
      by_key[w] = by_key[w] or {}
      table.insert(by_key[w], tonumber(c))
      assert.is_true(subtask_of[w] == nil or subtask_of[w] == n, "key on two subtasks: " .. w)
      subtask_of[w] = n
    end
    assert.are.same(h.sorted(reference_counts(text, "[^,%s]+")), h.sorted(got))
    for w, counts in pairs(by_key) do
      for i, c in ipairs(counts) do assert.are.equal(i, c, "counts of " .. w .. " out of order") end
    end
  end)

  it("reads the example's own input", function()
    local r = h.run({ "-p", "1", h.src("examples/file_word_count.lua") })
    assert.are.equal(0, r.code, r.stderr)
    assert.are.same(reference_counts(h.read_file(h.src("examples/data/words.txt")), "[^,%s]+"),
                    h.lines(r.stdout))
  end)

  it("counts words served over a loopback socket", function()
    local dir = h.tmpdir()
    local path, text = words_file(dir, 500)
    local portfile = dir .. "/port"
    local server = h.spawn({ h.tool("cs_lineserver"), "--file", path, "--port-file", portfile })
    local port = h.wait_for(function()
      local f = io.open(portfile)
      if not f then return nil end
      local p = f:read("n")
      f:close()
      return p
    end, 10)
    assert.is_truthy(port, "the line server did not start")
    local r = h.run({ "-p", "2", h.src("examples/word_count.lua"), "127.0.0.1", tostring(port) })
    h.kill(server)
    assert.are.equal(0, r.code, r.stderr)
    local got = {}
    for _, line in ipairs(h.lines(r.stdout)) do got[#got + 1] = (strip(line)) end
    assert.are.same(h.sorted(reference_counts(text, "[^,]+")), h.sorted(got))
  end)

  it("sends every record of a key to one subtask, the same on every run", function()
    local job = h.write_job(HEADER .. [[
local keys = {}
for i = 1, 300 do keys[#keys + 1] = { "k" .. (i % 50), i } end
keys[#keys + 1] = { 1, 0 }
keys[#keys + 1] = { 1.0, 0 }
env:from_collection(keys)
  :key_by(1)
  :process({ process_element = function(self, v, ctx, out)
    out:collect({ tostring(ctx:get_current_key()), ctx:index_of_this_subtask() })
  end })
  :set_parallelism(3)
  :print():set_parallelism(3)
env:execute("partitioning")
]])
    local mappings = {}
    for run = 1, 3 do
      local r = h.run({ "-p", "2", job })
      assert.are.equal(0, r.code, r.stderr)
      local m = {}
      for _, line in ipairs(h.lines(r.stdout)) do
        local rec, prefix = strip(line)
        local k, sub = rec:match("^%((.*),(%d+)%)$")
        assert.are.equal(prefix, tonumber(sub) + 1)
        assert.is_true(m[k] == nil or m[k] == sub, "key " .. k .. " on two subtasks")
        m[k] = sub
      end
      mappings[run] = m
    end
    assert.are.same(mappings[1], mappings[2])
    assert.are.same(mappings[1], mappings[3])
    local used = {}
    for _, sub in pairs(mappings[1]) do used[sub] = true end
    assert.is_true(used["0"] and used["1"] and used["2"], "all three subtasks get keys")
    -- 1 and 1.0 are one key: one line of key "1" per record, on one subtask
    assert.is_truthy(mappings[1]["1"])
  end)

  it("prints values in Flink's format", function()
    local job = h.write_job(HEADER .. [[
env:from_elements({1, 5.0}, {2, 11 / 3}, 1e7, 1e-4, 0.001, -0.0, 42, "text", true,
                  {1, {2, 3}}, {a = 1, b = "x"}, {}, 0/0, 1/0, -1/0, math.mininteger)
  :print()
env:execute("format")
]])
    local r = h.run({ "-p", "1", job })
    assert.are.equal(0, r.code, r.stderr)
    assert.are.same({ "(1,5.0)", "(2,3.6666666666666665)", "1.0E7", "1.0E-4", "0.001",
                      "-0.0", "42", "text", "true", "(1,(2,3))", "{a=1, b=x}", "()",
                      "NaN", "Infinity", "-Infinity", "-9223372036854775808" },
                    h.lines(r.stdout))
  end)

  it("prefixes print with the subtask and the sink identifier", function()
    local job = h.write_job(HEADER .. [[
env:from_elements(1, 2, 3, 4):rebalance():map(function(x) return x end)
  :set_parallelism(2):print("out")
env:execute("prefix")
]])
    local r = h.run({ "-p", "2", job })
    assert.are.equal(0, r.code, r.stderr)
    local lines = h.sorted(h.lines(r.stdout))
    assert.are.same({ "out:1> 1", "out:1> 3", "out:2> 2", "out:2> 4" }, lines)
  end)

  it("supports map, filter, flat_map, reduce, min, max, rebalance and broadcast", function()
    local job = h.write_job(HEADER .. [[
local s = env:from_elements({"a", 3}, {"b", 1}, {"a", 1}, {"b", 7}, {"a", 2})
s:filter(function(v) return v[2] ~= 1 end)
 :map(function(v) return {v[1], v[2] * 10} end)
 :key_by(1):reduce(function(a, b) return {a[1], a[2] + b[2]} end)
 :print("reduce")
s:key_by(1):min(2):print("min")
s:key_by(1):max(2):print("max")
s:broadcast():map(function(v) return v[1] end):set_parallelism(2):print("bc")
env:execute("ops")
]])
    local r = h.run({ "-p", "1", job })
    assert.are.equal(0, r.code, r.stderr)
    local got = {}
    for _, l in ipairs(h.lines(r.stdout)) do
      local id = l:match("^(%a+)")
      got[id] = got[id] or {}
      table.insert(got[id], l)
    end
    assert.are.same({ "reduce> (a,30)", "reduce> (b,70)", "reduce> (a,50)" }, got.reduce)
    assert.are.same({ "min> (a,3)", "min> (b,1)", "min> (a,1)", "min> (b,1)", "min> (a,1)" }, got.min)
    assert.are.same({ "max> (a,3)", "max> (b,1)", "max> (a,3)", "max> (b,7)", "max> (a,3)" }, got.max)
    assert.are.equal(10, #got.bc)
  end)

  it("lets a slow sink hold a fast source back", function()
    local dir = h.tmpdir()
    local progress = dir .. "/progress"
    local job = h.write_job(HEADER .. string.format([[
local N = 200000
env:add_source({ run = function(self, ctx)
  local f = io.open(%q, "w")
  for i = 1, N do
    ctx:collect(i)
    if i %% 500 == 0 then f:seek("set") f:write(string.format("%%09d", i)) f:flush() end
  end
  f:close()
end })
  :rebalance()
  :add_sink({
    open = function(self) self.max_lead = 0 end,
    invoke = function(self, v)
      if v %% 500 == 0 then
        local f = io.open(%q) local p = tonumber(f:read("a")) f:close()
        if p and p - v > self.max_lead then self.max_lead = p - v end
        cstream.sleep(1)
      end
    end,
    close = function(self) print("max lead " .. self.max_lead) end,
  }):set_parallelism(2)
env:execute("backpressure")
]], progress, progress))
    local r = h.run({ "-p", "2", job }, { timeout = 120 })
    assert.are.equal(0, r.code, r.stderr)
    local leads = {}
    for l in r.stdout:gmatch("max lead (%d+)") do leads[#leads + 1] = tonumber(l) end
    assert.are.equal(2, #leads)
    for _, lead in ipairs(leads) do
      -- 16 batches of 512 records per channel, one batch being filled, and
      -- the progress file's granularity: far below the 200000 produced.
      assert.is_true(lead < 2 * 17 * 512 + 1000, "source ran ahead by " .. lead)
    end
  end)

  it("prints a line within the buffer timeout while its worker stays busy", function()
    -- The source never lets the worker idle; one record in ten million is
    -- printed. The line must appear while the job runs, not when 64 KiB of
    -- output have piled up or the job ends.
    local job = h.write_job(HEADER .. [[
env:add_source({ run = function(self, ctx)
    local i = 0
    while not self.cancelled do i = i + 1 ctx:collect(i) end
  end,
  cancel = function(self) self.cancelled = true end })
  :filter(function(v) return v == 1000 end)
  :print()
env:execute("busy")
]])
    local p = h.spawn({ h.bin(), "-p", "1", job })
    local seen = h.wait_for(function() return (h.read_file(p.stdout) or ""):match("1000\n") end, 10)
    local running = h.alive(p)
    h.signal(p, "INT")
    assert.are.equal(0, h.wait(p, 20))
    assert.is_truthy(seen, "the line did not appear while the job ran")
    assert.is_true(running)
  end)

  it("stops an unbounded job cleanly on SIGINT, closing its operators", function()
    local dir = h.tmpdir()
    local job = h.write_job(HEADER .. [[
env:add_source({ run = function(self, ctx)
    local i = 0
    while not self.cancelled do i = i + 1 ctx:collect(i) cstream.sleep(1) end
  end,
  cancel = function(self) self.cancelled = true end })
  :add_sink({ invoke = function(self, v) if v == 5 then print("running") io.stdout:flush() end end,
              close = function(self) print("sink closed") end })
env:execute("unbounded")
]])
    local p = h.spawn({ h.bin(), "-p", "1", job })
    assert.is_truthy(h.wait_for(function() return h.read_file(p.stdout):match("running") end, 20))
    os.execute("kill -INT " .. p.pid)
    local code = h.wait(p, 20)
    assert.are.equal(0, code)
    assert.matches("sink closed", h.read_file(p.stdout))
  end)
end)
