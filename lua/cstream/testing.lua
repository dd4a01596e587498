-- cstream.testing - test harnesses for a job's operators, usable from
-- busted (or any Lua 5.4 with the cstream.core module on LUA_CPATH), as
-- Flink's KeyedOneInputStreamOperatorTestHarness.
--
--   local testing = require("cstream.testing")
--   local h = testing.keyed(MyProcessFunction, { key_by = function(v) return v.id end })
--   h:open()
--   h:process_element({ id = 1, amount = 0.5 }, 1000)   -- value, timestamp
--   h:process_watermark(61000)                          -- event-time timers fire
--   assert.are.same({ ... }, h:extract_output())
--   h:close()
--
-- The operator runs in the engine's own machinery (host/testing): its
-- operator type, Context, Collector, managed state on the heap backend and
-- timers, as in a worker of a job, with one subtask. Time moves only when
-- the test says so: process_watermark(t) for event time,
-- set_processing_time(t) for processing time (which starts at 0; state TTL
-- reads it too). A rich function (a table) is copied for each harness, as
-- each worker of a job loads its own copy of the script.
local core = require("cstream.core")

local M = {}

-- The method that tells a rich function's kind, in the order looked for.
local KIND_METHODS = {
  { "process_element1", "co_process" }, { "flat_map1", "co_flat_map" }, { "map1", "co_map" },
  { "process_element", "process" }, { "flat_map", "flat_map" }, { "map", "map" },
  { "filter", "filter" }, { "reduce", "reduce" }, { "invoke", "sink" },
}

local KINDS = { process = 1, flat_map = 1, map = 1, filter = 1, reduce = 1, sink = 1,
                co_process = 2, co_flat_map = 2, co_map = 2 }

local Harness = {}
Harness.__index = Harness

-- The names window operators get (testing.window), as in a job's plan.
local window_names = setmetatable({}, { __mode = "k" })

local Snapshot = {}
Snapshot.__index = Snapshot
Snapshot.__name = "cstream.testing.Snapshot"

-- A copy of the rich function's table (nested tables copied too, functions
-- and other values shared, metatables kept), so that harnesses of the same
-- operator do not share what open() stores in self.
local function copy(v, seen)
  if type(v) ~= "table" then return v end
  if seen[v] then return seen[v] end
  local t = {}
  seen[v] = t
  for k, x in next, v do t[copy(k, seen)] = copy(x, seen) end
  return setmetatable(t, getmetatable(v))
end

local function kind_of(operator, opts, fn)
  if opts.kind ~= nil then
    if not KINDS[opts.kind] then
      error(string.format("%s: unknown kind '%s' (process, flat_map, map, filter, "
        .. "reduce, sink, co_process, co_flat_map or co_map)", fn, tostring(opts.kind)), 4)
    end
    return opts.kind
  end
  if type(operator) == "table" then
    for _, m in ipairs(KIND_METHODS) do
      if type(operator[m[1]]) == "function" then return m[2] end
    end
    error(fn .. ": the rich function has none of the methods process_element, "
      .. "flat_map, map, filter, reduce, invoke, process_element1, flat_map1 or map1", 4)
  end
  error(fn .. ": a plain function needs opts.kind ('process', 'flat_map', 'map', "
    .. "'filter', 'reduce' or 'sink')", 4)
end

-- The key selector of opts.key_by: a function, a position or a field name,
-- as KeyedStream's key_by takes.
local function selector(key_by, fn)
  local t = type(key_by)
  if t == "function" then return key_by end
  if math.type(key_by) == "integer" or t == "string" then
    return function(v)
      if type(v) ~= "table" then
        error(string.format("key_by(%q): the record is a %s, not a table", key_by, type(v)), 0)
      end
      return v[key_by]
    end
  end
  error(fn .. ": opts.key_by must be a function, a position or a field name", 4)
end

local function new(operator, opts, keyed, fn, ninputs)
  opts = opts or {}
  if type(operator) ~= "table" and type(operator) ~= "function" then
    error(fn .. ": expected an operator (a function or a rich function table), got "
      .. type(operator), 3)
  end
  if type(opts) ~= "table" then error(fn .. ": opts must be a table", 3) end
  local kind = kind_of(operator, opts, fn)
  if KINDS[kind] ~= ninputs then
    error(string.format("%s: a %s function has %s; use testing.%s", fn, kind,
      KINDS[kind] == 2 and "two inputs" or "one input",
      KINDS[kind] == 2 and "two_input" or "keyed or testing.one_input"), 3)
  end
  if ninputs == 2 then keyed = opts.key_by ~= nil end
  local key_by
  if keyed then
    if opts.key_by == nil then
      error(fn .. ": opts.key_by is missing (the key selector of the keyed stream)", 3)
    end
    local sel = opts.key_by
    if ninputs == 2 and type(sel) == "table" then
      if #sel ~= 2 then error(fn .. ": opts.key_by = { selector1, selector2 }", 3) end
      key_by = { selector(sel[1], fn), selector(sel[2], fn) }
    else
      key_by = selector(sel, fn)
      if ninputs == 2 then key_by = { key_by, key_by } end
    end
  end
  local name = opts.name or window_names[operator] or kind
  local uid = opts.uid or name
  if type(operator) == "table" then operator = copy(operator, {}) end
  local ok, c = pcall(core._harness, operator, kind, keyed, name, uid,
                      opts.max_parallelism or 128)
  if not ok then error(c, 3) end
  return setmetatable({ _c = c, _key_by = key_by, _name = name, _uid = uid,
                        _inputs = ninputs, _wm = {} }, Harness)
