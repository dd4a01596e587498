-- Records that stay encoded between built-in operators: rolling sum, min and
-- max on keyed streams, keys read from encoded records, print and
-- write_as_text of encoded records. A user sees none of it: the output is
-- what Flink's semantics give, the same as on the Lua path, at -p 1 and -p 2.
-- Every expected output comes from the reference below, written in Lua.
local h = require("helpers")

local HEADER = [[
local cstream = require("cstream")
local env = cstream.get_execution_environment()
]]

-- ----------------------------------------------------------- reference --

-- Java's Double.toString (JDK 19+): the shortest digits that read back,
-- always with a fraction, scientific notation outside [1e-3, 1e7).
local function java_double(x)
  if x ~= x then return "NaN" end
  if x == math.huge then return "Infinity" end
  if x == -math.huge then return "-Infinity" end
  if x == 0 then return 1 / x < 0 and "-0.0" or "0.0" end
  local s
  for p = 1, 17 do
    s = string.format("%." .. (p - 1) .. "e", x)
    if tonumber(s) == x then break end
  end
  local sign, int, frac, exp = s:match("^(-?)(%d)%.?(%d*)e([-+]%d+)$")
  local digits = (int .. frac):gsub("0+$", "")
  exp = tonumber(exp)
  if exp >= -3 and exp < 7 then
    if exp < 0 then return sign .. "0." .. string.rep("0", -exp - 1) .. digits end
    local ip = digits:sub(1, exp + 1)
    local fp = digits:sub(exp + 2)
    return sign .. ip .. string.rep("0", exp + 1 - #ip) .. "." .. (fp == "" and "0" or fp)
  end
  local fp = digits:sub(2)
  return sign .. digits:sub(1, 1) .. "." .. (fp == "" and "0" or fp) .. "E" .. exp
end

-- Whether a table's keys are exactly 1..n (the empty table included).
local function is_tuple(t)
  local n, max = 0, 0
  for k in pairs(t) do
    if math.type(k) ~= "integer" or k < 1 then return false end
    n = n + 1
    if k > max then max = k end
  end
  return n == max
end

-- A value as Flink prints the corresponding Java value: tuples "(a,b)",
-- maps "{k=v, k2=v2}" in the byte order of the rendered keys.
local function render(v)
  local t = type(v)
  if v == nil then return "null" end
  if t == "boolean" or t == "string" then return tostring(v) end
  if math.type(v) == "integer" then return string.format("%d", v) end
  if t == "number" then return java_double(v) end
  if is_tuple(v) then
    local parts = {}
    for i = 1, #v do parts[i] = render(v[i]) end
    return "(" .. table.concat(parts, ",") .. ")"
  end
  local entries = {}
  for k, x in pairs(v) do entries[#entries + 1] = { render(k), render(x) } end
  table.sort(entries, function(a, b)
    if a[1] ~= b[1] then return a[1] < b[1] end
    return a[2] < b[2]
  end)
  for i, e in ipairs(entries) do entries[i] = e[1] .. "=" .. e[2] end
  return "{" .. table.concat(entries, ", ") .. "}"
end

-- Lua source text for a value (records are written into the job script).
local function literal(v)
  local t = type(v)
  if t == "string" then return string.format("%q", v) end
  if t == "boolean" then return tostring(v) end
  if math.type(v) == "integer" then
    return v == math.mininteger and "math.mininteger" or string.format("%d", v)
  end
  if t == "number" then
    if v ~= v then return "(0/0)" end
    if v == math.huge then return "(1/0)" end
    if v == -math.huge then return "(-1/0)" end
    return "(" .. string.format("%a", v) .. ")"
  end
  local parts = {}
  if is_tuple(v) then
    for i = 1, #v do parts[i] = literal(v[i]) end
  else
    for k, x in pairs(v) do parts[#parts + 1] = "[" .. literal(k) .. "]=" .. literal(x) end
  end
  return "{" .. table.concat(parts, ",") .. "}"
end

-- A key's identity under Lua's table-key equality, nested: 1.0 and 1 (and
-- -0.0 and 0) are one key, tables with equal contents are one key.
local function canon(v)
  local t = type(v)
  if t == "number" then
    if math.type(v) == "float" and v == math.floor(v) and v >= -2 ^ 63 and v < 2 ^ 63 then
      v = math.tointeger(v)
    end
    return math.type(v) == "integer" and "i" .. v or "f" .. string.format("%a", v)
  end
  if t == "string" then return "s" .. #v .. ":" .. v end
  if t == "table" then
    local parts = {}
    for k, x in pairs(v) do parts[#parts + 1] = canon(k) .. "=" .. canon(x) end
    table.sort(parts)
    return "{" .. table.concat(parts, ",") .. "}"
  end
  return tostring(v)
end

local function get(r, field)
  if field == nil then return r end
  return r[field]
end

local function with(r, field, v)
  if field == nil then return v end
  local c = {}
  for k, x in pairs(r) do c[k] = x end
  c[field] = v
  return c
end

-- Flink's rolling aggregation on a keyed stream: the first record of a key
-- as it is, then that record with the field replaced by the running sum,
-- minimum or maximum (computed with Lua's own + and <). Returns the list of
-- {key = canonical key, value = output record} in input order.
local function rolling(records, key_of, agg, field)
  local acc, out = {}, {}
  for _, r in ipairs(records) do
    local k = canon(key_of(r))
    local a = acc[k]
    if a == nil then
      a = r
    else
      local old, new = get(a, field), get(r, field)
      local v
      if agg == "sum" then
        v = old + new
      elseif agg == "min" then
        if new < old then v = new else v = old end
      else
        if old < new then v = new else v = old end
      end
      a = with(a, field, v)
    end
    acc[k] = a
    out[#out + 1] = { key = k, value = a }
  end
  return out
end

local function at(pos) return function(r) return r[pos] end end

-- The expected lines of a rolling output: {key, line}.
local function lines_of(outs)
  local e = {}
  for i, o in ipairs(outs) do e[i] = { key = o.key, line = render(o.value) } end
  return e
end

-- ------------------------------------------------------------- running --

-- Runs HEADER, `local records = <records>` and body at parallelism p.
local function run_job(records, body, p, extra)
  local script = HEADER .. "local records = " .. literal(records) .. "\n" .. body
  local job = h.write_job(script)
  local args = { "-p", tostring(p) }
  for _, a in ipairs(extra or {}) do args[#args + 1] = a end
  args[#args + 1] = job
  return h.run(args, { timeout = 120 })
end

-- The lines of print output by subtask: at -p 1 there is no prefix.
local function by_subtask(stdout, p)
  local subs = {}
  for i = 1, p do subs[i] = {} end
  for _, line in ipairs(h.lines(stdout)) do
    if p == 1 then
      table.insert(subs[1], line)
    else
      local n, rest = line:match("^(%d+)> (.*)$")
      assert(n and subs[tonumber(n)], "line without a subtask prefix: " .. line)
      table.insert(subs[tonumber(n)], rest)
    end
  end
  return subs
end

-- The lines of write_as_text output by subtask: a file at -p 1, a directory
-- of files 1..p otherwise.
local function files_by_subtask(path, p)
  if p == 1 then return { h.lines(assert(h.read_file(path), "no file " .. path)) } end
  local subs = {}
  for i = 1, p do
    subs[i] = h.lines(assert(h.read_file(path .. "/" .. i), "no file " .. path .. "/" .. i))
  end
  return subs
end

-- The lines of named print sinks ("id> " or "id:N> "), by sink and subtask.
local function by_sink(stdout, p)
  local got = setmetatable({}, { __index = function(t, id)
    local subs = {}
    for i = 1, p do subs[i] = {} end
    rawset(t, id, subs)
    return subs
  end })
  for _, line in ipairs(h.lines(stdout)) do
    local id, n, rest = line:match("^(%a+):?(%d*)> (.*)$")
    assert(id, "line without a sink prefix: " .. line)
    assert.are.equal(p == 1, n == "", line)
    table.insert(got[id][tonumber(n) or 1], rest)
  end
  return got
end

local function all_lines(subs)
  local all = {}
  for _, s in ipairs(subs) do
    for _, l in ipairs(s) do all[#all + 1] = l end
  end
  return all
end

local function expected_lines(expected)
  local l = {}
  for i, e in ipairs(expected) do l[i] = e.line end
  return l
end

-- Checks the output of a keyed operator, by subtask, against expected (a
-- list of {key, line} in input order): at -p 1 exactly the expected lines;
-- otherwise the same lines, each key on one subtask, and each subtask's
-- lines those of its keys in input order.
local function assert_keyed(subs, expected)
  if #subs == 1 then
    assert.are.same(expected_lines(expected), subs[1])
    return
  end
  assert.are.same(h.sorted(expected_lines(expected)), h.sorted(all_lines(subs)))
  local pos, owner = {}, {}
  for s = 1, #subs do pos[s] = 1 end
  local function walk(i)
    if i > #expected then return true end
    local e = expected[i]
    for s = 1, #subs do
      if (owner[e.key] == nil or owner[e.key] == s) and subs[s][pos[s]] == e.line then
        local fresh = owner[e.key] == nil
        owner[e.key], pos[s] = s, pos[s] + 1
        if walk(i + 1) then return true end
        pos[s] = pos[s] - 1
        if fresh then owner[e.key] = nil end
      end
    end
    return false
  end
  assert.is_true(walk(1), "the output is not a keyed partition of the expected lines")
  return owner
end

-- Checks that each subtask's lines keep the relative order of expected
-- (a plain list of lines) and that together they are exactly those lines.
local function assert_ordered_partition(subs, expected)
  assert.are.same(h.sorted(expected), h.sorted(all_lines(subs)))
  for s, lines in ipairs(subs) do
    local j = 1
    for _, l in ipairs(lines) do
      while j <= #expected and expected[j] ~= l do j = j + 1 end
      assert.is_true(j <= #expected, "subtask " .. s .. " out of order at " .. l)
      j = j + 1
    end
  end
end

-- A deterministic generator, so the inputs are the same on every run.
local function generator(seed)
  return function(n)
    seed = (seed * 1103515245 + 12345) % 2147483648
    return (seed >> 16) % n -- the high bits: the low ones have short periods
  end
end

-- ---------------------------------------------------------------- specs --

describe("fast paths", function()
  after_each(h.cleanup)

  local PS = { 1, 2 }

  it("sum by position keeps the first record's other fields, at every integer width", function()
    local rnd = generator(11)
    local widths = { 1, 100, 200, 300, 40000, 70000, 1 << 31, 1 << 40, -5, -40, -300, -70000 }
    local records = {}
    for i = 1, 300 do
      local key = "k" .. rnd(13)
      records[i] = { key, widths[rnd(#widths) + 1] * (rnd(3) + 1), "tag" .. i, { i, { "n" } } }
    end
    local outs = lines_of(rolling(records, at(1), "sum", 2))
    for _, backend in ipairs({ "memory", "rocksdb" }) do
      for _, p in ipairs(PS) do
        local r = run_job(records, [[
env:from_collection(records):key_by(1):sum(2):print()
env:execute("sum by position")
]], p, { "--state-backend", backend })
        assert.are.equal(0, r.code, r.stderr)
        assert_keyed(by_subtask(r.stdout, p), outs)
      end
    end
  end)

  it("sums the last and a middle position of longer tuples", function()
    local rnd = generator(5)
    local records = {}
    for i = 1, 200 do
      records[i] = { rnd(4), "x" .. rnd(3), rnd(1000) - 500, (rnd(7) + 1) * 1000 }
    end
    for _, p in ipairs(PS) do
      local r = run_job(records, [[
env:from_collection(records):key_by(1):sum(4):print("last")
env:from_collection(records):key_by(2):sum(3):print("middle")
env:execute("positions")
]], p)
      assert.are.equal(0, r.code, r.stderr)
      local got = by_sink(r.stdout, p)
      assert_keyed(got.last, lines_of(rolling(records, at(1), "sum", 4)))
      assert_keyed(got.middle, lines_of(rolling(records, at(2), "sum", 3)))
    end
  end)

  it("sums named fields; records with maps print sorted", function()
    local rnd = generator(3)
    local words = { "flink", "lua", "state", "keyed", "stream" }
    local records = {}
    for i = 1, 200 do
      local r = { word = words[rnd(#words) + 1], count = rnd(50) - 10 }
      if i % 3 == 0 then r.note = { z = i, a = { 1, "two" } } end
      if i % 5 == 0 then r[1] = "positional" end
      records[i] = r
    end
    local outs = lines_of(rolling(records, function(r) return r.word end, "sum", "count"))
    for _, p in ipairs(PS) do
      local r = run_job(records, [[
env:from_collection(records):key_by("word"):sum("count"):print()
env:execute("sum by name")
]], p)
      assert.are.equal(0, r.code, r.stderr)
      assert_keyed(by_subtask(r.stdout, p), outs)
    end
  end)

  it("sums, mins and maxes plain numbers under a key function", function()
    local rnd = generator(17)
    local records = {}
    for i = 1, 300 do
      local x = rnd(1000) - 300
      if i % 7 == 0 then x = x + 0.5 end      -- float keys 0.5, 1.5, 2.5: their own keys
      if i % 11 == 0 then x = x * 1.0 end     -- float keys 0.0, 1.0, 2.0: the integer keys
      records[i] = x
    end
    local key = function(x) return x % 3 end
    for _, agg in ipairs({ "sum", "min", "max" }) do
      local outs = lines_of(rolling(records, key, agg, nil))
      for _, p in ipairs(PS) do
        local r = run_job(records, string.format([[
env:from_collection(records):key_by(function(x) return x %% 3 end):%s():print()
env:execute("plain")
]], agg), p)
        assert.are.equal(0, r.code, r.stderr)
        assert_keyed(by_subtask(r.stdout, p), outs)
      end
    end
  end)

  it("wraps integer overflow around as Lua's integers do", function()
    local max, min = math.maxinteger, math.mininteger
    local records = {
      { "up", max }, { "up", 1 }, { "up", max }, { "up", max }, { "up", 2 },
      { "down", min }, { "down", -1 }, { "down", min }, { "down", -1 },
      { "edge", max - 1 }, { "edge", 1 }, { "edge", 1 }, { "edge", -1 },
      { "big", 1 << 62 }, { "big", 1 << 62 }, { "big", 1 << 62 }, { "big", 1 << 62 },
    }
    local outs = lines_of(rolling(records, at(1), "sum", 2))
    -- the reference itself wraps: max + 1 is min
    assert.are.equal(string.format("(up,%d)", min), outs[2].line)
    local plain = { max, 1, min, -1, 3 }
    local plain_outs = lines_of(rolling(plain, function() return 0 end, "sum", nil))
    for _, p in ipairs(PS) do
      local r = run_job(records, [[
env:from_collection(records):key_by(1):sum(2):print()
env:execute("overflow")
]], p)
      assert.are.equal(0, r.code, r.stderr)
      assert_keyed(by_subtask(r.stdout, p), outs)
      r = run_job(plain, [[
env:from_collection(records):key_by(function(x) return 0 end):sum():print()
env:execute("overflow plain")
]], p)
      assert.are.equal(0, r.code, r.stderr)
      assert_keyed(by_subtask(r.stdout, p), plain_outs)
    end
  end)

  it("gives a float as soon as an integer meets a float", function()
    local records = {
      { "a", 1 }, { "a", 2.5 }, { "a", 3 }, { "a", 4 },
      { "b", 0.1 }, { "b", 0.2 }, { "b", 1 }, { "b", 1e7 },
      { "c", 5 }, { "c", 0.5 }, { "c", -5.5 }, { "c", 0 },
      { "z", -0.0 }, { "z", -0.0 }, { "z", 0 },
      { "i", 1e300 }, { "i", 1e300 }, { "i", 1 }, { "i", -1 / 0 },
      { "n", 1 }, { "n", 0 / 0 }, { "n", 1 },
      { "p", 2 ^ 53 }, { "p", 1 }, { "p", 1 },
      { "q", math.maxinteger }, { "q", 1.0 },
      { "s", 7 }, { "s", 7 }, { "s", 7.0 }, { "s", 7 },
    }
    local outs = lines_of(rolling(records, at(1), "sum", 2))
    assert.are.equal("(b,0.30000000000000004)", outs[6].line)
    for _, p in ipairs(PS) do
      local r = run_job(records, [[
env:from_collection(records):key_by(1):sum(2):print()
env:execute("mixed sum")
]], p)
      assert.are.equal(0, r.code, r.stderr)
      assert_keyed(by_subtask(r.stdout, p), outs)
    end
  end)

  it("takes min and max over mixed integers and floats exactly", function()
    local records = {
      { "t", 3, "first" }, { "t", 2.5, "x" }, { "t", 2, "x" }, { "t", 2.0, "x" }, { "t", 2, "x" },
      { "t", 1e300, "x" }, { "t", -1 / 0, "x" }, { "t", 1 / 0, "x" },
      -- 2^53 + 1 has no float: only an exact comparison orders it
      { "e", 2 ^ 53, "first" }, { "e", (1 << 53) + 1, "x" }, { "e", (1 << 53) - 1, "x" },
      { "e", 2 ^ 53, "x" }, { "e", 1 << 53, "x" },
      { "z", 0, "first" }, { "z", -0.0, "x" }, { "z", 0.0, "x" }, { "z", -1, "x" },
      { "n", 0 / 0, "first" }, { "n", 1, "x" }, { "n", 1.5, "x" },
      { "m", 5, "first" }, { "m", 0 / 0, "x" }, { "m", 4.5, "x" }, { "m", 6.5, "x" },
      { "i", math.maxinteger, "first" }, { "i", math.mininteger, "x" }, { "i", 2 ^ 63, "x" },
      { "i", -2 ^ 63, "x" }, { "f", 0.5, "first" }, { "f", 0.25, "x" }, { "f", 0.75, "x" },
      { "w", 10, "first" }, { "w", 20, "x" }, { "w", 5, "x" }, { "w", 15, "x" },
      -- floats only: signed zeros tie (the first stays), NaN never wins
      { "y", -0.0, "first" }, { "y", 0.0, "x" }, { "y", -0.0, "x" },
      { "u", 0.0, "first" }, { "u", -0.0, "x" }, { "u", 0.0, "x" },
      { "g", 1.5, "first" }, { "g", 0 / 0, "x" }, { "g", 0.5, "x" }, { "g", 2.5, "x" },
    }
    for _, agg in ipairs({ "min", "max" }) do
      local outs = lines_of(rolling(records, at(1), agg, 2))
      for _, p in ipairs(PS) do
        local r = run_job(records, string.format([[
env:from_collection(records):key_by(1):%s(2):print()
env:execute("mixed %s")
]], agg, agg), p)
        assert.are.equal(0, r.code, r.stderr)
        assert_keyed(by_subtask(r.stdout, p), outs)
      end
    end
    -- spot checks of the reference: ties keep the first, exactness
    local min = lines_of(rolling(records, at(1), "min", 2))
    assert.are.equal("(t,2,first)", min[5].line)
    local max = lines_of(rolling(records, at(1), "max", 2))
    assert.are.equal("(e,9007199254740993,first)", max[13].line)
  end)

  it("reports a missing or non-number field as before: file, operator, record", function()
    local cases = {
      { { { "a", 1 }, { "a", 2 }, { "a", "x" } }, "key_by(1):sum(2)", "Sum",
        "(a,x)", "sum(2): field 2 is not a number" },
      { { { "a", 1 }, { "a" } }, "key_by(1):sum(2)", "Sum",
        "(a)", "sum(2): field 2 is not a number" },
      { { { "a", 1 }, { "a", "5" } }, "key_by(1):min(2)", "Min",
        "(a,5)", "min(2): field 2 is not a number" },
      { { { "a", 1 }, { "a", { 1 } } }, "key_by(1):max(2)", "Max",
        "(a,(1))", "max(2): field 2 is not a number" },
      { { { k = "a", v = 1 }, { k = "a", v = 2.5 }, { k = "a" } }, 'key_by("k"):sum("v")', "Sum",
        "{k=a}", 'sum("v"): field "v" is not a number' },
      { { { k = "a", v = 1 }, { k = "a", v = true } }, 'key_by("k"):max("v")', "Max",
        "{k=a, v=true}", 'max("v"): field "v" is not a number' },
      { { 1, 2, "x" }, "key_by(function() return 0 end):sum()", "Sum",
        "x", "sum(): the record is not a number" },
      -- the first record of a key is taken as it is; the next one fails
      { { { "a", "x" }, { "a", 1 } }, "key_by(1):sum(2)", "Sum",
        "(a,1)", "sum(2): field 2 is not a number" },
    }
    for _, c in ipairs(cases) do
      for _, p in ipairs(PS) do
        local r = run_job(c[1], "env:from_collection(records):" .. c[2] .. ":print()\n" ..
                          'env:execute("bad field")\n', p)
        assert.are.equal(1, r.code, c[2])
        local found = false
        for s = 1, p do
          local want = string.format("job.lua: error in operator '%s' (id reduce_2, subtask %d/%d)"
                                     .. " on record %s:\n%s\n", c[3], s, p, c[4], c[5])
          found = found or r.stderr:find(want, 1, true) ~= nil
        end
        assert.is_true(found, c[2] .. " on " .. c[4] .. ": " .. r.stderr)
      end
    end
  end)

  it("puts 1.0 and 1 in one key, tables with equal contents in one key", function()
    local keys = { 1, 1.0, 2, 2.0, -0.0, 0, 3.5, "1", true, false, 2 ^ 40, 1 << 40,
                   { 1, 2 }, { 1.0, 2.0 }, { a = 1, b = { 2 } }, { b = { 2.0 }, a = 1.0 },
                   { 1, 2, 3 }, "x" }
    local rnd = generator(23)
    local records = {}
    for i = 1, 240 do records[i] = { keys[rnd(#keys) + 1], rnd(100), "r" .. i } end
    local outs = lines_of(rolling(records, at(1), "sum", 2))
    for _, p in ipairs(PS) do
      local r = run_job(records, [[
env:from_collection(records):key_by(1):sum(2):print()
env:execute("float keys")
]], p)
      assert.are.equal(0, r.code, r.stderr)
      assert_keyed(by_subtask(r.stdout, p), outs)
      -- the same through a key function returning the key
      r = run_job(records, [[
env:from_collection(records):key_by(function(r) return r[1] end):sum(2):print()
env:execute("float keys by function")
]], p)
      assert.are.equal(0, r.code, r.stderr)
      assert_keyed(by_subtask(r.stdout, p), outs)
    end
  end)

  it("sends integer keys and their float forms to the same subtask", function()
    local function job_for(float)
      local records = {}
      for i = 1, 60 do records[i] = { float and i * 1.0 or i, i } end
      for i = 1, 60 do records[60 + i] = { i, 1 } end
      local r = run_job(records, [[
env:from_collection(records):key_by(1):sum(2):print()
env:execute("subtasks")
]], 2)
      assert.are.equal(0, r.code, r.stderr)
      local outs = lines_of(rolling(records, at(1), "sum", 2))
      return assert_keyed(by_subtask(r.stdout, 2), outs)
    end
    local ints, floats = job_for(false), job_for(true)
    assert.are.same(ints, floats)
    local used = {}
    for _, s in pairs(ints) do used[s] = true end
    assert.is_true(used[1] and used[2], "both subtasks get keys")
  end)

  it("keys a second exchange on fields of encoded running values", function()
    -- Stage 2 keys on field 2 of stage 1's output (the first record's field
    -- 2 of each stage-1 key): integers, their float forms, strings, tables.
    -- Stage 1 runs at parallelism 1 so that stage 2 sees one ordered input.
    local k2s = { 1, 1.0, 2, "two", { 1, 2 }, { 1.0, 2.0 }, true, 7.5, -0.0, 0 }
    local rnd = generator(29)
    local records = {}
    for i = 1, 250 do
      records[i] = { "s" .. rnd(20), k2s[rnd(#k2s) + 1], rnd(30) }
    end
    local function values(outs)
      local v = {}
      for i, o in ipairs(outs) do v[i] = o.value end
      return v
    end
    local outs2 = lines_of(rolling(values(rolling(records, at(1), "sum", 3)), at(2), "sum", 3))
    local named = {}
    for i, r in ipairs(records) do named[i] = { a = r[1], b = r[2], v = r[3] } end
    local outs2n = lines_of(rolling(values(rolling(named, function(r) return r.a end, "max", "v")),
                                    function(r) return r.b end, "sum", "v"))
    for _, p in ipairs(PS) do
      local r = run_job(records, [[
env:from_collection(records):key_by(1):sum(3):set_parallelism(1):key_by(2):sum(3):print()
env:execute("two stages")
]], p)
      assert.are.equal(0, r.code, r.stderr)
      assert_keyed(by_subtask(r.stdout, p), outs2)
      r = run_job(named, [[
env:from_collection(records):key_by("a"):max("v"):set_parallelism(1)
  :key_by("b"):sum("v"):print()
env:execute("two stages by name")
]], p)
      assert.are.equal(0, r.code, r.stderr)
      assert_keyed(by_subtask(r.stdout, p), outs2n)
    end

    -- Both stages at -p 2: stage 2's input interleaves two subtasks, so only
    -- the order-free facts are checked: each stage-2 key on one subtask,
    -- with one line per stage-1 output and the final sum of the reference.
    local group = { ["1"] = "one", ["1.0"] = "one", ["2"] = "two", two = "str",
                    ["(1,2)"] = "pair", ["(1.0,2.0)"] = "pair", ["true"] = "true",
                    ["7.5"] = "7.5", ["-0.0"] = "zero", ["0"] = "zero" }
    local want_count, want_last = {}, {}
    for _, e in ipairs(outs2) do
      local k, sum = e.line:match("^%(s%d+,(.*),(%d+)%)$")
      local g = assert(group[k], k)
      want_count[g] = (want_count[g] or 0) + 1
      want_last[g] = tonumber(sum)
    end
    local r = run_job(records, [[
env:from_collection(records):key_by(1):sum(3):key_by(2):sum(3):print()
env:execute("two stages at -p 2")
]], 2)
    assert.are.equal(0, r.code, r.stderr)
    local count, last, owner = {}, {}, {}
    for s, lines in ipairs(by_subtask(r.stdout, 2)) do
      for _, line in ipairs(lines) do
        local k, sum = line:match("^%(s%d+,(.*),(%d+)%)$")
        local g = assert(group[k], line)
        assert.is_true(owner[g] == nil or owner[g] == s, "key " .. k .. " on two subtasks")
        owner[g] = s
        assert.is_true(last[g] == nil or last[g] <= tonumber(sum), "sums of " .. k .. " out of order")
        count[g] = (count[g] or 0) + 1
        last[g] = tonumber(sum)
      end
    end
    assert.are.same(want_count, count)
    assert.are.same(want_last, last)
  end)

  it("feeds a running value to several consumers: print, rebalance, broadcast, text", function()
    local rnd = generator(31)
    local records = {}
    for i = 1, 120 do records[i] = { "k" .. rnd(6), rnd(9) + 0.5 * (i % 2), { i } } end
    local outs = lines_of(rolling(records, at(1), "sum", 2))
    for _, p in ipairs(PS) do
      local dir = h.tmpdir()
      local r = run_job(records, string.format([[
local s = env:from_collection(records):key_by(1):sum(2)
s:print("direct")
s:rebalance():print("rebalanced")
s:broadcast():print("broadcast")
s:write_as_text(%q)
env:execute("consumers")
]], dir .. "/out"), p)
      assert.are.equal(0, r.code, r.stderr)
      local got = by_sink(r.stdout, p)
      assert_keyed(got.direct, outs)
      assert_keyed(files_by_subtask(dir .. "/out", p), outs)
      -- rebalanced: every line once; broadcast: every line on every subtask
      assert.are.same(h.sorted(expected_lines(outs)), h.sorted(all_lines(got.rebalanced)))
      for i = 1, p do
        assert.are.same(h.sorted(expected_lines(outs)), h.sorted(got.broadcast[i]))
      end
    end
  end)

  it("prints and writes encoded records of every kind as Flink does", function()
    local deep = "x"
    for i = 1, 50 do deep = { deep, i } end
    local deep_map = { leaf = true }
    for i = 1, 20 do deep_map = { i, deep_map } end
    local records = {
      0, 1, -1, 127, 128, -32, -33, 255, 256, 65535, 65536, -32768, -32769,
      2147483647, -2147483648, 4294967296, math.maxinteger, math.mininteger,
      0.1, 1e7, 9999999.0, 1e-3, 1e-4, -0.0, 0.0, 0 / 0, 1 / 0, -1 / 0, 5.0,
      11 / 3, 0.1 + 0.2, 2 ^ 63, 1e300, 123.456, -1.5e-7,
      "", "flink", "a\0b", "\255\254 not utf-8", "(1,2)", "{a=1}", "null", "tab\there",
      string.rep("long", 100), true, false,
      {}, { {} }, { 1, 5.0 }, { "flink", 3 }, { 1, { 2, 3 } }, { "", "" }, { "(", ")", "," },
      { true, false, "null" }, { 1.5, -0.0, 0 / 0, 1 / 0, math.mininteger }, deep,
      { a = 1 }, { b = 2, a = 1 }, { 1, 2, x = 3 }, { [1] = "a", [3] = "c" },
      { 1, { k = 1 } }, { "x", { { { a = 1 } } } }, { [{ 1, 2 }] = "tuple key" },
      { word = "flink", count = 3, nested = { z = { 1, 2 }, a = { q = 0.5 } } }, deep_map,
      { [1] = "int", ["1"] = "str" }, { [2.5] = 1, [true] = 2 },
    }
    local want = {}
    for i, v in ipairs(records) do want[i] = render(v) end
    -- spot checks of the reference
    assert.are.equal("(1.5,-0.0,NaN,Infinity,-9223372036854775808)",
                     render({ 1.5, -0.0, 0 / 0, 1 / 0, math.mininteger }))
    assert.are.equal("{count=3, nested={a={q=0.5}, z=(1,2)}, word=flink}",
                     render({ word = "flink", count = 3, nested = { z = { 1, 2 }, a = { q = 0.5 } } }))
    assert.are.equal("1.0E7 1.0E-4 0.001 9999999.0 1.2345E-7 0.30000000000000004",
                     table.concat({ render(1e7), render(1e-4), render(1e-3), render(9999999.0),
                                    render(1.2345e-7), render(0.1 + 0.2) }, " "))
    for _, p in ipairs(PS) do
      local dir = h.tmpdir()
      local r = run_job(records, string.format([[
env:from_collection(records):rebalance():print()
env:from_collection(records):rebalance():write_as_text(%q)
env:execute("kinds")
]], dir .. "/out"), p)
      assert.are.equal(0, r.code, r.stderr)
      assert_ordered_partition(by_subtask(r.stdout, p), want)
      assert_ordered_partition(files_by_subtask(dir .. "/out", p), want)
    end
  end)

  it("prints running values holding maps and nested tuples", function()
    local rnd = generator(37)
    local records = {}
    for i = 1, 150 do
      local k = "k" .. rnd(5)
      if i % 2 == 0 then
        records[i] = { k, { i % 4, { "n", { i % 3 } } }, rnd(10), { z = i % 5, a = { "m" } } }
      else
        records[i] = { k, { i % 4, { "n", { i % 3 } } }, rnd(10) + 0.25, "plain" }
      end
    end
    local outs = lines_of(rolling(records, at(1), "sum", 3))
    local maps = {}
    for i, r in ipairs(records) do
      maps[i] = { key = r[1], v = r[3], tuple = r[2], meta = { r[4], tag = "t" .. (i % 2) } }
    end
    local outs_maps = lines_of(rolling(maps, function(r) return r.key end, "max", "v"))
    for _, p in ipairs(PS) do
      local dir = h.tmpdir()
      local r = run_job(records, string.format([[
local s = env:from_collection(records):key_by(1):sum(3)
s:print()
s:write_as_text(%q)
env:execute("nested")
]], dir .. "/out"), p)
      assert.are.equal(0, r.code, r.stderr)
      assert_keyed(by_subtask(r.stdout, p), outs)
      assert_keyed(files_by_subtask(dir .. "/out", p), outs)
      r = run_job(maps, string.format([[
local s = env:from_collection(records):key_by("key"):max("v")
s:print()
s:write_as_text(%q)
env:execute("maps")
]], dir .. "/maps"), p)
      assert.are.equal(0, r.code, r.stderr)
      assert_keyed(by_subtask(r.stdout, p), outs_maps)
      assert_keyed(files_by_subtask(dir .. "/maps", p), outs_maps)
    end
  end)

  it("collects out:collect(a, b, ...) as the tuple { a, b, ... }, across an exchange or chained", function()
    local rnd = generator(7)
    local records = {}
    for i = 1, 300 do records[i] = "w" .. rnd(17) .. "," .. rnd(50) .. "," .. i end
    local tuples = {}
    for i, line in ipairs(records) do
      local w, n = line:match("^([^,]*),([^,]*)")
      tuples[i] = { w, math.tointeger(n), { #w, tag = "t" } }
    end
    local outs = lines_of(rolling(tuples, at(1), "sum", 2))
    local split = [[
local function split(line)
  local w, n, i = line:match("^([^,]*),([^,]*),(.*)$")
  return w, math.tointeger(n), math.tointeger(i)
end
]]
    for _, p in ipairs(PS) do
      -- an exchange gets the tuple encoded from the arguments; the sum and
      -- print see what the table would have given (keyed first, so that
      -- each word's records keep their order at -p 2)
      local r = run_job(records, split .. [[
env:from_collection(records)
  :key_by(function(line) return (split(line)) end)
  :flat_map(function(line, out)
    local w, n = split(line)
    out:collect(w, n, { #w, tag = "t" })
  end)
  :key_by(1):sum(2):print()
env:execute("tuple through an exchange")
]], p)
      assert.are.equal(0, r.code, r.stderr)
      assert_keyed(by_subtask(r.stdout, p), outs)
      -- a chained operator gets a table it can index; a nil makes the same
      -- table with a hole as {a, nil, c} does
      r = run_job(records, split .. [[
env:from_collection(records)
  :flat_map(function(line, out)
    local w, n = split(line)
    out:collect(w, n)
    if n == 0 then out:collect(w, nil, n) end
  end)
  :map(function(t) return t[1] .. "=" .. tostring(t[2]) .. "/" .. #t .. "/" .. tostring(t[3]) end)
  :print()
env:execute("tuple chained")
]], p)
      assert.are.equal(0, r.code, r.stderr)
      local expected = {}
      for _, line in ipairs(records) do
        local w, n = line:match("^([^,]*),([^,]*)")
        expected[#expected + 1] = w .. "=" .. n .. "/2/nil"
        if n == "0" then
          local t = { w, nil, 0 }
          expected[#expected + 1] = w .. "=nil/" .. #t .. "/0"
        end
      end
      assert.are.same(h.sorted(expected), h.sorted(all_lines(by_subtask(r.stdout, p))))
    end
  end)

  it("reports a tuple value that cannot be sent, with the record", function()
    local r = run_job({ "a" }, [[
env:from_collection(records)
  :flat_map(function(line, out) out:collect(line, print) end)
  :key_by(1):print()
env:execute("bad tuple")
]], 1)
    assert.are_not.equal(0, r.code)
    assert.matches("cannot be sent", r.stderr)
    assert.matches("function", r.stderr)
  end)
end)
