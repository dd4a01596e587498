-- cstream.window: Flink's keyed windows, in Lua, on top of the engine's
-- timers and managed keyed state.
--
-- k:window(assigner) gives a WindowedStream; its window function (reduce,
-- aggregate, process) becomes one `process` operator whose rich function is
-- built here. Everything a window holds lives in the operator's managed
-- keyed state, so checkpoints, restores at another parallelism and hot
-- reloads keep open windows with no extra work:
--
--   _window/windows        map: window key -> entry {s=start, e=finish,
--                          sk=state key (merged sessions), acc=accumulator
--                          (reduce, aggregate), n=element count (process),
--                          c=count since the last firing (count windows),
--                          ws=true once per-window state was written}
--   _window/elements       map: "<state key>#<i>" -> i-th element (process,
--                          and sliding count windows)
--   _window/window-state   map: per-window state of ctx:window_state()
--
-- A window key is "<start>,<finish>"; a count window's is "global".
-- Timers are per key and time (the engine deduplicates them), so a timer at
-- t stands for every window of its key whose max timestamp or cleanup time
-- is t: an event-time window fires when the watermark reaches its
-- max_timestamp and is cleared at max_timestamp + allowed lateness; a
-- processing-time window fires and is cleared at its max_timestamp, as in
-- Flink's WindowOperator with EventTimeTrigger / ProcessingTimeTrigger.
--
-- This module is loaded by cstream.lua, which adds KeyedStream:window and
-- KeyedStream:count_window and re-exports the assigner constructors.

local M = {}

local WINDOWS, ELEMENTS, WSTATE = "_window/windows", "_window/elements",
                                  "_window/window-state"
local GLOBAL = "global"

-- ------------------------------------------------------------- checks --

-- Returns v as an integer number of milliseconds, raising at `level`
-- (relative to the caller) when it is not one or when it is not positive
-- (or, with allow_zero, negative).
local function check_ms(what, name, v, level, allow_zero)
  local i = math.type(v) and math.tointeger(v)
  if i == nil then
    error(string.format("%s: the %s must be an integer number of milliseconds, got %s",
                        what, name, tostring(v)), level + 1)
  end
  if i < 0 or (i == 0 and not allow_zero) then
    error(string.format("%s: the %s must be %s, got %d", what, name,
                        allow_zero and "zero or positive" or "positive", i), level + 1)
  end
  return i
end

-- Returns the offset as an integer (0 when nil), raising unless
-- |offset| < bound, the condition Flink's assigners check.
local function check_offset(what, offset, bound_name, bound, level)
  if offset == nil then return 0 end
  local i = math.type(offset) and math.tointeger(offset)
  if i == nil then
    error(string.format("%s: the offset must be an integer number of milliseconds, got %s",
                        what, tostring(offset)), level + 1)
  end
  if i <= -bound or i >= bound then
    error(string.format("%s: the offset must be smaller than the %s in absolute value " ..
                        "(|offset| < %d), got %d", what, bound_name, bound, i), level + 1)
  end
  return i
end

local function is_callable_table(t, method)
  return type(t) == "table" and type(t[method]) == "function"
end

-- Checks that fn is a function or a table with `method`; returns it.
local function check_fn(what, fn, method, level)
  if type(fn) == "function" or is_callable_table(fn, method) then return fn end
  if type(fn) == "table" then
    error(string.format("%s: the table passed has no '%s' method", what, method), level + 1)
  end
  error(string.format("%s: expected a function or a table with a '%s' method, got %s",
                      what, method, type(fn)), level + 1)
end

-- ---------------------------------------------------------- assigners --
-- An assigner is a plain table (no functions, so it can sit in the graph):
-- kind (tumbling, sliding, session), domain (event_time,
-- processing_time), size, slide, offset, gap, merging, name, trigger.

local ASSIGNER = "window_assigner"

local function new_assigner(kind, domain, fields)
  fields.type = ASSIGNER
  fields.kind, fields.domain = kind, domain
  fields.merging = kind == "session"
  fields.trigger = domain == "event_time" and "EventTimeTrigger" or "ProcessingTimeTrigger"
  return fields
end

local function tumbling(what, class, domain, size, offset)
  size = check_ms(what, "size", size, 3)
  offset = check_offset(what, offset, "size", size, 3)
  return new_assigner("tumbling", domain, {
    size = size, slide = size, offset = offset,
    name = string.format("%s(%d%s)", class, size, offset ~= 0 and ", " .. offset or ""),
  })
end