end

-- testing.keyed(operator, opts): a harness for an operator on a keyed
-- stream. opts.key_by (required) selects a record's key; opts.kind names
-- the operator's kind when it cannot be told from its methods; opts.name
-- and opts.uid name it (state belongs to the uid, so a snapshot restores
-- into a harness of the same uid); opts.max_parallelism (128).
function M.keyed(operator, opts)
  local h = new(operator, opts, true, "testing.keyed", 1)
  return h
end

-- testing.one_input(operator, opts): a harness for an operator on a
-- stream that is not keyed (no keyed state, no timers; operator state).
function M.one_input(operator, opts)
  local h = new(operator, opts, false, "testing.one_input", 1)
  return h
end

-- testing.two_input(operator, opts): a harness for the function of
-- connected streams (s1:connect(s2)): process_element1/2, flat_map1/2 or
-- map1/2. With opts.key_by = { selector1, selector2 } (or one selector
-- for both) the streams are keyed, as after key_by on each (keyed state,
-- timers: Flink's KeyedCoProcessFunction).
function M.two_input(operator, opts)
  local h = new(operator, opts, false, "testing.two_input", 2)
  return h
end

-- Window operators. testing.window(assigner) and testing.count_window(n[,
-- slide]) give what k:window(assigner) and k:count_window(n, slide) give
-- a job: a WindowedStream, whose allowed_lateness and
-- side_output_late_data configure it and whose reduce, aggregate,
-- process, sum, min or max return the window operator (the process
-- function a job runs for it) for testing.keyed:
--   local op = testing.window(cstream.tumbling_event_time_windows(60000)):aggregate(count, fn)
--   local h = testing.keyed(op, { key_by = "status" })
local function window_stream(assigner, count, slide)
  local window = require("cstream.window")
  return window.windowed_stream(nil, assigner, function(name, op)
    window_names[op] = name
    return op
  end, count, slide)
end

function M.window(assigner)
  require("cstream.window").check_assigner("testing.window", assigner, 2)
  return window_stream(assigner)
end

function M.count_window(n, slide)
  if math.type(n) ~= "integer" or n < 1 then
    error("testing.count_window: the size must be a positive integer, got " .. tostring(n), 2)
  end
  if slide ~= nil and (math.type(slide) ~= "integer" or slide < 1) then
    error("testing.count_window: the slide must be a positive integer, got " .. tostring(slide), 2)
  end
  return window_stream(nil, n, slide)
end

-- Calls the C harness's method, raising its error at the line of the
-- test: invoke is called by a function that a Harness method calls.
local function invoke(self, method, ...)
  local ok, a = pcall(self._c[method], self._c, ...)
  if not ok then error(a, 4) end
  return a
end

-- The same, called by the Harness method itself.
local function call(self, method, ...)
  local r = invoke(self, method, ...)
  return r
end

-- h:open(): initialize_state(ctx) and open(ctx) of the operator.
function Harness:open() call(self, "open") end

-- h:close(): close() of the operator; the output stays readable.
function Harness:close() call(self, "close") end

-- h:destroy() (or a to-be-closed variable): frees the harness now rather
-- than when it is collected.
function Harness:destroy() self._c:destroy() end
Harness.__close = Harness.destroy

-- h:process_element(v[, ts]): the record v, with event time ts (ms) if
-- given, arrives at the operator; on a keyed stream its key (by key_by)
-- becomes the current key.
-- The record v at input (1 or 2), with its key by that input's selector.
local function element(self, v, ts, input)
  local key_by = self._key_by
  if self._inputs == 2 and key_by then key_by = key_by[input] end
  if not key_by then
    invoke(self, "process", v, ts, nil, input)
    return
  end
  local ok, key = pcall(key_by, v)
  if not ok or key == nil then
    error(string.format("cstream.testing: key_by of operator '%s' %s on record %s",
      self._name, ok and "returned nil" or ("failed: " .. tostring(key)),
      core.format(v)), 3)
  end
  invoke(self, "process", v, ts, key, input)
end

function Harness:process_element(v, ts)
  if self._inputs == 2 then
    error("process_element: operator '" .. self._name .. "' has two inputs: use "
      .. "process_element1 or process_element2", 2)
  end
  element(self, v, ts, 1)
end

-- h:process_element1(v[, ts]), h:process_element2(v[, ts]): a record at
-- the first or second input of a two_input harness.
function Harness:process_element1(v, ts)
  if self._inputs ~= 2 then error("process_element1: the harness has one input", 2) end
  element(self, v, ts, 1)
end

function Harness:process_element2(v, ts)
  if self._inputs ~= 2 then error("process_element2: the harness has one input", 2) end
  element(self, v, ts, 2)
end

-- h:process_watermark(t): event time reaches t; event-time timers due by
-- t fire, in time order.
function Harness:process_watermark(t) call(self, "watermark", t) end

-- h:process_watermark1(t), h:process_watermark2(t): the watermark of one
-- input of a two_input harness; the operator's is the smaller of the two
-- (none until both have one), as in a job.
local function input_watermark(self, input, t)
  if self._inputs ~= 2 then
    error("process_watermark" .. input .. ": the harness has one input", 3)
  end
  if math.type(t) ~= "integer" then
    error("process_watermark" .. input .. ": expected a time in milliseconds (an integer)", 3)
  end
  self._wm[input] = math.max(self._wm[input] or t, t)
  local a, b = self._wm[1], self._wm[2]
  if a and b then invoke(self, "watermark", math.min(a, b)) end
end

function Harness:process_watermark1(t) input_watermark(self, 1, t) end
function Harness:process_watermark2(t) input_watermark(self, 2, t) end

-- h:set_processing_time(t): processing time moves to t (ms; it starts at
-- 0); processing-time timers due by t fire.
function Harness:set_processing_time(t) call(self, "processing_time", t) end

-- h:current_processing_time() and h:current_watermark() (nil before the
-- first watermark).
function Harness:current_processing_time() local r = call(self, "now") return r end
function Harness:current_watermark() local r = call(self, "current_watermark") return r end

-- h:set_current_key(k): the key get_state reads (the next record sets its
-- own).
function Harness:set_current_key(k) call(self, "set_key", k) end

local function values(records)
  local out = {}
  for i, r in ipairs(records or {}) do out[i] = r.value end
  return out
end

local function records(list)
  local out = {}
  for i, r in ipairs(list or {}) do out[i] = { value = r.value, timestamp = r.timestamp } end
  return out
end

local function tag_name(tag)
  if type(tag) == "table" and type(tag.name) == "string" then return tag.name end
  if type(tag) == "string" then return tag end
  error("expected an output tag from cstream.output_tag(name) or its name, got "
    .. type(tag), 3)
end

-- h:extract_output(): the values the operator collected so far, in order.
-- h:extract_timestamped_output(): the same as {value = v, timestamp = ts}
-- (ts nil for a record without one).
function Harness:extract_output() local r = values(call(self, "output")) return r end
function Harness:extract_timestamped_output()
  local r = records(call(self, "output"))
  return r
end

-- h:extract_side_output(tag): the values sent to side output tag
-- (cstream.output_tag(name) or its name) so far; empty when none.
function Harness:extract_side_output(tag)
  local r = values(call(self, "side_output", tag_name(tag)))
  return r
end
function Harness:extract_timestamped_side_output(tag)
  local r = records(call(self, "side_output", tag_name(tag)))
  return r
end

-- h:clear_output(): forgets the output collected so far.
function Harness:clear_output() call(self, "clear_output") end

-- h:get_state(name): the operator's state named name: keyed state for the
-- current key (the last record's, or set_current_key's), else operator
-- list state. A value (nil when unset), a list's items or a map's entries
-- as a table; reducing, aggregating and folding state give the stored
-- value (an aggregating state's accumulator).
function Harness:get_state(name) local r = call(self, "state", name) return r end

-- h:snapshot(): snapshot_state(ctx), then the operator's state and timers
-- as a checkpoint holds them.
function Harness:snapshot()
  return setmetatable({ operator = self._uid, bytes = call(self, "snapshot") }, Snapshot)
end

-- h:restore(snapshot): before open, gives a new harness the state and
-- timers of a snapshot (ctx:is_restored() is then true).
function Harness:restore(snapshot)
  if getmetatable(snapshot) ~= Snapshot then
    error("restore: expected a snapshot from h:snapshot(), got " .. type(snapshot), 2)
  end
  if snapshot.operator ~= self._uid then
    error(string.format("restore: the snapshot is of operator uid '%s', this harness "
      .. "runs '%s' (give both the same opts.uid)", snapshot.operator, self._uid), 2)
  end
  call(self, "restore", snapshot.bytes)
end

return M
