-- State time-to-live (descriptor:enable_time_to_live, Flink's
-- StateTtlConfig) on every keyed state kind, as a job sees it: entries
-- expire ttl ms of processing time after their last write (or read, with
-- on_read_and_write), each list element and map entry on its own; expired
-- entries are invisible, or returned once with return_expired_if_not_cleaned_up;
-- checkpoints do not bring expired entries back; the TTL configuration is
-- part of a state's registration; and the bad inputs.
--
-- Time is the test clock (CSTREAM_TEST_CLOCK_MS, test only): it starts
-- where the variable says and moves only by cstream.sleep(ms), which returns
-- at once, so a job moves time by a record that the keyed function turns
-- into cstream.sleep, between the records around it, and nothing depends on
-- the machine's speed. One spec runs on the wall clock. ctest runs the file
-- on the heap backend and again on RocksDB (CSTREAM_SPEC_BACKEND).
local h = require("helpers")

local T0 = 1700000000000
local CLOCK = "CSTREAM_TEST_CLOCK_MS=" .. T0
local ROCKSDB = os.getenv("CSTREAM_SPEC_BACKEND") == "rocksdb"

-- A keyed process function with one state of every kind, all with the TTL
-- config `%s` (Lua arguments of cstream.state_ttl_config), driven by the
-- commands in `%s`: {key, op, args...}; op "sleep" moves the clock, every
-- other op prints (key,op,result).
local COMMAND_JOB = [==[
local cstream = require("cstream")
local env = cstream.get_execution_environment()
local ttl = cstream.state_ttl_config(%s)
local function fmt(v) return cstream.format(v) end
local ops = {
  update = function(s, c) s.value:update(c[3]) end,
  value = function(s) return fmt(s.value:value()) end,
  add = function(s, c) s.list:add(c[3]) end,
  list = function(s) return fmt(s.list:get()) end,
  put = function(s, c) s.map:put(c[3], c[4]) end,
  get = function(s, c) return fmt(s.map:get(c[3])) end,
  contains = function(s, c) return tostring(s.map:contains(c[3])) end,
  is_empty = function(s) return tostring(s.map:is_empty()) end,
  entries = function(s)
    local t = {}
    for k, v in s.map:entries() do t[#t + 1] = k .. "=" .. fmt(v) end
    table.sort(t)
    return table.concat(t, " ")
  end,
  first = function(s) for k in s.map:keys() do return k end end,
  get_each = function(s)
    local t = {}
    for k in s.map:keys() do t[#t + 1] = k .. "=" .. fmt(s.map:get(k)) end
    table.sort(t)
    return table.concat(t, " ")
  end,
  reduce = function(s, c) s.reducing:add(c[3]) end,
  reduced = function(s) return fmt(s.reducing:get()) end,
  aggregate = function(s, c) s.aggregating:add(c[3]) end,
  aggregated = function(s) return fmt(s.aggregating:get()) end,
  fold = function(s, c) s.folding:add(c[3]) end,
  folded = function(s) return fmt(s.folding:get()) end,
}
env:from_collection(%s)
  :key_by(1)
  :process({
    open = function(self, ctx)
      local function d(x) return x:enable_time_to_live(ttl) end
      self.value = ctx:get_state(d(cstream.value_state_descriptor("value")))
      self.list = ctx:get_list_state(d(cstream.list_state_descriptor("list")))
      self.map = ctx:get_map_state(d(cstream.map_state_descriptor("map")))
      self.reducing = ctx:get_reducing_state(d(cstream.reducing_state_descriptor("reducing",
        function(a, b) return a + b end)))
      self.aggregating = ctx:get_aggregating_state(d(cstream.aggregating_state_descriptor(
        "aggregating", { create_accumulator = function() return { 0, 0 } end,
                         add = function(v, acc) return { acc[1] + v, acc[2] + 1 } end,
                         get_result = function(acc) return acc[1] .. "/" .. acc[2] end })))
      self.folding = ctx:get_folding_state(d(cstream.folding_state_descriptor("folding", "",
        function(acc, v) return acc .. v end)))
    end,
    process_element = function(self, c, ctx, out)
      if c[2] == "sleep" then cstream.sleep(c[3]) return end
      local r = ops[c[2]](self, c)
      if r ~= nil then out:collect({ c[1], c[2], r }) end
    end,
  }):uid("ttl")
  :print()
env:execute("ttl")
]==]

-- Runs the commands (a Lua expression) with the TTL config arguments at
-- parallelism p (default 1); returns the printed lines, without "N> ".
local function run_commands(ttl_args, commands_src, p)
  local job = h.write_job(string.format(COMMAND_JOB, ttl_args, commands_src))
  local r = h.run({ "-p", tostring(p or 1), job }, { env = CLOCK })
  assert.are.equal(0, r.code, r.stderr)
  local lines = {}
  for i, l in ipairs(h.lines(r.stdout)) do lines[i] = (l:gsub("^%d+> ", "")) end
  return lines
end

-- The lines grouped by key (the keys sorted), each key's in their order:
-- at -p 2 the keys' outputs interleave, one key's keep their order.
local function by_key(lines)
  local keys, of = {}, {}
  for _, l in ipairs(lines) do
    local k = l:match("^%(([^,]*),") or ""
    if not of[k] then keys[#keys + 1], of[k] = k, {} end
    table.insert(of[k], l)
  end
  table.sort(keys)
  local out = {}
  for _, k in ipairs(keys) do
    for _, l in ipairs(of[k]) do out[#out + 1] = l end
  end
  return out
end

-- Every kind written at once, then read by `reads` (ops of one key).
local WRITE_ALL = [[
  {"k", "update", "v"}, {"k", "add", "a"}, {"k", "put", "x", 1}, {"k", "reduce", 2},
  {"k", "aggregate", 4}, {"k", "fold", "f"},
]]
local READ_ALL = [[
  {"k", "value"}, {"k", "list"}, {"k", "get", "x"}, {"k", "contains", "x"},
  {"k", "is_empty"}, {"k", "entries"}, {"k", "reduced"}, {"k", "aggregated"}, {"k", "folded"},
]]
local ALL_LIVE = { "(k,value,v)", "(k,list,(a))", "(k,get,1)", "(k,contains,true)",
                   "(k,is_empty,false)", "(k,entries,x=1)", "(k,reduced,2)",
                   "(k,aggregated,4/1)", "(k,folded,f)" }
local ALL_GONE = { "(k,value,null)", "(k,list,())", "(k,get,null)", "(k,contains,false)",
                   "(k,is_empty,true)", "(k,entries,)", "(k,reduced,null)",
                   "(k,aggregated,null)", "(k,folded,null)" }

local function concat(...)
  local out = {}
  for _, t in ipairs({ ... }) do
    for _, v in ipairs(t) do out[#out + 1] = v end
  end
  return out
end

describe("state TTL", function()
  after_each(h.cleanup)

  -- Each case keeps its clock moves on the key it reads (the test clock is
  -- one for the process: at -p 2 a sleep on the other subtask could come
  -- anywhere between this key's records).
  for _, p in ipairs({ 1, 2 }) do
    -- at -p 2 the keys' outputs interleave: compared key by key
    local function same(want, got)
      if p == 1 then assert.are.same(want, got) else assert.are.same(by_key(want), by_key(got)) end
    end

    it("every keyed state kind: an entry is visible until ttl ms after its write, then gone, at -p " .. p, function()
      local lines = run_commands("1000", "{" .. WRITE_ALL .. [[
        {"k", "sleep", 999}, ]] .. READ_ALL .. [[
        {"k", "sleep", 1}, ]] .. READ_ALL .. [[
        {"other", "value"}, }]], p)
      same(concat(ALL_LIVE, ALL_GONE, { "(other,value,null)" }), lines)
    end)

    it("on_create_and_write (the default): reads do not refresh an entry, writes do, at -p " .. p, function()
      local lines = run_commands("1000, { update_type = 'on_create_and_write' }", "{" .. WRITE_ALL .. [[
        {"k", "sleep", 600}, ]] .. READ_ALL .. [[
        {"k", "sleep", 600}, ]] .. READ_ALL .. [[
        {"k", "update", 1}, {"k", "sleep", 600}, {"k", "update", 2}, {"k", "sleep", 600},
        {"k", "value"}, }]], p)
      same(concat(ALL_LIVE, ALL_GONE, { "(k,value,2)" }), lines)
    end)

    it("on_read_and_write: every read refreshes what it reads, at -p " .. p, function()
      local lines = run_commands("1000, { update_type = 'on_read_and_write' }", "{" .. WRITE_ALL .. [[
        {"k", "sleep", 600}, ]] .. READ_ALL .. [[
        {"k", "sleep", 600}, ]] .. READ_ALL .. [[
        {"k", "sleep", 1000}, ]] .. READ_ALL .. "}", p)
      same(concat(ALL_LIVE, ALL_LIVE, ALL_GONE), lines)
    end)

    it("on_read_and_write: a map iterator refreshes the entries it reads, also when the loop breaks, at -p " .. p, function()
      local lines = run_commands("1000, { update_type = 'on_read_and_write' }", [[{
        {"k", "put", "a", 1}, {"k", "sleep", 700}, {"k", "put", "b", 2}, {"k", "first"},
        {"k", "sleep", 700}, {"k", "entries"}, {"k", "sleep", 700}, {"k", "entries"},
        {"k", "sleep", 1000}, {"k", "entries"} }]], p)
      -- "first" read one entry (a, the older, or b): it and b live on
      assert.are.equal(4, #lines)
      local first = lines[1]:match("^%(k,first,(%a)%)$")
      assert.is_truthy(first, lines[1])
      same({ "(k,entries," .. (first == "a" and "a=1 b=2" or "b=2") .. ")",
             "(k,entries," .. (first == "a" and "a=1 b=2" or "b=2") .. ")",
             "(k,entries,)" }, { lines[2], lines[3], lines[4] })
    end)

    it("on_read_and_write: reading a map while iterating it does not end the iterator, at -p " .. p, function()
      local lines = run_commands("1000, { update_type = 'on_read_and_write' }", [[{
        {"k", "put", "a", 1}, {"k", "put", "b", 2}, {"k", "sleep", 600}, {"k", "get_each"},
        {"k", "sleep", 600}, {"k", "entries"}, {"k", "sleep", 1000}, {"k", "entries"} }]], p)
      same({ "(k,get_each,a=1 b=2)", "(k,entries,a=1 b=2)", "(k,entries,)" }, lines)
    end)

    it("each list element and each map entry expires on its own, at -p " .. p, function()
      local lines = run_commands("1000", [[{
        {"k", "add", "a"}, {"k", "put", "x", 1}, {"k", "sleep", 600},
        {"k", "add", "b"}, {"k", "put", "y", 2}, {"k", "sleep", 600},
        {"k", "list"}, {"k", "entries"}, {"k", "get", "x"}, {"k", "contains", "y"},
        {"k", "is_empty"}, {"k", "sleep", 600}, {"k", "list"}, {"k", "is_empty"} }]], p)
      same({ "(k,list,(b))", "(k,entries,y=2)", "(k,get,null)", "(k,contains,true)",
             "(k,is_empty,false)", "(k,list,())", "(k,is_empty,true)" }, lines)
    end)

    it("reducing, aggregating and folding state start afresh once their value expired, at -p " .. p, function()
      local lines = run_commands("1000", [[{
        {"k", "reduce", 1}, {"k", "reduce", 2}, {"k", "aggregate", 1}, {"k", "aggregate", 3},
        {"k", "fold", "a"}, {"k", "fold", "b"}, {"k", "reduced"}, {"k", "aggregated"}, {"k", "folded"},
        {"k", "sleep", 1000},
        {"k", "reduce", 5}, {"k", "aggregate", 5}, {"k", "fold", "c"},
        {"k", "reduced"}, {"k", "aggregated"}, {"k", "folded"} }]], p)
      same({ "(k,reduced,3)", "(k,aggregated,4/2)", "(k,folded,ab)",
             "(k,reduced,5)", "(k,aggregated,5/1)", "(k,folded,c)" }, lines)
    end)

    it("return_expired_if_not_cleaned_up: an expired entry is returned once, by the read that removes it, at -p " .. p, function()
      local lines = run_commands("1000, { visibility = 'return_expired_if_not_cleaned_up' }", [[{
        {"k", "update", "v"}, {"k", "add", "a"}, {"k", "put", "x", 1}, {"k", "sleep", 1500},
        {"k", "value"}, {"k", "value"}, {"k", "list"}, {"k", "list"},
        {"k", "get", "x"}, {"k", "get", "x"} }]], p)
      same({ "(k,value,v)", "(k,value,null)", "(k,list,(a))", "(k,list,())",
             "(k,get,1)", "(k,get,null)" }, lines)
    end)
  end

  it("runs on the wall clock: a 200 ms TTL, and a source that sleeps past it", function()
    local job = h.write_job([[
local cstream = require("cstream")
local env = cstream.get_execution_environment()
env:add_source({ run = function(self, ctx)
    ctx:collect({ "k", "write" })
    ctx:collect({ "k", "read" })
    cstream.sleep(700)
    ctx:collect({ "k", "read" })
  end })
  :key_by(1)
  :flat_map({
    open = function(self, ctx)
      self.v = ctx:get_state(cstream.value_state_descriptor("v")
        :enable_time_to_live(cstream.state_ttl_config(200)))
    end,
    flat_map = function(self, r, out)
      if r[2] == "write" then self.v:update("here") return end
      out:collect(tostring(self.v:value()))
    end })
  :print()
env:execute("wall")
]])
    local r = h.run({ "-p", "1", job })
    assert.are.equal(0, r.code, r.stderr)
    assert.are.same({ "here", "nil" }, h.lines(r.stdout))
  end)
end)

describe("state TTL and checkpoints", function()
  after_each(h.cleanup)

  -- arg[1] "write" (at -p 1): a at T0, b at T0 + 700; the clock reaches
  -- T0 + 1200 (a expired, b not) before the source waits for two more
  -- snapshots, so the checkpoint it leaves has the state of that moment.
  -- arg[1] "read": reads a and b, then b again 600 ms later (the record that
  -- moves the clock has b's key, so it comes between b's reads at any
  -- parallelism). arg[2] "plain" asks for the state without a TTL.
  local JOB = [[
local cstream = require("cstream")
local env = cstream.get_execution_environment()
local write = arg[1] == "write"
env:add_source({
  run = function(self, ctx)
    if write then
      for _, r in ipairs({ { "a", "put" }, { "~", "sleep", 700 }, { "b", "put" },
                           { "~", "sleep", 500 } }) do
        ctx:collect(r)
      end
      self.emitted = true
      while (self.after or 0) < 2 do cstream.sleep(0) end
    else
      for _, r in ipairs({ { "a", "get" }, { "b", "get" }, { "b", "sleep", 600 },
                           { "b", "get" } }) do
        ctx:collect(r)
      end
    end
  end,
  snapshot_state = function(self, ctx)
    if self.emitted then self.after = (self.after or 0) + 1 end
  end,
}):uid("gen")
  :key_by(1)
  :flat_map({
    open = function(self, ctx)
      local d = cstream.map_state_descriptor("seen")
      if arg[2] ~= "plain" then d:enable_time_to_live(cstream.state_ttl_config(1000)) end
      self.seen = ctx:get_map_state(d)
    end,
    flat_map = function(self, r, out)
      if r[2] == "sleep" then cstream.sleep(r[3]) return end
      if r[2] == "put" then self.seen:put("at", r[1]) return end
      out:collect({ r[1], tostring(self.seen:get("at")) })
    end,
  }):uid("seen")
  :print()
env:execute("ttl_restore")
]]

  local backend = ROCKSDB and "rocksdb" or "filesystem"

  local function write_checkpoint()
    local dir = h.tmpdir()
    local job = h.write_job(JOB)
    local flags = { "--state-backend", backend, "--checkpoint-dir", dir .. "/chk",
                    "--checkpoint-interval", "50ms", "-p", "1" }
    local args = {}
    for _, f in ipairs(flags) do args[#args + 1] = f end
    args[#args + 1] = job
    args[#args + 1] = "write"
    local r = h.run(args, { env = CLOCK })
    assert.are.equal(0, r.code, r.stderr)
    return flags, job, dir .. "/chk"
  end

  local function read_run(flags, job, clock, p, extra)
    local args = {}
    for _, f in ipairs(flags) do args[#args + 1] = f end
    args[#args] = p -- the value of -p
    args[#args + 1] = "--restore"
    args[#args + 1] = "latest"
    args[#args + 1] = job
    args[#args + 1] = "read"
    args[#args + 1] = extra
    return h.run(args, { env = "CSTREAM_TEST_CLOCK_MS=" .. clock })
  end

  if not ROCKSDB then
    it("filesystem: the checkpoint leaves the expired entry out; restored even with the clock set back, it stays gone", function()
      local flags, job, chk = write_checkpoint()
      local ls = io.popen("ls -d " .. h.quote(chk .. "/ttl_restore") .. "/chk-*")
      local dirs = h.lines(ls:read("a"))
      ls:close()
      assert.are.equal(1, #dirs)
      local r = h.run({ "state", "dump", dirs[1], "--state", "seen" })
      assert.are.equal(0, r.code, r.stderr)
      local lines = h.lines(r.stdout)
      assert.are.equal(1, #lines, r.stdout)
      local rec = h.json_decode(lines[1])
      assert.are.equal("b", rec.key)
      assert.are.equal("at", rec.user_key)
      assert.are.equal("b", rec.value)
      assert.are.equal(T0 + 700, rec.last_access)
      -- at T0, a would still be live, had the checkpoint kept it
      r = read_run(flags, job, T0, "1")
      assert.are.equal(0, r.code, r.stderr)
      assert.are.same({ "(a,nil)", "(b,b)", "(b,b)" }, h.lines(r.stdout))
    end)
  end

  for _, p in ipairs({ "1", "2" }) do
    it(backend .. ": restored at -p " .. p .. ", an expired entry is never read, a live one expires on time", function()
      local flags, job = write_checkpoint()
      local r = read_run(flags, job, T0 + 1200, p)
      assert.are.equal(0, r.code, r.stderr)
      local got, b = {}, {}
      for _, line in ipairs(h.lines(r.stdout)) do
        got[#got + 1] = (line:gsub("^%d+> ", ""))
        if got[#got]:match("^%(b,") then b[#b + 1] = got[#got] end
      end
      assert.are.same({ "(a,nil)", "(b,b)", "(b,nil)" }, h.sorted(got))
      -- b, written at T0 + 700, expires at T0 + 1700, before its second read
      assert.are.same({ "(b,b)", "(b,nil)" }, b)
    end)
  end

  it(backend .. ": a state restored with a TTL and asked for without one is an error naming it", function()
    local flags, job = write_checkpoint()
    local r = read_run(flags, job, T0 + 1200, "1", "plain")
    assert.are.equal(1, r.code)
    assert.matches("get_map_state%('seen'%): state 'seen' of operator 'Flat Map' was registered "
                   .. "%(or restored from a checkpoint%) with a time to live of 1000 ms, "
                   .. "on_create_and_write, never_return_expired and is now asked for with no "
                   .. "time to live: the state cannot be migrated %(StateMigrationException%)",
                   r.stderr)
  end)
end)

describe("state TTL errors", function()
  after_each(h.cleanup)

  -- Runs a script whose top level (line 3 on) is `body`; returns stderr.
  local function fails(body)
    local job = h.write_job("local cstream = require('cstream')\n"
                            .. "local env = cstream.get_execution_environment()\n" .. body)
    local r = h.run({ "-p", "1", job })
    assert.are.equal(1, r.code, r.stderr)
    return r.stderr
  end

  local function plain(s) return (s:gsub("[%(%)%.%%%+%-%*%?%[%]%^%$]", "%%%0")) end

  local cases = {
    { "cstream.state_ttl_config(0)",
      "job.lua:3: state_ttl_config: the time to live must be a positive number of milliseconds, got 0" },
    { "cstream.state_ttl_config(-5)",
      "job.lua:3: state_ttl_config: the time to live must be a positive number of milliseconds, got -5" },
    { "cstream.state_ttl_config('1000')",
      "job.lua:3: state_ttl_config: the time to live must be a positive number of milliseconds, got string" },
    { "cstream.state_ttl_config()",
      "job.lua:3: state_ttl_config: the time to live must be a positive number of milliseconds, got nil" },
    { "cstream.state_ttl_config(0/0)",
      "job.lua:3: state_ttl_config: the time to live must be a positive number of milliseconds, got " },
    { "cstream.state_ttl_config(1.5)",
      "job.lua:3: state_ttl_config: the time to live must be a whole number of milliseconds, got 1.5" },
    { "cstream.state_ttl_config(1000, { update_type = 'on_read' })",
      'job.lua:3: state_ttl_config: update_type must be "on_create_and_write" or ' ..
      '"on_read_and_write", got "on_read"' },
    { "cstream.state_ttl_config(1000, { visibility = true })",
      'job.lua:3: state_ttl_config: visibility must be "never_return_expired" or ' ..
      '"return_expired_if_not_cleaned_up", got boolean' },
    { "cstream.state_ttl_config(1000, { updatetype = 'on_read_and_write' })",
      'job.lua:3: state_ttl_config: unknown option "updatetype" (the options are update_type and visibility)' },
    { "cstream.state_ttl_config(1000, 'on_read_and_write')",
      "job.lua:3: state_ttl_config: expected a table of options, got string" },
    { "local d = cstream.value_state_descriptor('v')\nd.enable_time_to_live(cstream.state_ttl_config(10))",
      "job.lua:4: enable_time_to_live: expected a state descriptor (call it as " ..
      "descriptor:enable_time_to_live(config)), got a state_ttl_config" },
    { "local d = cstream.value_state_descriptor('v')\nd.enable_time_to_live({ kind = 'value', name = 'v' }, cstream.state_ttl_config(10))",
      "job.lua:4: enable_time_to_live: expected a state descriptor (call it as " ..
      "descriptor:enable_time_to_live(config)), got table" },
    { "cstream.list_state_descriptor('l'):enable_time_to_live(1000)",
      "job.lua:3: enable_time_to_live: expected a cstream.state_ttl_config(ms), got 1000" },
    { "cstream.map_state_descriptor('m'):enable_time_to_live({ ttl = 1000 })",
      "job.lua:3: enable_time_to_live: expected a cstream.state_ttl_config(ms), got table" },
  }
  for _, c in ipairs(cases) do
    it(c[1]:gsub("\n", " ") .. " is an error naming the line", function()
      assert.matches(plain(c[2]), fails(c[1]))
    end)
  end

  it("a state registered with a TTL and then without one, in one job, is an error naming it", function()
    local err = fails([[
env:from_elements({ 1, 1 }):key_by(1):flat_map({
  open = function(self, ctx)
    local ttl = cstream.state_ttl_config(10, { update_type = "on_read_and_write" })
    self.a = ctx:get_list_state(cstream.list_state_descriptor("l"):enable_time_to_live(ttl))
    self.b = ctx:get_list_state(cstream.list_state_descriptor("l"):enable_time_to_live(
      cstream.state_ttl_config(20)))
  end,
  flat_map = function(self, v, out) end }):print()
env:execute("twice")
]])
    assert.matches(plain("job.lua:7: get_list_state('l'): state 'l' of operator 'Flat Map' was "
                         .. "registered (or restored from a checkpoint) with a time to live of 10 ms, "
                         .. "on_read_and_write, never_return_expired and is now asked for with a time "
                         .. "to live of 20 ms, on_create_and_write, never_return_expired: the state "
                         .. "cannot be migrated (StateMigrationException)"), err)
  end)

  it("operator state with a TTL is an error naming the state", function()
    local err = fails([[
env:from_elements(1):add_sink({
  invoke = function() end,
  initialize_state = function(self, ctx)
    ctx:get_operator_state_store():get_list_state(cstream.list_state_descriptor("buf")
      :enable_time_to_live(cstream.state_ttl_config(10)))
  end })
env:execute("opstate")
]])
    assert.matches(plain("get_list_state('buf'): a time to live is for keyed state; operator "
                         .. "state does not expire"), err)
  end)
end)