local function sliding(what, class, domain, size, slide, offset)
  size = check_ms(what, "size", size, 3)
  slide = check_ms(what, "slide", slide, 3)
  offset = check_offset(what, offset, "slide", slide, 3)
  return new_assigner("sliding", domain, {
    size = size, slide = slide, offset = offset,
    name = string.format("%s(%d, %d%s)", class, size, slide,
                         offset ~= 0 and ", " .. offset or ""),
  })
end

local function session(what, class, domain, gap)
  gap = check_ms(what, "gap", gap, 3)
  return new_assigner("session", domain, {
    gap = gap, name = string.format("%s(%d)", class, gap),
  })
end

-- Tumbling windows of `size` ms by event time, aligned to the epoch plus
-- `offset` ms (0 by default; |offset| < size).
function M.tumbling_event_time_windows(size, offset)
  local a = tumbling("tumbling_event_time_windows", "TumblingEventTimeWindows",
                     "event_time", size, offset)
  return a -- not a tail call: errors name the caller's line
end

-- Windows of `size` ms starting every `slide` ms, by event time; an
-- element belongs to size / slide of them.
function M.sliding_event_time_windows(size, slide, offset)
  local a = sliding("sliding_event_time_windows", "SlidingEventTimeWindows",
                    "event_time", size, slide, offset)
  return a -- not a tail call: errors name the caller's line
end

-- Sessions by event time: an element opens [ts, ts + gap), and windows that
-- overlap (or touch) merge.
function M.event_time_session_windows(gap)
  local a = session("event_time_session_windows", "EventTimeSessionWindows",
                    "event_time", gap)
  return a -- not a tail call: errors name the caller's line
end

function M.tumbling_processing_time_windows(size, offset)
  local a = tumbling("tumbling_processing_time_windows", "TumblingProcessingTimeWindows",
                     "processing_time", size, offset)
  return a -- not a tail call: errors name the caller's line
end

function M.sliding_processing_time_windows(size, slide, offset)
  local a = sliding("sliding_processing_time_windows", "SlidingProcessingTimeWindows",
                    "processing_time", size, slide, offset)
  return a -- not a tail call: errors name the caller's line
end

function M.processing_time_session_windows(gap)
  local a = session("processing_time_session_windows", "ProcessingTimeSessionWindows",
                    "processing_time", gap)
  return a -- not a tail call: errors name the caller's line
end

-- Raises at level unless a is an assigner made by this module.
function M.check_assigner(what, a, level)
  if type(a) ~= "table" or a.type ~= ASSIGNER then
    error(string.format("%s: expected a window assigner (cstream.tumbling_event_time_windows(size), " ..
                        "sliding_..., ..._session_windows(gap)), got %s", what, type(a)),
          level + 1)
  end
  return a
end

-- The start of the window of `size` with `offset` that holds ts (Flink's
-- TimeWindow.getWindowStartWithOffset; Lua's % is floored, so this also
-- holds for timestamps before the epoch).
local function window_start(ts, offset, size)
  return ts - (ts - offset) % size
end
M.window_start = window_start

-- ------------------------------------------------------ user functions --

local function call_reduce(fn, a, b)
  local r
  if type(fn) == "function" then r = fn(a, b) else r = fn:reduce(a, b) end
  if r == nil then error("window reduce: the reduce function returned nil", 0) end
  return r
end

local function agg_call(agg, name, ...)
  local r = agg[name](...)
  if r == nil and name ~= "get_result" then
    error("window aggregate: the " .. name .. " function returned nil", 0)
  end
  return r
end

local function field_name(field)
  return type(field) == "string" and string.format("%q", field) or tostring(field)
end

-- The built-in reducers of WindowedStream:sum/min/max: like Flink's, the
-- result is the first record with the field aggregated (or, without a
-- field, the aggregate of records that are numbers).
local function field_reducer(agg, field)
  local function number(v, rec)
    if type(v) ~= "number" then
      if field == nil then error(agg .. "(): the record is not a number", 0) end
      error(string.format("%s(%s): field %s is not a number (the record is a %s)", agg,
                          field_name(field), field_name(field), type(rec)), 0)
    end
    return v
  end
  local function combine(x, y)
    if agg == "sum" then return x + y end
    if agg == "min" then return (y < x) and y or x end
    return (x < y) and y or x
  end
  return function(a, b)
    if field == nil then return combine(number(a, a), number(b, b)) end
    local x = number(type(a) == "table" and a[field] or nil, a)
    local y = number(type(b) == "table" and b[field] or nil, b)
    -- a is the window's accumulator, decoded afresh from state: never a
    -- record the job still holds
    a[field] = combine(x, y)
    return a
  end
end

-- ----------------------------------------------- per-window state stores --
-- ctx:window_state() in a process window function: the same descriptors as
-- ctx:get_state(...), scoped to the window being fired. All of them live
-- in one map state under "<window key>|<kind>:<name>|[<map key>]".

