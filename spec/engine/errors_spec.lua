-- Bad input: every mistake a job author can make gets a clear message that
-- names the file, line, operator and record, and a non-zero exit; nothing
-- crashes or hangs.
local h = require("helpers")

local function run(script, flags)
  local job = h.write_job(script)
  local args = flags or { "-p", "1" }
  args[#args + 1] = job
  return h.run(args, { timeout = 60 })
end

local HEADER = [[
local cstream = require("cstream")
local env = cstream.get_execution_environment()
]]

describe("bad input", function()
  after_each(h.cleanup)

  it("reports a syntax error with file and line", function()
    local r = run(HEADER .. "env:from_elements(1):map(function(x) return x +* 2 end):print()\n")
    assert.are.equal(1, r.code)
    assert.matches("job%.lua:3: unexpected symbol near '%*'", r.stderr)
  end)

  it("reports a runtime error at the top level with a traceback", function()
    local r = run(HEADER .. "local t = nil\nprint(t.x)\n")
    assert.are.equal(1, r.code)
    assert.matches("job%.lua:4: attempt to index a nil value", r.stderr)
    assert.matches("stack traceback", r.stderr)
  end)

  it("reports a script that never calls execute", function()
    local r = run(HEADER .. "env:from_elements(1):print()\n")
    assert.are.equal(1, r.code)
    assert.matches("never called env:execute%(%)", r.stderr)
  end)

  it("reports a job without a sink", function()
    local r = run(HEADER .. "env:from_elements(1):map(function(x) return x end)\nenv:execute('x')\n")
    assert.are.equal(1, r.code)
    assert.matches("job%.lua:4: execute: the job has no sink", r.stderr)
  end)

  it("reports a script whose plan differs between workers", function()
    local dir = h.tmpdir()
    local counter = dir .. "/runs"
    local r = run(HEADER .. string.format([[
local f = io.open(%q, "a+"); local n = #f:read("a"); f:write("x"); f:close()
local s = env:from_elements(1, 2, 3)
if n > 0 then s = s:map(function(x) return x end) end
s:print()
env:execute("nondeterministic")
]], counter), { "-p", "2" })
    assert.are.equal(1, r.code)
    assert.matches("differs from the one built when the job was planned", r.stderr)
  end)

  it("names operator, subtask, record and line when a user function raises", function()
    local r = run(HEADER .. [[
env:from_elements({"a", 1}, {"boom", 2}, {"c", 3})
  :flat_map(function(v, out)
    if v[1] == "boom" then error("cannot handle " .. v[1]) end
    out:collect(v)
  end):name("Splitter")
  :print()
env:execute("raises")
]])
    assert.are.equal(1, r.code)
    assert.matches("error in operator 'Splitter' %(id flat_map_2, subtask 1/1%)", r.stderr)
    assert.matches("on record %(boom,2%)", r.stderr)
    assert.matches("job%.lua:5: cannot handle boom", r.stderr)
    assert.matches("stack traceback", r.stderr)
  end)

  it("reports an error raised downstream of a collector once, in the right operator", function()
    local r = run(HEADER .. [[
env:from_elements(1, 2)
  :flat_map(function(v, out) out:collect(v) end)
  :map(function(v) if v == 2 then error("map failed") end return v end)
  :print()
env:execute("downstream")
]])
    assert.are.equal(1, r.code)
    assert.matches("error in operator 'Map' %(id map_3, subtask 1/1%) on record 2", r.stderr)
    local _, n = r.stderr:gsub("error in operator", "")
    assert.are.equal(1, n)
  end)

  for what, expr in pairs({
    ["a function"] = "function() end",
    ["a userdata"] = "io.stdout",
  }) do
    it("reports a record holding " .. what .. " that crosses key_by", function()
      local r = run(HEADER .. string.format([[
env:from_elements(1)
  :map(function(v) return {v, %s} end)
  :key_by(1)
  :print()
env:execute("encode")
]], expr))
      assert.are.equal(1, r.code)
      assert.matches("error in operator 'Map'", r.stderr)
      assert.matches("cannot be sent to 'Sink: Print to Std%. Out'", r.stderr)
      assert.matches("a " .. (what:match("a (%w+)")) .. " cannot be encoded at %[2%]", r.stderr)
    end)
  end

  it("reports a cyclic record that crosses key_by", function()
    local r = run(HEADER .. [[
env:from_elements(1)
  :map(function(v) local t = {v} t[2] = t return t end)
  :key_by(1)
  :print()
env:execute("cycle")
]])
    assert.are.equal(1, r.code)
    assert.matches("a cyclic table %(one that contains itself%) cannot be encoded at %[2%]", r.stderr)
  end)

  it("reports key_by on a field the record lacks", function()
    local r = run(HEADER .. [[
env:from_elements({id = 1}, {id = 2})
  :key_by("user")
  :print()
env:execute("missing field")
]])
    assert.are.equal(1, r.code)
    assert.matches('key_by%("user"%): the record has no field "user"', r.stderr)
    assert.matches("on record {id=1}", r.stderr)
  end)

  it("reports key_by on a position the record lacks", function()
    local r = run(HEADER .. [[
env:from_elements({1}):key_by(2):print()
env:execute("missing position")
]])
    assert.are.equal(1, r.code)
    assert.matches("key_by%(2%): the record has no field 2", r.stderr)
  end)

  it("reports a refused socket connection", function()
    local r = run(HEADER .. [[
env:socket_text_stream("127.0.0.1", 1):print()
env:execute("refused")
]])
    assert.are.equal(1, r.code)
    assert.matches("socket_text_stream: cannot connect to 127%.0%.0%.1:1: connection refused", r.stderr)
  end)

  it("reports a missing input file", function()
    local r = run(HEADER .. [[
env:read_text_file("/nonexistent/input.txt"):print()
env:execute("missing file")
]])
    assert.are.equal(1, r.code)
    assert.matches("read_text_file: cannot open '/nonexistent/input%.txt': No such file", r.stderr)
  end)

  it("reports a rich table without the method its transformation needs", function()
    local r = run(HEADER .. [[
env:from_elements(1):flat_map({ open = function() end }):print()
env:execute("no method")
]])
    assert.are.equal(1, r.code)
    assert.matches("job%.lua:3: flat_map: the table passed has no 'flat_map' method", r.stderr)
  end)

  it("reports an error in open()", function()
    local r = run(HEADER .. [[
env:from_elements(1):map({ open = function() error("no config") end,
                           map = function(self, v) return v end }):print()
env:execute("open fails")
]])
    assert.are.equal(1, r.code)
    assert.matches("in open%(%): .*job%.lua:3: no config", r.stderr)
  end)
end)
