-- Every method of every keyed state kind, through the engine and its state
-- backend: values of every encodable type, nil, empty state, clear, large
-- lists and maps, keys of every type, and the misuse errors.
local h = require("helpers")

local HEADER = [[
local cstream = require("cstream")
local env = cstream.get_execution_environment()
]]

-- Runs a job whose keyed rich function `fn_src` (a Lua table expression)
-- sees the given records (a Lua expression for a list), keyed by position 1;
-- returns the printed lines.
local function run_state_job(records_src, fn_src, flags)
  local job = h.write_job(HEADER .. string.format([[
env:from_collection(%s)
  :key_by(1)
  :flat_map(%s)
  :print()
env:execute("state")
]], records_src, fn_src))
  local args = flags or { "-p", "1" }
  args[#args + 1] = job
  local r = h.run(args, { timeout = 120 })
  return r, h.lines(r.stdout)
end

local function ok(r)
  assert.are.equal(0, r.code, r.stderr)
end

describe("value state", function()
  after_each(h.cleanup)

  it("starts empty, updates, reads back every type, clears, and treats update(nil) as clear", function()
    local r, lines = run_state_job([[{{"k", 1}, {"k", 2}, {"k", 3}, {"k", 4}, {"other", 1}}]], [[{
      open = function(self, ctx) self.s = ctx:get_state(cstream.value_state_descriptor("v")) end,
      flat_map = function(self, v, out)
        local values = { 42, 5.0, "text", true, false, {1, {2, "x"}}, {a = 1, b = {c = 2.5}}, math.maxinteger, -0.5, "" }
        if v[2] == 1 then
          out:collect({v[1], "empty", tostring(self.s:value())})
          for _, x in ipairs(values) do
            self.s:update(x)
            out:collect({v[1], math.type(self.s:value()) or type(self.s:value()), cstream.format(self.s:value())})
          end
        elseif v[2] == 2 then
          out:collect({v[1], "kept", cstream.format(self.s:value())})
          self.s:clear()
        elseif v[2] == 3 then
          out:collect({v[1], "cleared", tostring(self.s:value())})
          self.s:update(7) self.s:update(nil)
        else
          out:collect({v[1], "nil-update", tostring(self.s:value())})
        end
      end }]])
    ok(r)
    assert.are.same({
      "(k,empty,nil)", "(k,integer,42)", "(k,float,5.0)", "(k,string,text)", "(k,boolean,true)",
      "(k,boolean,false)", "(k,table,(1,(2,x)))", "(k,table,{a=1, b={c=2.5}})",
      "(k,integer,9223372036854775807)", "(k,float,-0.5)", "(k,string,)",
      "(k,kept,)", "(k,cleared,nil)", "(k,nil-update,nil)",
      "(other,empty,nil)", "(other,integer,42)", "(other,float,5.0)", "(other,string,text)",
      "(other,boolean,true)", "(other,boolean,false)", "(other,table,(1,(2,x)))",
      "(other,table,{a=1, b={c=2.5}})", "(other,integer,9223372036854775807)",
      "(other,float,-0.5)", "(other,string,)",
    }, lines)
  end)

  it("keeps one value per key for keys of every encodable type", function()
    local r, lines = run_state_job([[{
      {1, 1}, {1.0, 2}, {2.5, 1}, {"1", 1}, {true, 1}, {false, 1}, {{1, 2}, 1}, {{a = 1}, 1},
      {1, 3}, {2.5, 2}, {"1", 2}, {true, 2}, {{1, 2}, 2}, {{a = 1}, 2}, {false, 2}}]], [[{
      open = function(self, ctx) self.s = ctx:get_state(cstream.value_state_descriptor("count")) end,
      flat_map = function(self, v, out)
        local n = (self.s:value() or 0) + 1
        self.s:update(n)
        out:collect({cstream.format(v[1]), n})
      end }]])
    ok(r)
    assert.are.same({ "(1,1)", "(1.0,2)", "(2.5,1)", "(1,1)", "(true,1)", "(false,1)", "((1,2),1)",
                      "({a=1},1)", "(1,3)", "(2.5,2)", "(1,2)", "(true,2)", "((1,2),2)",
                      "({a=1},2)", "(false,2)" }, lines)
  end)
end)

describe("list state", function()
  after_each(h.cleanup)

  it("get, add, add_all, update and clear", function()
    local r, lines = run_state_job([[{{"k", 1}}]], [[{
      open = function(self, ctx) self.l = ctx:get_list_state(cstream.list_state_descriptor("l")) end,
      flat_map = function(self, v, out)
        local function show(tag) out:collect({tag, cstream.format(self.l:get())}) end
        show("empty")
        self.l:add(1) self.l:add("two") self.l:add({3, 3.0}) show("add")
        self.l:add_all({4, 5}) show("add_all")
        self.l:add_all({}) show("add_all empty")
        self.l:update({"x", "y"}) show("update")
        self.l:update({}) show("update empty")
        self.l:add(false) show("add false")
        self.l:clear() show("clear")
      end }]])
    ok(r)
    assert.are.same({ "(empty,())", "(add,(1,two,(3,3.0)))", "(add_all,(1,two,(3,3.0),4,5))",
                      "(add_all empty,(1,two,(3,3.0),4,5))", "(update,(x,y))", "(update empty,())",
                      "(add false,(false))", "(clear,())" }, lines)
  end)

  it("holds 100k elements for a key", function()
    local r, lines = run_state_job([[{{"k", 1}}]], [[{
      open = function(self, ctx) self.l = ctx:get_list_state(cstream.list_state_descriptor("big")) end,
      flat_map = function(self, v, out)
        for i = 1, 100000 do self.l:add(i) end
        local all = self.l:get()
        local sum = 0
        for _, x in ipairs(all) do sum = sum + x end
        out:collect({#all, sum, all[1], all[100000]})
      end }]])
    ok(r)
    assert.are.same({ "(100000,5000050000,1,100000)" }, lines)
  end)

  it("rejects nil elements", function()
    local r = run_state_job([[{{"k", 1}}]], [[{
      open = function(self, ctx) self.l = ctx:get_list_state(cstream.list_state_descriptor("l")) end,
      flat_map = function(self, v, out) self.l:add(nil) end }]])
    assert.are.equal(1, r.code)
    assert.matches("list state 'l': nil cannot be added", r.stderr)
  end)
end)

describe("map state", function()
  after_each(h.cleanup)

  it("get, put, put_all, remove, contains, is_empty, clear and the iterators", function()
    local r, lines = run_state_job([[{{"k", 1}, {"j", 1}}]], [[{
      open = function(self, ctx) self.m = ctx:get_map_state(cstream.map_state_descriptor("m")) end,
      flat_map = function(self, v, out)
        local function entries()
          local t = {}
          for k, x in self.m:entries() do t[#t + 1] = cstream.format(k) .. "=" .. cstream.format(x) end
          table.sort(t)
          return table.concat(t, " ")
        end
        out:collect({v[1], "empty", tostring(self.m:is_empty()), tostring(self.m:get("a")), entries()})
        self.m:put("a", 1) self.m:put(2, "two") self.m:put(1.0, "one") self.m:put({1, 2}, {x = 1})
        self.m:put(true, 5.5)
        out:collect({v[1], "put", tostring(self.m:is_empty()), self.m:get("a"), self.m:get(1), entries()})
        self.m:put_all({b = 2, c = 3})
        self.m:remove("a") self.m:remove("missing")
        out:collect({v[1], "contains", tostring(self.m:contains("a")), tostring(self.m:contains("b")), entries()})
        local keys, values = {}, {}
        for k in self.m:keys() do keys[#keys + 1] = cstream.format(k) end
        for x in self.m:values() do values[#values + 1] = cstream.format(x) end
        table.sort(keys) table.sort(values)
        out:collect({v[1], table.concat(keys, " "), table.concat(values, " ")})
        self.m:put("n", nil)
        out:collect({v[1], "nil value", tostring(self.m:contains("n")), tostring(self.m:get("n"))})
        for k in self.m:keys() do if k == "b" then break end end -- a break closes the iterator
        self.m:clear()
        out:collect({v[1], "cleared", tostring(self.m:is_empty()), entries()})
      end }]])
    ok(r)
    local want = {}
    for _, k in ipairs({ "k", "j" }) do
      for _, l in ipairs({
        "(K,empty,true,nil,)",
        "(K,put,false,1,one,(1,2)={x=1} 1=one 2=two a=1 true=5.5)",
        "(K,contains,false,true,(1,2)={x=1} 1=one 2=two b=2 c=3 true=5.5)",
        "(K,(1,2) 1 2 b c true,2 3 5.5 one two {x=1})",
        "(K,nil value,true,nil)",
        "(K,cleared,true,)",
      }) do want[#want + 1] = (l:gsub("K", k)) end
    end
    assert.are.same(want, lines)
  end)

  it("holds and iterates 100k entries", function()
    local r, lines = run_state_job([[{{"k", 1}}]], [[{
      open = function(self, ctx) self.m = ctx:get_map_state(cstream.map_state_descriptor("big")) end,
      flat_map = function(self, v, out)
        for i = 1, 100000 do self.m:put("key" .. i, i) end
        local n, sum = 0, 0
        for k, x in self.m:entries() do n = n + 1 sum = sum + x end
        out:collect({n, sum, self.m:get("key77777")})
      end }]])
    ok(r)
    assert.are.same({ "(100000,5000050000,77777)" }, lines)
  end)

  it("reports a map key that cannot be encoded, naming the state and operator", function()
    local r = run_state_job([[{{"k", 1}}]], [[{
      open = function(self, ctx) self.m = ctx:get_map_state(cstream.map_state_descriptor("m")) end,
      flat_map = function(self, v, out) self.m:put(print, 1) end }]])
    assert.are.equal(1, r.code)
    assert.matches("map state 'm' of operator 'Flat Map': map key: a function cannot be encoded", r.stderr)
  end)

  it("reports modification during iteration", function()
    local r = run_state_job([[{{"k", 1}}]], [[{
      open = function(self, ctx) self.m = ctx:get_map_state(cstream.map_state_descriptor("m")) end,
      flat_map = function(self, v, out)
        self.m:put(1, 1) self.m:put(2, 2)
        for k in self.m:keys() do self.m:put(k + 10, 0) end
      end }]])
    assert.are.equal(1, r.code)
    assert.matches("map state 'm' was modified while it was being iterated", r.stderr)
  end)
end)

describe("reducing, aggregating and folding state", function()
  after_each(h.cleanup)

  it("reduce, aggregate and fold per key", function()
    local r, lines = run_state_job([[{{"a", 1}, {"b", 10}, {"a", 2}, {"a", 3}, {"b", 20}}]], [[{
      open = function(self, ctx)
        self.r = ctx:get_reducing_state(cstream.reducing_state_descriptor("r", function(a, b) return a * 10 + b end))
        self.g = ctx:get_aggregating_state(cstream.aggregating_state_descriptor("g", {
          create_accumulator = function() return {0, 0} end,
          add = function(v, acc) return {acc[1] + 1, acc[2] + v} end,
          get_result = function(acc) return acc[2] / acc[1] end,
          merge = function(a, b) return {a[1] + b[1], a[2] + b[2]} end }))
        self.f = ctx:get_folding_state(cstream.folding_state_descriptor("f", {n = 0}, function(acc, v)
          acc.n = acc.n + v return acc end))
      end,
      flat_map = function(self, v, out)
        out:collect({v[1], tostring(self.r:get()), tostring(self.g:get()), cstream.format(self.f:get())})
        self.r:add(v[2]) self.g:add(v[2]) self.f:add(v[2])
        out:collect({v[1], self.r:get(), self.g:get(), cstream.format(self.f:get())})
        if v[2] == 3 then self.r:clear() self.g:clear() self.f:clear()
          out:collect({v[1], tostring(self.r:get()), tostring(self.g:get()), tostring(self.f:get())}) end
      end }]])
    ok(r)
    assert.are.same({
      "(a,nil,nil,null)", "(a,1,1.0,{n=1})",
      "(b,nil,nil,null)", "(b,10,10.0,{n=10})",
      "(a,1,1.0,{n=1})", "(a,12,1.5,{n=3})",
      "(a,12,1.5,{n=3})", "(a,123,2.0,{n=6})", "(a,nil,nil,nil)",
      "(b,10,10.0,{n=10})", "(b,120,15.0,{n=30})",
    }, lines)
  end)

  it("reports a reduce function that raises or returns nothing", function()
    for _, body in ipairs({ "error('bad reduce')", "return nil" }) do
      local r = run_state_job([[{{"a", 1}, {"a", 2}}]], string.format([[{
        open = function(self, ctx)
          self.r = ctx:get_reducing_state(cstream.reducing_state_descriptor("r", function(a, b) %s end))
        end,
        flat_map = function(self, v, out) self.r:add(v[2]) end }]], body))
      assert.are.equal(1, r.code)
      assert.matches("reducing state 'r': the reduce function", r.stderr)
      assert.matches("on record %(a,2%)", r.stderr)
    end
  end)

  it("reports an aggregate function that raises", function()
    local r = run_state_job([[{{"a", 1}}]], [[{
      open = function(self, ctx)
        self.g = ctx:get_aggregating_state(cstream.aggregating_state_descriptor("g", {
          create_accumulator = function() return 0 end,
          add = function(v, acc) error("bad add") end,
          get_result = function(acc) return acc end }))
      end,
      flat_map = function(self, v, out) self.g:add(v[2]) end }]])
    assert.are.equal(1, r.code)
    assert.matches("aggregating state 'g': the add function failed: .*bad add", r.stderr)
  end)
end)

describe("state misuse", function()
  after_each(h.cleanup)

  it("rejects keyed state on a stream that is not keyed", function()
    local job = h.write_job(HEADER .. [[
env:from_elements(1):map({ open = function(self, ctx) ctx:get_state(cstream.value_state_descriptor("v")) end,
                           map = function(self, v) return v end }):print()
env:execute("unkeyed")
]])
    local r = h.run({ "-p", "1", job })
    assert.are.equal(1, r.code)
    assert.matches("operator 'Map' is not on a keyed stream", r.stderr)
  end)

  it("rejects state access outside a record (in open)", function()
    local r = run_state_job([[{{"a", 1}}]], [[{
      open = function(self, ctx) ctx:get_state(cstream.value_state_descriptor("v")):value() end,
      flat_map = function(self, v, out) end }]])
    assert.are.equal(1, r.code)
    assert.matches("there is no current key here", r.stderr)
  end)

  it("rejects a name reused with another kind or another function", function()
    local r = run_state_job([[{{"a", 1}}]], [[{
      open = function(self, ctx)
        ctx:get_state(cstream.value_state_descriptor("s"))
        ctx:get_list_state(cstream.list_state_descriptor("s"))
      end,
      flat_map = function(self, v, out) end }]])
    assert.are.equal(1, r.code)
    assert.matches("already has a value state named 's'", r.stderr)
    r = run_state_job([[{{"a", 1}}]], [[{
      open = function(self, ctx)
        ctx:get_reducing_state(cstream.reducing_state_descriptor("s", function(a, b) return a + b end))
        ctx:get_reducing_state(cstream.reducing_state_descriptor("s", function(a, b) return a * b end))
      end,
      flat_map = function(self, v, out) end }]])
    assert.are.equal(1, r.code)
    assert.matches("already registered with another reduce_function", r.stderr)
  end)

  it("rejects a descriptor of the wrong kind", function()
    local r = run_state_job([[{{"a", 1}}]], [[{
      open = function(self, ctx) ctx:get_map_state(cstream.list_state_descriptor("s")) end,
      flat_map = function(self, v, out) end }]])
    assert.are.equal(1, r.code)
    assert.matches("get_map_state: expected a map_state_descriptor, got a list_state_descriptor", r.stderr)
  end)

  it("reports a state value that cannot be encoded, naming state and operator", function()
    local r = run_state_job([[{{"a", 1}}]], [[{
      open = function(self, ctx) self.s = ctx:get_state(cstream.value_state_descriptor("v")) end,
      flat_map = function(self, v, out) self.s:update({f = function() end}) end }]])
    assert.are.equal(1, r.code)
    assert.matches("value state 'v' of operator 'Flat Map': value: a function cannot be encoded at f", r.stderr)
  end)

  it("rejects connect of a keyed and an unkeyed stream", function()
    local job = h.write_job(HEADER .. [[
local a = env:from_elements({1, 1}):key_by(1)
local b = env:from_elements({1, 2})
a:connect(b):flat_map({ flat_map1 = function() end, flat_map2 = function() end }):print()
env:execute("connect")
]])
    local r = h.run({ "-p", "1", job })
    assert.are.equal(1, r.code)
    assert.matches("job%.lua:5: connect: both streams must be keyed", r.stderr)
  end)
end)

describe("connected keyed streams", function()
  after_each(h.cleanup)

  it("share keyed state between both sides, at -p 1 and -p 2", function()
    for _, p in ipairs({ "1", "2" }) do
      local job = h.write_job(HEADER .. [[
local a = env:from_elements({"x", 1}, {"y", 2}, {"x", 3}):key_by(1)
local b = env:from_elements({"x", 10}, {"y", 20}):key_by(1)
a:connect(b):map({
  open = function(self, ctx) self.total = ctx:get_state(cstream.value_state_descriptor("total")) end,
  map1 = function(self, v) self.total:update((self.total:value() or 0) + v[2]) return {v[1], "L"} end,
  map2 = function(self, v) self.total:update((self.total:value() or 0) + v[2]) return {v[1], "R"} end,
  close = function(self) end,
}):key_by(1):process({
  process_element = function(self, v, ctx, out) out:collect(v) end }):print()
local totals = {}
a:connect(b):flat_map({
  open = function(self, ctx) self.total = ctx:get_state(cstream.value_state_descriptor("t")) end,
  flat_map1 = function(self, v, out) self.total:update((self.total:value() or 0) + v[2]) out:collect({v[1], self.total:value()}) end,
  flat_map2 = function(self, v, out) self.total:update((self.total:value() or 0) + v[2]) out:collect({v[1], self.total:value()}) end,
}):key_by(1):reduce(function(a, b) return b[2] > a[2] and b or a end):print("max")
env:execute("connected")
]])
      local r = h.run({ "-p", p, job })
      assert.are.equal(0, r.code, r.stderr)
      local finals = {}
      for _, l in ipairs(h.lines(r.stdout)) do
        local k, n = l:match("max[:%d]*> %((%a),(%d+)%)")
        if k then finals[k] = math.max(finals[k] or 0, tonumber(n)) end
      end
      assert.are.same({ x = 14, y = 22 }, finals)
    end
  end)
end)