-- A map key of a per-window map state as a string, and back.
local function enc_mkey(name, k)
  local mt = math.type(k)
  if mt == "integer" then return "i" .. k end
  if mt == "float" then
    local i = math.tointeger(k)
    if i then return "i" .. i end
    if k ~= k then error("map state '" .. name .. "': NaN cannot be a map key", 3) end
    return "f" .. string.format("%a", k)
  end
  if type(k) == "string" then return "s" .. k end
  if type(k) == "boolean" then return k and "b1" or "b0" end
  error(string.format("map state '%s' (per-window): a key must be a number, a string or " ..
                      "a boolean, got %s", name, type(k)), 3)
end

local function dec_mkey(s)
  local tag, rest = s:sub(1, 1), s:sub(2)
  if tag == "i" then return math.tointeger(tonumber(rest)) end
  if tag == "f" then return tonumber(rest) end
  if tag == "b" then return rest == "1" end
  return rest
end

local function deep_copy(v)
  if type(v) ~= "table" then return v end
  local c = {}
  for k, x in pairs(v) do c[k] = deep_copy(x) end
  return c
end

-- The methods of each per-window state kind. An object has: m (the map
-- state), p (its key), name, d (the descriptor), mark (a function noting
-- that the window has per-window state, for its cleanup).
local WS = { value = {}, list = {}, map = {}, reducing = {}, aggregating = {}, folding = {} }
for _, t in pairs(WS) do t.__index = t end

local function ws_put(self, key, v)
  self.mark()
  self.m:put(key, v)
end

function WS.value:value() return self.m:get(self.p) end
function WS.value:update(v)
  if v == nil then return self.m:remove(self.p) end
  ws_put(self, self.p, v)
end
function WS.value:clear() self.m:remove(self.p) end

