-- Limits that fail clearly: a line longer than source.max-line-length
-- (read_text_file, socket_text_stream), a record larger than
-- pipeline.max-record-size when it is encoded for another subtask, and a
-- worker's Lua state past taskmanager.memory.lua.max. Each fails the job
-- with exit 1 and a message naming the operator and, where there is one,
-- the record or where the line starts; never an abort or a hang. The
-- limits are set small with -D so the specs are fast.
local h = require("helpers")

local HEADER = [[
local cstream = require("cstream")
local env = cstream.get_execution_environment()
]]

-- Sums the lengths of the lines of the file (or socket) in arg per line.
local LENGTHS = HEADER .. [[
local src = arg[2] and env:socket_text_stream(arg[1], tonumber(arg[2])) or env:read_text_file(arg[1])
src:map(function(l) return { l:sub(1, 8), #l } end)
  :key_by(1):sum(2):print()
env:execute("lengths")
]]

local function escape(s) return (s:gsub("[%p]", "%%%0")) end

-- Asserts that a run failed with exit 1 and no crash, and returns stderr.
local function assert_failed(r)
  assert.are.equal(1, r.code, "exit " .. tostring(r.code) .. ":\n" .. r.stderr .. r.stdout)
  assert.is_nil(r.stderr:match("unprotected Lua error"), r.stderr)
  assert.is_nil(r.stderr:match("Aborted"), r.stderr)
  return r.stderr
end

-- An input whose line 3 is n "x" characters (with a newline when nl).
local function long_line_input(dir, n, nl)
  return h.write_file(dir .. "/in.txt", "a\nbb\n" .. string.rep("x", n) .. (nl and "\nd\n" or ""))
end

local function start_lineserver(dir, path)
  local portfile = dir .. "/port"
  local server = h.spawn({ h.tool("cs_lineserver"), "--file", path, "--port-file", portfile, "--timeout", "30" })
  local port = h.wait_for(function()
    local f = io.open(portfile)
    if not f then return nil end
    local p = f:read("n")
    f:close()
    return p
  end, 10)
  assert.is_truthy(port, "the line server did not start")
  return server, port
end

describe("source.max-line-length", function()
  after_each(h.cleanup)

  for _, p in ipairs({ "1", "2" }) do
    it("read_text_file at -p " .. p .. ": a longer line fails the job naming the source, " ..
       "file, line and its start", function()
      local dir = h.tmpdir()
      local input = long_line_input(dir, 3000, true)
      local job = h.write_job(LENGTHS)
      local err = assert_failed(h.run({ "-p", p, "-D", "source.max-line-length=1kb", job, input },
                                      { timeout = 60 }))
      assert.matches("error in operator 'Source: read_text_file " .. escape(input) .. "' %(id source_file_1, " ..
                     "subtask %d/" .. p .. "%)", err)
      assert.matches("read_text_file: line 3 of '" .. escape(input) .. "' %(at byte 5%) is longer than " ..
                     "source%.max%-line%-length %(1024 bytes%); it starts \"xxxxxxxxxx+%.%.%.\"", err)
    end)
  end

  it("read_text_file: a last line without a newline is held to it too; a line at the limit is read", function()
    local dir = h.tmpdir()
    local job = h.write_job(LENGTHS)
    local err = assert_failed(h.run({ "-p", "1", "-D", "source.max-line-length=1000", job,
                                      long_line_input(dir, 1001, false) }))
    assert.matches("line 3 of '[^']*' %(at byte 5%) is longer than source%.max%-line%-length %(1000 bytes%)", err)
    local r = h.run({ "-p", "1", "-D", "source.max-line-length=1000", job, long_line_input(dir, 1000, false) })
    assert.are.equal(0, r.code, r.stderr)
    assert.matches("%(xxxxxxxx,1000%)", r.stdout)
  end)

  it("read_text_file: a line of several MiB against a 1 MiB limit fails at once, without reading it all", function()
    local dir = h.tmpdir()
    local input = dir .. "/in.txt"
    assert(os.execute("{ echo a; head -c 8388608 /dev/zero | tr '\\0' y; echo; } > " .. h.quote(input)))
    local err = assert_failed(h.run({ "-p", "1", "-D", "source.max-line-length=1mb", h.write_job(LENGTHS), input },
                                    { timeout = 60 }))
    assert.matches("line 2 of '[^']*' %(at byte 2%) is longer than source%.max%-line%-length %(1048576 bytes%); " ..
                   "it starts \"yyyy", err)
  end)

  it("socket_text_stream: a longer line fails the job naming the source, the peer and the line number", function()
    local dir = h.tmpdir()
    local input = long_line_input(dir, 5000, true)
    local server, port = start_lineserver(dir, input)
    local err = assert_failed(h.run({ "-p", "2", "-D", "source.max-line-length=1kb", h.write_job(LENGTHS),
                                      "127.0.0.1", tostring(port) }, { timeout = 60 }))
    h.kill(server)
    assert.matches("error in operator 'Source: socket_text_stream' %(id source_socket_1, subtask 1/1%)", err)
    assert.matches("socket_text_stream: line 3 from 127%.0%.0%.1:" .. port .. " is longer than " ..
                   "source%.max%-line%-length %(1024 bytes%); it starts \"xxxx+%.%.%.\"", err)
  end)

  it("is a size: a bad value is refused naming the key; --help-config lists the three limits", function()
    local r = h.run({ "-D", "source.max-line-length=lots", h.write_job(LENGTHS), "x" })
    assert.are.equal(2, r.code)
    assert.matches("invalid value 'lots' for 'source%.max%-line%-length': expected a size", r.stderr)
    r = h.run({ "--help-config" })
    assert.are.equal(0, r.code, r.stderr)
    assert.matches("source%.max%-line%-length\n    size, default 64 mb\n", r.stdout)
    assert.matches("pipeline%.max%-record%-size\n    size, default 128 mb\n", r.stdout)
    assert.matches("taskmanager%.memory%.lua%.max\n    size, default 1 gb\n", r.stdout)
  end)
end)

describe("pipeline.max-record-size", function()
  after_each(h.cleanup)

  it("a record larger when encoded for another subtask fails the job naming the operator, " ..
     "the record and the receiver", function()
    local dir = h.tmpdir()
    local job = h.write_job(HEADER .. [[
env:read_text_file(arg[1])
  :map(function(l) return { "k", l } end):name("wrap")
  :key_by(1)
  :map({ map = function(self, v) return #v[2] end }):name("measure")
  :print()
env:execute("records")
]])
    local input = long_line_input(dir, 3000, true)
    local err = assert_failed(h.run({ "-p", "2", "-D", "pipeline.max-record-size=2kb", job, input }))
    assert.matches("error in operator 'wrap' %(id map_2, subtask %d/2%) on record %(k,xxxxxxxx+%.%.%.:\n" ..
                   "the record cannot be sent to 'measure': it is 30%d%d bytes encoded, larger than " ..
                   "pipeline%.max%-record%-size %(2048 bytes%)", err)
    -- the same records under a larger limit go through
    local r = h.run({ "-p", "2", "-D", "pipeline.max-record-size=4kb", job, input })
    assert.are.equal(0, r.code, r.stderr)
    assert.are.same({ "1", "1", "2", "3000" }, h.sorted((function()
      local t = {}
      for _, l in ipairs(h.lines(r.stdout)) do t[#t + 1] = l:gsub("^%d+> ", "") end
      return t
    end)()))
  end)
end)

describe("taskmanager.memory.lua.max", function()
  after_each(h.cleanup)

  it("user code that holds more Lua memory fails the job naming the operator, the record and the key, " ..
     "without an abort", function()
    local dir = h.tmpdir()
    local input = h.write_file(dir .. "/in.txt", "a\nb\nc\nd\ne\nf\n")
    local job = h.write_job(HEADER .. [[
local kept = {}
env:read_text_file(arg[1])
  :flat_map(function(l, out)
    for i = 1, 20000 do kept[#kept + 1] = l .. string.rep("m", 100) .. i end
    out:collect(l)
  end):name("hoard")
  :print()
env:execute("hoard")
]])
    local err = assert_failed(h.run({ "-p", "1", "-D", "taskmanager.memory.lua.max=4mb", job, input },
                                    { timeout = 60 }))
    assert.matches("error in operator 'hoard' %(id flat_map_2, subtask 1/1%) on record %a:\n" ..
                   "out of memory: this worker's Lua state holds %d+ bytes and may hold at most 4194304 " ..
                   "%(taskmanager%.memory%.lua%.max%)", err)
    -- 0 turns the cap off
    local r = h.run({ "-p", "1", "-D", "taskmanager.memory.lua.max=0", job, input })
    assert.are.equal(0, r.code, r.stderr)
  end)

  it("a Lua source's run() is held to it too", function()
    local job = h.write_job(HEADER .. [[
env:add_source({
  run = function(self, ctx)
    local kept = {}
    for i = 1, 1e8 do
      kept[i] = "row " .. i
      if i % 1000 == 0 then ctx:collect(i) end
    end
  end,
}):name("generator")
  :filter(function(v) return false end)
  :print()
env:execute("generator")
]])
    local err = assert_failed(h.run({ "-p", "1", "-D", "taskmanager.memory.lua.max=4mb", job }, { timeout = 60 }))
    assert.matches("error in operator 'generator' %(id source_custom_1, subtask 1/1%):\nout of memory: " ..
                   "this worker's Lua state holds %d+ bytes and may hold at most 4194304", err)
  end)

  it("in open(), with checkpoints and restarts, at -p 2: every attempt fails the same way, the job exits 1", function()
    local dir = h.tmpdir()
    local input = h.write_file(dir .. "/in.txt", "a\nb\n")
    local job = h.write_job(HEADER .. [[
env:read_text_file(arg[1])
  :key_by(function(l) return l end)
  :process({
    open = function(self, ctx)
      self.big = {}
      for i = 1, 1e7 do self.big[i] = { i } end
    end,
    process_element = function(self, v, ctx, out) out:collect(v) end,
  }):name("greedy")
  :print()
env:execute("greedy")
]])
    local err = assert_failed(h.run({ "-p", "2", "--checkpoint-interval", "100ms",
                                      "-D", "restart-strategy.fixed-delay.delay=10ms",
                                      "-D", "taskmanager.memory.lua.max=8mb", job, input }, { timeout = 60 }))
    assert.matches("error in operator 'greedy' %(id process_%d+, subtask %d/2%):\nin open%(%): out of memory: this worker's " ..
                   "Lua state holds %d+ bytes and may hold at most 8388608", err)
    assert.matches("attempt 3 of 3", err)
  end)
end)