function WS.list:get() return self.m:get(self.p) or {} end
function WS.list:add(v)
  if v == nil then error("list state '" .. self.name .. "': nil cannot be added to a list state", 2) end
  local t = self:get()
  t[#t + 1] = v
  ws_put(self, self.p, t)
end
function WS.list:add_all(items)
  local t = self:get()
  for _, v in ipairs(items) do t[#t + 1] = v end
  ws_put(self, self.p, t)
end
function WS.list:update(items)
  if items == nil or #items == 0 then return self.m:remove(self.p) end
  local t = {}
  for i, v in ipairs(items) do t[i] = v end
  ws_put(self, self.p, t)
end
function WS.list:clear() self.m:remove(self.p) end

function WS.map:get(k) return self.m:get(self.p .. enc_mkey(self.name, k)) end
function WS.map:put(k, v) ws_put(self, self.p .. enc_mkey(self.name, k), v) end
function WS.map:put_all(t) for k, v in pairs(t) do self:put(k, v) end end
function WS.map:remove(k) self.m:remove(self.p .. enc_mkey(self.name, k)) end
function WS.map:contains(k) return self.m:contains(self.p .. enc_mkey(self.name, k)) end
-- The (key, value) pairs of this window's map, read before any is returned
-- (so the loop body may change the map).
local function ws_map_pairs(self)
  local out, p = {}, self.p
  for k, v in self.m:entries() do
    if k:sub(1, #p) == p then out[#out + 1] = { dec_mkey(k:sub(#p + 1)), v } end
  end
  return out
end
function WS.map:is_empty() return #ws_map_pairs(self) == 0 end
function WS.map:clear()
  for _, kv in ipairs(ws_map_pairs(self)) do self:remove(kv[1]) end
end
local function ws_iter(list, what)
  local i = 0
  return function()
    i = i + 1
    local kv = list[i]
    if kv == nil then return nil end
    if what == "keys" then return kv[1] end
    if what == "values" then return kv[2] end
    return kv[1], kv[2]
  end
end
function WS.map:entries() return ws_iter(ws_map_pairs(self), "entries") end
function WS.map:keys() return ws_iter(ws_map_pairs(self), "keys") end
function WS.map:values() return ws_iter(ws_map_pairs(self), "values") end

function WS.reducing:get() return self.m:get(self.p) end
function WS.reducing:add(v)
  local cur = self.m:get(self.p)
  if cur ~= nil then v = self.d.reduce_function(cur, v) end
  ws_put(self, self.p, v)
end
function WS.reducing:clear() self.m:remove(self.p) end

function WS.aggregating:get()
  local acc = self.m:get(self.p)
  if acc == nil then return nil end
  return self.d.aggregate_function.get_result(acc)
end
function WS.aggregating:add(v)
  local agg = self.d.aggregate_function
  local acc = self.m:get(self.p)
  if acc == nil then acc = agg.create_accumulator() end
  ws_put(self, self.p, agg.add(v, acc))
end
function WS.aggregating:clear() self.m:remove(self.p) end

function WS.folding:get() return self.m:get(self.p) end
function WS.folding:add(v)
  local acc = self.m:get(self.p)
  if acc == nil then acc = deep_copy(self.d.initial_value) end
  ws_put(self, self.p, self.d.fold_function(acc, v))
end
function WS.folding:clear() self.m:remove(self.p) end

local GETTERS = {
  get_state = "value", get_list_state = "list", get_map_state = "map",
  get_reducing_state = "reducing", get_aggregating_state = "aggregating",
  get_folding_state = "folding",
}

-- The store returned by ctx:window_state().
local WindowStateStore = {}
WindowStateStore.__index = WindowStateStore
for getter, kind in pairs(GETTERS) do
  WindowStateStore[getter] = function(self, d)
    if type(d) ~= "table" or d.kind ~= kind or type(d.name) ~= "string" then
      error(string.format("window_state():%s: expected a %s_state_descriptor, got %s",
                          getter, kind, type(d) == "table" and tostring(d.kind) .. " descriptor"
                          or type(d)), 2)
    end
    local wctx = self._wctx
    return setmetatable({
      m = wctx._op:_state(WSTATE), p = wctx._key .. "|" .. kind .. ":" .. d.name .. "|",
      name = d.name, d = d, mark = function() wctx:_mark_state() end,
    }, WS[kind])
  end
end

-- The store returned by ctx:global_state(): the key's ordinary keyed state.
local GlobalStateStore = {}
GlobalStateStore.__index = GlobalStateStore
for getter in pairs(GETTERS) do
  GlobalStateStore[getter] = function(self, d)
    local ctx = self._ctx
    return ctx[getter](ctx, d)
  end
end

-- ----------------------------------------------------- window context --
-- The ctx a process window function receives (Flink's
-- ProcessWindowFunction.Context).

local WindowContext = {}
WindowContext.__index = WindowContext

-- The window being fired: {start, finish (exclusive), max_timestamp}; a
-- count window is Flink's GlobalWindow, from math.mininteger to
-- math.maxinteger with max_timestamp math.maxinteger.
function WindowContext:window()
  local e = self._entry
  if e.s == nil then
    return { start = math.mininteger, finish = math.maxinteger, max_timestamp = math.maxinteger,
             global = true }
  end
  return { start = e.s, finish = e.e, max_timestamp = e.e - 1 }
end

function WindowContext:current_watermark() return self._ctx:timer_service():current_watermark() end

function WindowContext:current_processing_time()
  return self._ctx:timer_service():current_processing_time()
end

-- ctx:output(tag, v): a side output from the window function.
function WindowContext:output(tag, v) return self._ctx:output(tag, v) end

function WindowContext:get_current_key() return self._ctx:get_current_key() end

function WindowContext:window_state()
  if self._op._spec.assigner and self._op._spec.assigner.merging then
    error("window_state(): per-window state is not supported with merging (session) " ..
          "windows, as in Flink", 2)
  end
  return setmetatable({ _wctx = self }, WindowStateStore)
end

function WindowContext:global_state()
  return setmetatable({ _ctx = self._ctx }, GlobalStateStore)
end

-- Notes in the window's entry that it has per-window state to clear.
function WindowContext:_mark_state()
  local e = self._entry
  if not e.ws then
    e.ws = true
    self._op:_state(WINDOWS):put(self._key, e)
  end
end

-- ---------------------------------------------------------- the operator --
-- The rich function of a window operator: process_element assigns and
-- stores, on_timer fires and clears. self._spec: assigner (nil for count
-- windows), count, slide (count windows), lateness, late_tag, mode
-- ("reduce", "aggregate", "process"), reduce_fn, agg, process_fn.

local Op = {}
Op.__index = Op

-- The map state `name` of this operator, registered on first use.
function Op:_state(name)
  local s = self._states[name]
  if s == nil then
    local cstream = require("cstream")
    s = self._ctx:get_map_state(cstream.map_state_descriptor(name))
    self._states[name] = s
  end
  return s
end

function Op:open(ctx)
  self._ctx = ctx
  self._states = {}
  self._dropped = 0
  self._verbose = os.getenv("CSTREAM_VERBOSE") ~= nil and os.getenv("CSTREAM_VERBOSE") ~= ""
  local pf = self._spec.process_fn
  if type(pf) == "table" and type(pf.open) == "function" then pf:open(ctx) end
end

function Op:close()
  local pf = self._spec.process_fn
  if type(pf) == "table" and type(pf.close) == "function" then pf:close() end
end

-- The cleanup time of an event-time window with max timestamp t: t plus
-- the allowed lateness, saturating.
local function cleanup_time(spec, t)
  local l = spec.lateness
  if t > math.maxinteger - l then return math.maxinteger end
  return t + l
end

local function register(tsvc, event, t)
  if event then tsvc:register_event_time_timer(t) else tsvc:register_processing_time_timer(t) end
end

local function delete(tsvc, event, t)
  if event then tsvc:delete_event_time_timer(t) else tsvc:delete_processing_time_timer(t) end
end

-- Adds v to the window whose entry is e and state key sk.
local function add_to(op, e, sk, v)
  local spec = op._spec
  if spec.mode == "reduce" then
    if e.acc == nil then e.acc = v else e.acc = call_reduce(spec.reduce_fn, e.acc, v) end
  elseif spec.mode == "aggregate" then
    local acc = e.acc
    if acc == nil then acc = agg_call(spec.agg, "create_accumulator") end
    e.acc = agg_call(spec.agg, "add", v, acc)
  else
    local n = (e.n or 0) + 1
    e.n = n
    op:_state(ELEMENTS):put(sk .. "#" .. n, v)
  end
end

-- Calls the user's process window function on contents (an array).
local function call_process(op, ctx, out, e, key, contents)
  local wctx = setmetatable({ _op = op, _ctx = ctx, _entry = e, _key = key }, WindowContext)
  local pf = op._spec.process_fn
  if type(pf) == "function" then
    pf(ctx:get_current_key(), wctx, contents, out)
  else
    pf:process(ctx:get_current_key(), wctx, contents, out)
  end
end

-- Emits the result of an accumulator (reduce, aggregate modes).
local function emit_acc(op, ctx, out, e, key, acc)
  local spec = op._spec
  local r = acc
  if spec.mode == "aggregate" then r = agg_call(spec.agg, "get_result", acc) end
  if spec.process_fn == nil then
    out:collect(r)
  else
    call_process(op, ctx, out, e, key, { r })
  end
end

-- The elements stored under state key sk, indexes first .. last.
local function elements_of(op, sk, first, last)
  local st, contents = op:_state(ELEMENTS), {}
  for i = first, last do contents[#contents + 1] = st:get(sk .. "#" .. i) end
  return contents
end

-- Fires the window (entry e, key key) with what it holds, if anything.
-- Results carry the window's max_timestamp (a count window's is
-- math.maxinteger, Flink's GlobalWindow), whatever fired it.
local function fire(op, ctx, out, e, key)
  local prev = out:_timestamp(e.s == nil and math.maxinteger or e.e - 1)
  if op._spec.mode == "process" then
    local n = e.n or 0
    if n > 0 then call_process(op, ctx, out, e, key, elements_of(op, e.sk or key, 1, n)) end
  elseif e.acc ~= nil then
    emit_acc(op, ctx, out, e, key, e.acc)
  end
  out:_timestamp(prev)
end

-- Clears everything of a window: the user's clear(ctx), its elements, its
-- per-window state, its entry.
local function clear_window(op, ctx, e, key)
  local pf = op._spec.process_fn
  if type(pf) == "table" and type(pf.clear) == "function" then
    pf:clear(setmetatable({ _op = op, _ctx = ctx, _entry = e, _key = key }, WindowContext))
  end
  if e.n and e.n > 0 then
    local st, sk = op:_state(ELEMENTS), e.sk or key
    for i = e.first or 1, e.n do st:remove(sk .. "#" .. i) end
  end
  if e.ws then
    local st, p, doomed = op:_state(WSTATE), key .. "|", {}
    for k in st:keys() do
      if k:sub(1, #p) == p then doomed[#doomed + 1] = k end
    end
    for _, k in ipairs(doomed) do st:remove(k) end
  end
  op:_state(WINDOWS):remove(key)
end

-- A record that no window took: to the late side output, or dropped and
-- counted (reported at most once a second with CSTREAM_VERBOSE).
local function late(op, ctx, v, ts, wm)
  local tag = op._spec.late_tag
  if tag ~= nil then
    ctx:output(tag, v)
    return
  end
  op._dropped = op._dropped + 1
  if op._verbose then
    local now = os.time()
    if op._reported ~= now then
      op._reported = now
      io.stderr:write(string.format("cstream-lua: window operator '%s': dropped a late record " ..
                                    "(timestamp %d, watermark %d); %d dropped so far\n",
                                    ctx:get_task_name(), ts, wm, op._dropped))
    end
  end
end

-- process_element for a non-merging time assigner.
local function time_element(op, v, ctx, out, a, event, t, wm, tsvc)
  local spec = op._spec
  local windows = op:_state(WINDOWS)
  local size, slide = a.size, a.slide
  local skipped = true
  -- The windows holding t, latest start first (Flink's order); a tumbling
  -- window is a sliding one whose slide is its size.
  local s = window_start(t, a.offset, slide)
  while s > t - size do
    local f = s + size
    local max_ts = f - 1
    local cleanup = event and cleanup_time(spec, max_ts) or max_ts
    if not (event and cleanup <= wm) then
      skipped = false
      local key = s .. "," .. f
      local e = windows:get(key)
      local new = e == nil
      if new then e = { s = s, e = f } end
      add_to(op, e, key, v)
      windows:put(key, e)
      if event and max_ts <= wm then
        fire(op, ctx, out, e, key) -- a late record within the allowed lateness
      elseif new then
        register(tsvc, event, max_ts)
      end
      if new and cleanup ~= max_ts then register(tsvc, event, cleanup) end
    end
    s = s - slide
  end
  if skipped and event and cleanup_time(spec, t) <= wm then late(op, ctx, v, t, wm) end
end

-- The (key, entry) pairs of the current key's windows.
local function all_windows(op)
  local list = {}
  for k, e in op:_state(WINDOWS):entries() do list[#list + 1] = { key = k, e = e } end
  return list
end

-- Merges the contents of window m into the entry target (a session merge).
local function merge_into(op, target, m)
  local spec, me = op._spec, m.e
  if spec.mode == "reduce" then
    if me.acc ~= nil then
      target.acc = target.acc == nil and me.acc or call_reduce(spec.reduce_fn, target.acc, me.acc)
    end
  elseif spec.mode == "aggregate" then
    if me.acc ~= nil then
      target.acc = target.acc == nil and me.acc or agg_call(spec.agg, "merge", target.acc, me.acc)
    end
  elseif me.n and me.n > 0 then
    local st, msk = op:_state(ELEMENTS), me.sk or m.key
    for i = 1, me.n do
      local k = msk .. "#" .. i
      local v = st:get(k)
      st:remove(k)
      target.n = (target.n or 0) + 1
      st:put(target.sk .. "#" .. target.n, v)
    end
  end
end

-- process_element for session windows: the new window [t, t + gap) merges
-- with every window of the key it overlaps or touches (Flink's
-- MergingWindowSet). The merged windows' contents go into the one that
-- starts first, which keeps its state key; their timers are deleted.
local function session_element(op, v, ctx, out, a, event, t, wm, tsvc)
  local spec = op._spec
  local windows = op:_state(WINDOWS)
  local all = all_windows(op)
  local rs, rf = t, t + a.gap
  local merged, others = {}, {}
  for _, w in ipairs(all) do
    if w.e.s <= t + a.gap and w.e.e >= t then merged[#merged + 1] = w else others[#others + 1] = w end
  end
  for _, w in ipairs(merged) do
    if w.e.s < rs then rs = w.e.s end
    if w.e.e > rf then rf = w.e.e end
  end
  local max_ts = rf - 1
  local cleanup = event and cleanup_time(spec, max_ts) or max_ts
  if event and cleanup <= wm then
    if cleanup_time(spec, t) <= wm then late(op, ctx, v, t, wm) end
    return
  end
  local key = rs .. "," .. rf
  local e, new
  if #merged == 1 and merged[1].key == key then
    e, new = merged[1].e, false -- inside an existing session
  elseif #merged == 0 then
    e, new = { s = rs, e = rf }, true
  else
    table.sort(merged, function(x, y) return x.e.s < y.e.s end)
    local first = merged[1]
    e = { s = rs, e = rf, sk = first.e.sk or first.key, acc = first.e.acc, n = first.e.n }
    for i = 2, #merged do merge_into(op, e, merged[i]) end
    local deleted = {}
    for _, m in ipairs(merged) do
      windows:remove(m.key)
      local m_max = m.e.e - 1
      local m_clean = event and cleanup_time(spec, m_max) or m_max
      delete(tsvc, event, m_max)
      delete(tsvc, event, m_clean)
      deleted[m_max], deleted[m_clean] = true, true
    end
    -- Timers are per key and time: give back those another window needs.
    for _, w in ipairs(others) do
      local w_max = w.e.e - 1
      local w_clean = event and cleanup_time(spec, w_max) or w_max
      if deleted[w_max] and not (event and w_max <= wm) then register(tsvc, event, w_max) end
      if deleted[w_clean] then register(tsvc, event, w_clean) end
    end
    new = true
  end
  add_to(op, e, e.sk or key, v)
  windows:put(key, e)
  if event and max_ts <= wm then
    fire(op, ctx, out, e, key)
  elseif new then
    register(tsvc, event, max_ts)
  end
  if new and cleanup ~= max_ts then register(tsvc, event, cleanup) end
end

-- process_element for count windows (Flink's GlobalWindows with a
-- CountTrigger: purging for tumbling windows; with a CountEvictor keeping
-- the last `count` elements for sliding ones).
local function count_element(op, v, ctx, out)
  local spec = op._spec
  local windows = op:_state(WINDOWS)
  local e = windows:get(GLOBAL) or {}
  if spec.slide == nil then
    add_to(op, e, GLOBAL, v)
    e.c = (e.c or 0) + 1
    if e.c >= spec.count then
      fire(op, ctx, out, e, GLOBAL)
      clear_window(op, ctx, e, GLOBAL)
    else
      windows:put(GLOBAL, e)
    end
    return
  end
  local st = op:_state(ELEMENTS)
  local first, last = e.first or 1, (e.n or 0) + 1
  st:put(GLOBAL .. "#" .. last, v)
  if last - first + 1 > spec.count then
    st:remove(GLOBAL .. "#" .. first)
    first = first + 1
  end
  e.first, e.n, e.c = first, last, (e.c or 0) + 1
  windows:put(GLOBAL, e)
  if e.c >= spec.slide then
    e.c = 0
    windows:put(GLOBAL, e)
    local contents = elements_of(op, GLOBAL, first, last)
    if spec.mode == "process" then
      call_process(op, ctx, out, e, GLOBAL, contents)
    elseif spec.mode == "reduce" then
      local acc = contents[1]
      for i = 2, #contents do acc = call_reduce(spec.reduce_fn, acc, contents[i]) end
      emit_acc(op, ctx, out, e, GLOBAL, acc)
    else
      local acc = agg_call(spec.agg, "create_accumulator")
      for i = 1, #contents do acc = agg_call(spec.agg, "add", contents[i], acc) end
      emit_acc(op, ctx, out, e, GLOBAL, acc)
    end
  end
end

function Op:process_element(v, ctx, out)
  local spec = self._spec
  if spec.count then return count_element(self, v, ctx, out) end
  local a = spec.assigner
  local tsvc = ctx:timer_service()
  local event = a.domain == "event_time"
  local t
  if event then
    t = ctx:timestamp()
    if t == nil then
      error("event-time window: the record has no timestamp (call " ..
            "assign_timestamps_and_watermarks() before key_by(), or use processing-time windows)", 0)
    end
  else
    t = tsvc:current_processing_time()
  end
  local wm = tsvc:current_watermark()
  if a.merging then return session_element(self, v, ctx, out, a, event, t, wm, tsvc) end
  return time_element(self, v, ctx, out, a, event, t, wm, tsvc)
end

-- A timer at ts: fires the windows of the key whose max timestamp is ts and
-- clears those whose cleanup time is ts (both, for the same window, when
-- there is no allowed lateness or in processing time).
function Op:on_timer(ts, ctx, out)
  local spec = self._spec
  local a = spec.assigner
  if a == nil then return end
  local event = a.domain == "event_time"
  if (ctx:time_domain() == "event_time") ~= event then return end
  local windows = self:_state(WINDOWS)
  local to_fire, to_clear = {}, {}
  if a.merging or ts == math.maxinteger then
    local all = all_windows(self)
    table.sort(all, function(x, y) return x.e.s < y.e.s end)
    for _, w in ipairs(all) do
      local max_ts = w.e.e - 1
      if max_ts == ts then to_fire[#to_fire + 1] = w end
      if (event and cleanup_time(spec, max_ts) or max_ts) == ts then to_clear[#to_clear + 1] = w end
    end
  else
    local key = (ts + 1 - a.size) .. "," .. (ts + 1)
    local e = windows:get(key)
    if e then to_fire[1] = { key = key, e = e } end
    if event and spec.lateness > 0 then
      local f = ts - spec.lateness + 1
      key = (f - a.size) .. "," .. f
      e = windows:get(key)
      if e then to_clear[1] = { key = key, e = e } end
    else
      to_clear = to_fire
    end
  end
  for _, w in ipairs(to_fire) do fire(self, ctx, out, w.e, w.key) end
  for _, w in ipairs(to_clear) do clear_window(self, ctx, w.e, w.key) end
end

-- ------------------------------------------------------- windowed streams --

local WindowedStream = {}
WindowedStream.__index = WindowedStream
M.WindowedStream = WindowedStream

-- A WindowedStream of keyed stream k with assigner a (nil for count
-- windows: count, slide). add_operator(name, fn) adds the window operator
-- (a process node fed by k) and returns its DataStream.
function M.windowed_stream(k, a, add_operator, count, slide)
  return setmetatable({ _keyed = k, _assigner = a, _count = count, _slide = slide,
                        _lateness = 0, _add = add_operator }, WindowedStream)
end

-- Keeps windows lateness ms past their end (event time only, as in
-- Flink): a late record within it fires its window again.
function WindowedStream:allowed_lateness(ms)
  self._lateness = check_ms("allowed_lateness", "lateness", ms, 2, true)
  return self
end

-- Sends records too late for every window to the side output `tag`
-- (result:get_side_output(tag)) instead of dropping them.
function WindowedStream:side_output_late_data(tag)
  local tag_mt = getmetatable(require("cstream").output_tag("late"))
  if type(tag) ~= "table" or getmetatable(tag) ~= tag_mt then
    error("side_output_late_data: expected an output tag (cstream.output_tag(name)), got " ..
          type(tag), 2)
  end
  self._late_tag = tag
  return self
end

local function operator_name(ws, what)
  if ws._assigner then
    return string.format("Window(%s, %s, %s)", ws._assigner.name, ws._assigner.trigger, what)
  end
  if ws._slide then
    return string.format("Window(GlobalWindows(), CountTrigger(%d), CountEvictor(%d), %s)",
                         ws._slide, ws._count, what)
  end
  return string.format("Window(GlobalWindows(), PurgingTrigger(CountTrigger(%d)), %s)",
                       ws._count, what)
end

local function build(ws, mode, what, fields)
  fields.mode = mode
  fields.assigner = ws._assigner
  fields.count, fields.slide = ws._count, ws._slide
  fields.lateness = ws._assigner and ws._assigner.domain == "event_time" and ws._lateness or 0
  fields.late_tag = ws._late_tag
  local op = setmetatable({ _spec = fields }, Op)
  return ws._add(operator_name(ws, what), op)
end

local function check_process_fn(what, fn, level)
  if fn == nil then return nil end
  return check_fn(what, fn, "process", level + 1)
end

-- reduce(fn[, process_fn]): fn(a, b) combines two records; only the
-- running value is kept per window. With process_fn, it receives the
-- reduced value as the only element.
function WindowedStream:reduce(fn, process_fn)
  check_fn("reduce", fn, "reduce", 2)
  check_process_fn("reduce", process_fn, 2)
  return build(self, "reduce", process_fn and "reduce, process" or "reduce",
               { reduce_fn = fn, process_fn = process_fn })
end

-- aggregate(agg[, process_fn]): agg = { create_accumulator(), add(value,
-- acc), get_result(acc), merge(a, b) } (merge is needed by session
-- windows); the accumulator is kept per window and must be storable.
function WindowedStream:aggregate(agg, process_fn)
  if type(agg) ~= "table" then
    error("aggregate: expected an aggregate function table {create_accumulator, add, " ..
          "get_result, merge}, got " .. type(agg), 2)
  end
  local needed = { "create_accumulator", "add", "get_result" }
  if self._assigner and self._assigner.merging then needed[#needed + 1] = "merge" end
  for _, m in ipairs(needed) do
    if type(agg[m]) ~= "function" then
      error("aggregate: the aggregate function has no '" .. m .. "' function" ..
            (m == "merge" and " (session windows merge accumulators)" or ""), 2)
    end
  end
  check_process_fn("aggregate", process_fn, 2)
  return build(self, "aggregate", process_fn and "aggregate, process" or "aggregate",
               { agg = agg, process_fn = process_fn })
end

-- process(fn): fn(key, ctx, elements, out) or a rich table with
-- process(self, key, ctx, elements, out) (and optional open, close,
-- clear(self, ctx)); every element of the window is kept until it fires.
function WindowedStream:process(fn)
  check_fn("process", fn, "process", 2)
  return build(self, "process", "process", { process_fn = fn })
end

-- sum/min/max(field): a reduce keeping the first record with the field
-- aggregated, as Flink's WindowedStream.sum/min/max.
local function field_aggregate(ws, agg, field, level)
  if field ~= nil and type(field) ~= "string" and
     not (math.type(field) == "integer" and field >= 1) then
    error(string.format("%s: expected a position (integer >= 1) or a field name, got %s",
                        agg, type(field)), level + 1)
  end
  return build(ws, "reduce", agg, { reduce_fn = field_reducer(agg, field) })
end

-- (Not tail calls, so that errors name the caller's line.)
function WindowedStream:sum(field) local r = field_aggregate(self, "sum", field, 2) return r end
function WindowedStream:min(field) local r = field_aggregate(self, "min", field, 2) return r end
function WindowedStream:max(field) local r = field_aggregate(self, "max", field, 2) return r end

return M
