-- cstream: the Lua side of the cstream-lua API.
--
-- A job script builds a logical graph with these calls; env:execute() hands
-- the graph to the C engine (cstream.core). The same script runs once in a
-- planning state and once in every worker's state, so everything here must
-- be deterministic: node ids are positions in creation order.

local core = require("cstream.core")
local window = require("cstream.window")

local M = {}

M.VERSION = core.VERSION

-- ------------------------------------------------------------- helpers --

local function kind_error(what, expected, got, level)
  error(string.format("%s: expected %s, got %s", what, expected, type(got)),
        level + 1)
end

-- Checks that fn is a function or a table providing method `method`
-- (a rich function); returns it unchanged.
local function check_fn(what, fn, method, level)
  local t = type(fn)
  if t == "function" then return fn end
  if t == "table" then
    if type(fn[method]) ~= "function" then
      error(string.format("%s: the table passed has no '%s' method", what, method),
            level + 1)
    end
    return fn
  end
  kind_error(what, "a function or a table with a '" .. method .. "' method", fn,
             level + 1)
end

local function check_positive_int(what, n, level)
  if math.type(n) ~= "integer" or n < 1 then
    error(string.format("%s: expected a positive integer, got %s", what,
                        tostring(n)), level + 1)
  end
  return n
end

-- A key selector is a position (integer), a field name (string) or a function.
local function check_key(what, key, level)
  local t = type(key)
  if t == "string" or t == "function" then return key end
  if math.type(key) == "integer" and key >= 1 then return key end
  kind_error(what, "a position (integer >= 1), a field name or a function",
             key, level + 1)
end

-- ---------------------------------------------------------- environment --

local Env = {}
Env.__index = Env

local DataStream = {}
DataStream.__index = DataStream
local KeyedStream = setmetatable({}, { __index = DataStream })
KeyedStream.__index = KeyedStream
local ConnectedStreams = {}
ConnectedStreams.__index = ConnectedStreams

local the_env

-- Returns the job's execution environment (one per Lua state).
function M.get_execution_environment()
  if not the_env then
    the_env = setmetatable({
      _nodes = {},
      _parallelism = nil,
      _max_parallelism = nil,
      _checkpoint_interval = nil,
      _backend = nil,
      _executed = false,
    }, Env)
  end
  return the_env
end

function Env:set_parallelism(n)
  self._parallelism = check_positive_int("set_parallelism", n, 2)
  return self
end

function Env:get_parallelism()
  return self._parallelism or core.default_parallelism()
end

function Env:set_max_parallelism(n)
  check_positive_int("set_max_parallelism", n, 2)
  if n > 32768 then
    error("set_max_parallelism: at most 32768, got " .. n, 2)
  end
  self._max_parallelism = n
  return self
end

function Env:get_max_parallelism()
  return self._max_parallelism or 128
end

function Env:enable_checkpointing(ms)
  check_positive_int("enable_checkpointing", ms, 2)
  self._checkpoint_interval = ms
  return self
end

function Env:set_state_backend(backend)
  if type(backend) ~= "table" or type(backend.kind) ~= "string" then
    error("set_state_backend: expected a backend from cstream.memory_state_backend(),"
          .. " cstream.fs_state_backend() or cstream.rocksdb_state_backend()", 2)
  end
  self._backend = backend
  return self
end

local function add_node(env, node)
  if env._executed then
    error("the job graph cannot change after execute()", 3)
  end
  local nodes = env._nodes
  node.index = #nodes + 1
  node.inputs = node.inputs or {}
  nodes[#nodes + 1] = node
  return node
end

local function new_stream(env, node, mt)
  return setmetatable({ env = env, node = node }, mt or DataStream)
end

-- ------------------------------------------------------------- sources --

function Env:from_elements(...)
  local n = select("#", ...)
  if n == 0 then error("from_elements: at least one element is needed", 2) end
  local elements = { ... }
  for i = 1, n do
    if elements[i] == nil then
      error("from_elements: element " .. i .. " is nil", 2)
    end
  end
  return new_stream(self, add_node(self, {
    kind = "source_elements", name = "Source: from_elements",
    elements = elements, count = n, parallelism = 1,
  }))
end

function Env:from_collection(list)
  if type(list) ~= "table" then kind_error("from_collection", "a table", list, 2) end
  local n = #list
  return new_stream(self, add_node(self, {
    kind = "source_elements", name = "Source: from_collection",
    elements = list, count = n, parallelism = 1,
  }))
end

function Env:read_text_file(path)
  if type(path) ~= "string" then kind_error("read_text_file", "a path", path, 2) end
  path = path:gsub("^file://", "")
  return new_stream(self, add_node(self, {
    kind = "source_file", name = "Source: read_text_file " .. path, path = path,
  }))
end

function Env:socket_text_stream(host, port, delimiter)
  if type(host) ~= "string" then kind_error("socket_text_stream", "a host name", host, 2) end
  if math.type(port) ~= "integer" or port < 1 or port > 65535 then
    error("socket_text_stream: expected a port number 1..65535, got " .. tostring(port), 2)
  end
  if delimiter ~= nil and (type(delimiter) ~= "string" or #delimiter ~= 1) then
    error("socket_text_stream: the delimiter must be a one-character string", 2)
  end
  return new_stream(self, add_node(self, {
    kind = "source_socket", name = "Source: socket_text_stream",
    host = host, port = port, delimiter = delimiter or "\n", parallelism = 1,
  }))
end

-- Options shared by kafka_source and kafka_sink: strings where strings are
-- expected, and a properties table of librdkafka settings (string keys,
-- string, number or boolean values).
local function check_kafka_common(what, o, level)
  if type(o) ~= "table" then kind_error(what, "a table of options", o, level + 1) end
  if o.bootstrap_servers ~= nil and type(o.bootstrap_servers) ~= "string" then
    kind_error(what .. ": bootstrap_servers", "a string 'host:port,...'",
               o.bootstrap_servers, level + 1)
  end
  if o.properties ~= nil then
    if type(o.properties) ~= "table" then
      kind_error(what .. ": properties", "a table of librdkafka settings", o.properties,
                 level + 1)
    end
    for k, v in pairs(o.properties) do
      local tv = type(v)
      if type(k) ~= "string" or (tv ~= "string" and tv ~= "number" and tv ~= "boolean") then
        error(string.format("%s: properties: expected string keys and string, number "
                            .. "or boolean values, got %s = %s", what, tostring(k),
                            tostring(v)), level + 1)
      end
    end
  end
end

-- A Kafka consumer source (librdkafka). Each subtask reads the partitions
-- p with p % parallelism == subtask; records are tables {key, value,
-- partition, offset, timestamp, topic}; the Kafka timestamp is the
-- record's event time, or what watermark_strategy's extractor(record,
-- kafka_timestamp) returns. Offsets are the checkpointed position.
function Env:kafka_source(o)
  check_kafka_common("kafka_source", o, 2)
  local topics = o.topics
  if o.topic ~= nil then
    if type(o.topic) ~= "string" then kind_error("kafka_source: topic", "a string", o.topic, 2) end
    if topics ~= nil then error("kafka_source: give topic or topics, not both", 2) end
    topics = { o.topic }
  end
  if type(topics) ~= "table" or #topics == 0 then
    error("kafka_source: a topic (topic = \"name\") or topics = {...} is needed", 2)
  end
  for i, t in ipairs(topics) do
    if type(t) ~= "string" or t == "" then kind_error("kafka_source: topics[" .. i .. "]", "a topic name", t, 2) end
  end
  local so = o.starting_offsets or "earliest"
  if type(so) == "table" then
    for p, off in pairs(so) do
      if math.type(p) ~= "integer" or p < 0 or math.type(off) ~= "integer" or off < 0 then
        error("kafka_source: starting_offsets: expected {[partition] = offset} with "
              .. "integers >= 0, got [" .. tostring(p) .. "] = " .. tostring(off), 2)
      end
    end
  elseif so ~= "earliest" and so ~= "latest" and so ~= "committed" then
    error("kafka_source: starting_offsets: expected \"earliest\", \"latest\", "
          .. "\"committed\" or {[partition] = offset}, got " .. tostring(so), 2)
  end
  local vf = o.value_format or "string"
  if vf ~= "string" and vf ~= "json" and vf ~= "raw" then
    error("kafka_source: value_format: expected \"string\", \"json\" or \"raw\", got "
          .. tostring(vf), 2)
  end
  if o.group_id ~= nil and type(o.group_id) ~= "string" then
    kind_error("kafka_source: group_id", "a string", o.group_id, 2)
  end
  if o.bounded ~= nil and type(o.bounded) ~= "boolean" then
    kind_error("kafka_source: bounded", "a boolean", o.bounded, 2)
  end
  local ws = o.watermark_strategy
  if ws ~= nil and not M._internal.is_watermark_strategy(ws) then
    kind_error("kafka_source: watermark_strategy", "a strategy from cstream.watermark_strategy",
               ws, 2)
  end
  return new_stream(self, add_node(self, {
    kind = "source_kafka", name = "Source: kafka_source " .. table.concat(topics, ","),
    kafka = { bootstrap_servers = o.bootstrap_servers, topics = topics,
              group_id = o.group_id, starting_offsets = so, value_format = vf,
              properties = o.properties or {}, bounded = o.bounded or false,
              -- per-partition watermarks (Flink's fromSource(source, strategy)):
              -- the strategy runs for each partition, the subtask's watermark
              -- is the minimum over its partitions that are not idle
              watermarks = ws and ws.watermarks, bound = ws and ws.bound,
              idleness = ws and ws.idleness, extractor = ws and ws.extractor },
  }))
end

function Env:add_source(src)
  check_fn("add_source", src, "run", 2)
  if type(src) == "function" then src = { run = function(_, ctx) return src(ctx) end } end
  return new_stream(self, add_node(self, {
    kind = "source_custom", name = "Source: Custom Source", fn = src, parallelism = 1,
  }))
end

-- ------------------------------------------------------ transformations --

-- Adds a one-input operator fed by stream s. The edge is the stream's
-- pending partitioning (set by key_by, rebalance, broadcast) or forward.
local function one_input(s, kind, name, fn, extra, mt)
  local node = extra or {}
  node.kind, node.name, node.fn = kind, name, fn
  node.inputs = { { node = s.node.index, partition = s.partition or "forward",
                    key = s.key, side = s.side } }
  node.keyed = s.partition == "hash"
  return new_stream(s.env, add_node(s.env, node), mt)
end

function DataStream:map(fn)
  return one_input(self, "map", "Map", check_fn("map", fn, "map", 2))
end

function DataStream:flat_map(fn)
  return one_input(self, "flat_map", "Flat Map", check_fn("flat_map", fn, "flat_map", 2))
end

function DataStream:filter(fn)
  return one_input(self, "filter", "Filter", check_fn("filter", fn, "filter", 2))
end

function DataStream:process(fn)
  return one_input(self, "process", "Process",
                   check_fn("process", fn, "process_element", 2))
end

function DataStream:key_by(key)
  check_key("key_by", key, 2)
  return setmetatable({ env = self.env, node = self.node, partition = "hash",
                        key = key, side = self.side }, KeyedStream)
end

function DataStream:rebalance()
  return setmetatable({ env = self.env, node = self.node, partition = "rebalance",
                        side = self.side }, DataStream)
end

function DataStream:broadcast()
  return setmetatable({ env = self.env, node = self.node, partition = "broadcast",
                        side = self.side }, DataStream)
end

function DataStream:name(n)
  if type(n) ~= "string" then kind_error("name", "a string", n, 2) end
  self.node.name = n
  return self
end

function DataStream:uid(u)
  if type(u) ~= "string" or u == "" then kind_error("uid", "a non-empty string", u, 2) end
  for _, other in ipairs(self.env._nodes) do
    if other ~= self.node and other.uid == u then
      error("uid: '" .. u .. "' is already used by another operator", 2)
    end
  end
  self.node.uid = u
  return self
end

function DataStream:set_parallelism(n)
  check_positive_int("set_parallelism", n, 2)
  local k = self.node.kind
  if n > 1 and (k == "source_elements" or k == "source_socket") then
    error("set_parallelism: " .. k:gsub("^source_", "") ..
          " is a non-parallel source (parallelism 1)", 2)
  end
  self.node.parallelism = n
  return self
end

function DataStream:get_parallelism()
  return self.node.parallelism or self.env:get_parallelism()
end

-- Rolling aggregations on a keyed stream: the field is a position or a name;
-- without one, the records themselves are numbers.
local function rolling(k, agg, field, level)
  if field ~= nil and type(field) ~= "string" and
     not (math.type(field) == "integer" and field >= 1) then
    kind_error(agg, "a position (integer >= 1) or a field name", field, level + 1)
  end
  return one_input(k, "reduce", agg:gsub("^%l", string.upper), nil,
                   { agg = agg, field = field })
end

function KeyedStream:sum(field) return rolling(self, "sum", field, 2) end
function KeyedStream:min(field) return rolling(self, "min", field, 2) end
function KeyedStream:max(field) return rolling(self, "max", field, 2) end

function KeyedStream:reduce(fn)
  check_fn("reduce", fn, "reduce", 2)
  return one_input(self, "reduce", "Keyed Reduce", fn, { agg = "reduce" })
end

-- -------------------------------------------------------------- windows --
-- Keyed windows (cstream/window.lua): k:window(assigner) and
-- k:count_window(n[, slide]) give a WindowedStream whose window function
-- (reduce, aggregate, process) becomes one process operator.

function DataStream:window()
  error("window() needs a keyed stream (use key_by first)", 2)
end

function DataStream:count_window()
  error("count_window() needs a keyed stream (use key_by first)", 2)
end

local function window_operator(k)
  return function(name, fn) return one_input(k, "process", name, fn) end
end

function KeyedStream:window(assigner)
  window.check_assigner("window", assigner, 2)
  return window.windowed_stream(self, assigner, window_operator(self))
end

-- Tumbling count windows of n records, or with slide, windows of the last
-- n records every slide records (Flink's countWindow).
function KeyedStream:count_window(n, slide)
  if math.type(n) ~= "integer" or n < 1 then
    error("count_window: the size must be a positive integer, got " .. tostring(n), 2)
  end
  if slide ~= nil and (math.type(slide) ~= "integer" or slide < 1) then
    error("count_window: the slide must be a positive integer, got " .. tostring(slide), 2)
  end
  return window.windowed_stream(self, nil, window_operator(self), n, slide)
end

for _, name in ipairs({ "tumbling_event_time_windows", "sliding_event_time_windows",
                        "event_time_session_windows", "tumbling_processing_time_windows",
                        "sliding_processing_time_windows", "processing_time_session_windows" }) do
  M[name] = window[name]
end

-- --------------------------------------------------- connected streams --

function DataStream:connect(other)
  if getmetatable(other) ~= DataStream and getmetatable(other) ~= KeyedStream then
    kind_error("connect", "a stream", other, 2)
  end
  if other.env ~= self.env then error("connect: streams of different environments", 2) end
  local a_keyed, b_keyed = self.partition == "hash", other.partition == "hash"
  if a_keyed ~= b_keyed then
    error("connect: both streams must be keyed (key_by) or neither", 2)
  end
  return setmetatable({ env = self.env, a = self, b = other }, ConnectedStreams)
end

local function two_input(c, kind, name, fn)
  local function edge(s)
    return { node = s.node.index, partition = s.partition or "forward", key = s.key,
             side = s.side }
  end
  local node = { kind = kind, name = name, fn = fn,
                 inputs = { edge(c.a), edge(c.b) },
                 keyed = c.a.partition == "hash" }
  return new_stream(c.env, add_node(c.env, node))
end

function ConnectedStreams:flat_map(fn)
  if type(fn) ~= "table" or type(fn.flat_map1) ~= "function"
     or type(fn.flat_map2) ~= "function" then
    error("connect(...):flat_map: expected a table with 'flat_map1' and 'flat_map2' methods", 2)
  end
  return two_input(self, "co_flat_map", "Co-Flat Map", fn)
end

function ConnectedStreams:map(fn)
  if type(fn) ~= "table" or type(fn.map1) ~= "function" or type(fn.map2) ~= "function" then
    error("connect(...):map: expected a table with 'map1' and 'map2' methods", 2)
  end
  return two_input(self, "co_map", "Co-Map", fn)
end

-- Flink's (Keyed)CoProcessFunction: process_element1(self, v, ctx, out)
-- and process_element2, with state and, on keyed streams, timers
-- (on_timer(self, ts, ctx, out)) shared by both inputs.
function ConnectedStreams:process(fn)
  if type(fn) ~= "table" or type(fn.process_element1) ~= "function"
     or type(fn.process_element2) ~= "function" then
    error("connect(...):process: expected a table with 'process_element1' and"
          .. " 'process_element2' methods", 2)
  end
  return two_input(self, "co_process", "Co-Process", fn)
end

function ConnectedStreams:key_by(k1, k2)
  check_key("key_by", k1, 2)
  check_key("key_by", k2, 2)
  return setmetatable({ env = self.env, a = self.a:key_by(k1), b = self.b:key_by(k2) },
                      ConnectedStreams)
end

-- --------------------------------------------------------------- sinks --

function DataStream:print(prefix)
  if prefix ~= nil and type(prefix) ~= "string" then kind_error("print", "a string", prefix, 2) end
  return one_input(self, "sink_print", "Sink: Print to Std. Out", nil, { prefix = prefix })
end

function DataStream:print_to_err(prefix)
  return one_input(self, "sink_print", "Sink: Print to Std. Err", nil,
                   { prefix = prefix, stderr = true })
end

function DataStream:write_as_text(path)
  if type(path) ~= "string" then kind_error("write_as_text", "a path", path, 2) end
  return one_input(self, "sink_file", "Sink: write_as_text", nil,
                   { path = (path:gsub("^file://", "")) })
end

-- A Kafka producer sink (librdkafka): values are strings as they are,
-- other records rendered as print renders them, or value(record) when
-- given; key(record) gives the message key. delivery "at_least_once"
-- flushes at every checkpoint; "exactly_once" writes each checkpoint's
-- records in a Kafka transaction committed when the checkpoint completes.
function DataStream:kafka_sink(o)
  check_kafka_common("kafka_sink", o, 2)
  if type(o.topic) ~= "string" or o.topic == "" then
    kind_error("kafka_sink: topic", "a topic name", o.topic, 2)
  end
  for _, f in ipairs({ "key", "value" }) do
    if o[f] ~= nil and type(o[f]) ~= "function" then
      kind_error("kafka_sink: " .. f, "a function(record)", o[f], 2)
    end
  end
  local d = o.delivery or "at_least_once"
  if d ~= "at_least_once" and d ~= "exactly_once" then
    error("kafka_sink: delivery: expected \"at_least_once\" or \"exactly_once\", got "
          .. tostring(d), 2)
  end
  if o.transactional_id_prefix ~= nil and (type(o.transactional_id_prefix) ~= "string"
                                           or o.transactional_id_prefix == "") then
    kind_error("kafka_sink: transactional_id_prefix", "a non-empty string",
               o.transactional_id_prefix, 2)
  end
  -- key and value travel as the fields of the node's function table, so
  -- hot reload swaps them as it swaps rich functions.
  return one_input(self, "sink_kafka", "Sink: kafka_sink " .. o.topic,
                   { key = o.key, value = o.value }, {
    kafka = { bootstrap_servers = o.bootstrap_servers, topic = o.topic, delivery = d,
              transactional_id_prefix = o.transactional_id_prefix,
              properties = o.properties or {} },
  })
end

function DataStream:add_sink(fn)
  check_fn("add_sink", fn, "invoke", 2)
  return one_input(self, "sink_custom", "Sink: Unnamed", fn)
end

-- ----------------------------------------------------------- execution --

-- A description of the graph's structure, equal between runs of a
-- deterministic script; the engine compares the planning run's with each
-- worker's.
local function fingerprint(env)
  local parts = {}
  for _, n in ipairs(env._nodes) do
    local p = { n.index, n.kind, n.uid or "", tostring(n.parallelism or ""),
                tostring(n.agg or ""), tostring(n.count or "") }
    for _, e in ipairs(n.inputs) do
      p[#p + 1] = string.format("%d/%s/%s/%s", e.node, e.partition,
                                type(e.key) == "function" and "fn" or tostring(e.key),
                                e.side or "")
    end
    parts[#parts + 1] = table.concat(p, ",")
  end
  return table.concat(parts, ";")
end

function Env:execute(name)
  if name ~= nil and type(name) ~= "string" then kind_error("execute", "a job name", name, 2) end
  if #self._nodes == 0 then error("execute: the job has no operators", 2) end
  local has_sink = false
  for _, n in ipairs(self._nodes) do
    if n.kind:match("^sink_") then has_sink = true end
  end
  if not has_sink then
    error("execute: the job has no sink (add print(), write_as_text() or add_sink())", 2)
  end
  local group, partitions = core.cluster(self)
  if group then require("cstream.group").rewrite(self, group, partitions) end
  self._executed = true
  return core.execute(self, name or "cstream-lua job", fingerprint(self))
end

-- ---------------------------------------------------------- hot reload --
-- Used by the engine for --watch; not part of the public API.

-- What an operator's code is made of, for --watch to tell which operators
-- a reload changed and whether a key selector changed: its function (or a
-- rich table: methods and plain fields, and its metatable), and,
-- recursively, everything these reach through upvalues (functions, tables,
-- plain values, the local modules they use, the job's own globals). A
-- function counts by its stripped bytecode without line numbers, so
-- editing a comment or moving the function is no change; a module of the
-- standard library or of cstream counts by its name only. The walk stops after WALK_LIMIT values (a change
-- past them in a huge table goes unseen).
local WALK_LIMIT = 200000

local STD_GLOBALS = {}
for _, k in ipairs({ "_G", "_VERSION", "arg", "assert", "collectgarbage", "coroutine",
                     "debug", "dofile", "error", "getmetatable", "io", "ipairs", "load",
                     "loadfile", "math", "next", "os", "package", "pairs", "pcall", "print",
                     "rawequal", "rawget", "rawlen", "rawset", "require", "select",
                     "setmetatable", "string", "table", "tonumber", "tostring", "type",
                     "utf8", "warn", "xpcall" }) do
  STD_GLOBALS[k] = true
end

-- The path of a module of the job's own (found on package.path outside
-- system directories and cstream's), or nil.
local function local_module_path(name)
  if type(name) ~= "string" or name == "cstream" or name:match("^cstream%.") then return nil end
  local path = package.searchpath(name, package.path)
  if path == nil or path:match("^/usr/") then return nil end
  return path
end

-- The tables and functions that count by a name: modules other than the
-- job's own, and the API's classes.
local function opaque_values()
  local opaque = {}
  for name, mod in pairs(package.loaded) do
    if (type(mod) == "table" or type(mod) == "function") and mod ~= _G
       and not local_module_path(name) then
      opaque[mod] = "module " .. tostring(name)
    end
  end
  for name, mt in pairs({ Env = Env, DataStream = DataStream, KeyedStream = KeyedStream,
                          ConnectedStreams = ConnectedStreams,
                          StateDescriptor = M._StateDescriptor,
                          StateTtlConfig = M._StateTtlConfig }) do
    opaque[mt] = name
  end
  return opaque
end

-- A varint of a binary chunk (ldump.c dumpSize: 7 bits a byte, most
-- significant first, the last byte flagged) at pos: value, next pos.
local function chunk_varint(s, pos)
  local x = 0
  repeat
    local b = s:byte(pos)
    if b == nil then error("truncated chunk") end
    pos = pos + 1
    x = x * 128 + (b & 0x7f)
  until b >= 0x80
  return x, pos
end

-- A stripped binary chunk of Lua 5.4 without the lines where each function
-- starts and ends (the only line numbers string.dump(f, true) keeps), so
-- that a function moved by lines added above it is the same code. Raises
-- on a chunk of another format.
local function without_lines(s)
  if s:sub(1, 4) ~= "\27Lua" or s:byte(5) ~= 0x54 or s:byte(6) ~= 0 then
    error("not a Lua 5.4 chunk")
  end
  local isize, nsize = s:byte(13), s:byte(15)
  local ints = s:byte(14)
  local parts, last = {}, 1
  local function skip_string(pos) -- size + 1, then the bytes; 0 for none
    local n
    n, pos = chunk_varint(s, pos)
    return n == 0 and pos or pos + n - 1
  end
  local function func(pos)
    pos = skip_string(pos) -- source
    local lines = pos
    local _
    _, pos = chunk_varint(s, pos) -- linedefined
    _, pos = chunk_varint(s, pos) -- lastlinedefined
    parts[#parts + 1] = s:sub(last, lines - 1)
    last = pos
    pos = pos + 3 -- numparams, is_vararg, maxstacksize
    local n
    n, pos = chunk_varint(s, pos)
    pos = pos + n * isize -- code
    n, pos = chunk_varint(s, pos)
    for _ = 1, n do -- constants: a type tag, then the value
      local tag = s:byte(pos)
      pos = pos + 1
      if tag == 3 then pos = pos + ints -- integer
      elseif tag == 19 then pos = pos + nsize -- float
      elseif tag == 4 or tag == 20 then pos = skip_string(pos)
      elseif tag ~= 0 and tag ~= 1 and tag ~= 17 then error("unknown constant") end
    end
    n, pos = chunk_varint(s, pos)
    pos = pos + 3 * n -- upvalues
    n, pos = chunk_varint(s, pos)
    for _ = 1, n do pos = func(pos) end -- nested functions
    for _ = 1, 4 do -- debug information: none when stripped
      n, pos = chunk_varint(s, pos)
      if n ~= 0 then error("not stripped") end
    end
    return pos
  end
  if func(33) ~= #s + 1 then error("chunk of unexpected length") end
  parts[#parts + 1] = s:sub(last)
  return table.concat(parts)
end

local walk

-- A primitive's rendering, or nil for a table, function, userdata, thread.
local function prim(v)
  local t = type(v)
  if t == "string" then return "s" .. #v .. ":" .. v end
  if t == "number" then
    return math.type(v) == "integer" and ("i" .. v) or string.format("f%a", v)
  end
  if t == "boolean" or t == "nil" then return tostring(v) end
  return nil
end

-- Appends the entries of t to w.out in a stable order (pairs() order
-- differs between Lua states): keys rendered (a table or function key by
-- a walk of its own), sorted. skip(k) leaves a key out.
local function walk_entries(w, t, skip)
  local entries = {}
  for k, v in next, t do
    if not (skip and skip(k)) then
      local kr = prim(k)
      if kr == nil then
        local sub = { seen = {}, n = 0, out = {}, opaque = w.opaque }
        walk(sub, k)
        kr = "k" .. table.concat(sub.out)
      end
      entries[#entries + 1] = { kr, v }
    end
  end
  table.sort(entries, function(a, b) return a[1] < b[1] end)
  for _, e in ipairs(entries) do
    w.out[#w.out + 1] = e[1]
    walk(w, e[2])
  end
end

local function std_global(k) return type(k) == "string" and STD_GLOBALS[k] end

-- Appends v's rendering to w.out.
walk = function(w, v)
  local out = w.out
  local p = prim(v)
  if p then out[#out + 1] = p return end
  local t = type(v)
  if t ~= "table" and t ~= "function" then out[#out + 1] = t return end
  if w.opaque[v] then out[#out + 1] = "<" .. w.opaque[v] .. ">" return end
  if w.seen[v] then out[#out + 1] = "@" .. w.seen[v] return end
  w.n = w.n + 1
  w.seen[v] = w.n
  if t == "function" then
    local ok, code = pcall(string.dump, v, true)
    if not ok then out[#out + 1] = "C" return end -- a C function
    local ok2, moved = pcall(without_lines, code)
    if ok2 then code = moved end
    out[#out + 1] = "F" .. #code .. ":" .. code
    for i = 1, 255 do
      local name, uv = debug.getupvalue(v, i)
      if name == nil then break end
      out[#out + 1] = "u" .. i
      walk(w, uv)
    end
    return
  end
  local size = 0
  for _ in next, v do size = size + 1 end
  if w.n + size > WALK_LIMIT then out[#out + 1] = "{#" .. size .. "}" return end
  w.n = w.n + size
  if v == _G then -- the job's own globals, not the standard ones
    out[#out + 1] = "G{"
    walk_entries(w, v, std_global)
  else
    out[#out + 1] = "{"
    walk_entries(w, v)
  end
  out[#out + 1] = "}"
  local mt = debug.getmetatable(v)
  if mt ~= nil then
    out[#out + 1] = "mt"
    walk(w, mt)
  end
end

-- The digest of v's walk; when the walk fails (a structure nested deeper
-- than the Lua stack), the digest of `otherwise`.
local function digest_of(v, opaque, otherwise)
  local w = { seen = {}, n = 0, out = {}, opaque = opaque }
  if not pcall(walk, w, v) then return core.digest(otherwise) end
  return core.digest(table.concat(w.out))
end

-- Per node: the digest of its key selector(s), the digest of its code (two
-- core.digest() strings of 32 hex digits) and its id (as cs_plan.c makes
-- it); the engine matches operators by id and compares the digests apart
-- (cs_reload.c).
function Env:_digests()
  local opaque = opaque_values()
  local out = {}
  for i, n in ipairs(self._nodes) do
    local keys = {}
    for j, e in ipairs(n.inputs) do
      keys[j] = e.partition == "hash" and (e.key == nil and "record" or e.key) or false
    end
    local code = n.fn
    if code == nil then code = { agg = n.agg, field = n.field } end
    -- a code that cannot be walked counts as changed, a key as unchanged
    out[i] = digest_of(keys, opaque, "?") .. digest_of(code, opaque, tostring({}))
             .. (n.uid or (n.kind .. "_" .. i))
  end
  return out
end

-- Makes require() record the job's own modules as it finds them (a
-- searcher that finds nothing itself), including those whose loading
-- fails: what --watch watches besides the script. Called before the script
-- runs.
function M._record_requires()
  local found, seen = {}, {}
  table.insert(package.searchers, 1, function(name)
    local path = local_module_path(name)
    if path and not seen[path] then
      seen[path] = true
      found[#found + 1] = path
    end
    return nil
  end)
  M._required = found
end

-- The files of the job's own modules: those require() found (see
-- _record_requires), else those loaded from package.path.
function M._local_modules()
  if M._required then
    local out = {}
    for i, p in ipairs(M._required) do out[i] = p end
    table.sort(out)
    return out
  end
  local out = {}
  for name in pairs(package.loaded) do
    local path = local_module_path(name)
    if path then out[#out + 1] = path end
  end
  table.sort(out)
  return out
end

-- ----------------------------------------------------- state backends --

function M.memory_state_backend(max_state_size)
  return { kind = "memory", max_state_size = max_state_size }
end

function M.fs_state_backend(uri)
  if type(uri) ~= "string" then kind_error("fs_state_backend", "a checkpoint URI", uri, 2) end
  return { kind = "filesystem", uri = uri }
end

function M.rocksdb_state_backend(uri, incremental)
  if type(uri) ~= "string" then kind_error("rocksdb_state_backend", "a checkpoint URI", uri, 2) end
  return { kind = "rocksdb", uri = uri, incremental = incremental and true or false }
end

-- -------------------------------------------------- state descriptors --
-- A descriptor names a state and carries what the state needs; it is handed
-- to ctx:get_state(d), ctx:get_list_state(d), ... in open().

local StateDescriptor = {}
StateDescriptor.__index = StateDescriptor

local StateTtlConfig = {}
StateTtlConfig.__index = StateTtlConfig

-- How a bad argument reads in a message: a number as itself, anything else
-- by its type.
local function shown(v)
  if type(v) == "number" then return tostring(v) end
  if getmetatable(v) == StateTtlConfig then return "a state_ttl_config" end
  return type(v)
end

local UPDATE_TYPES = { "on_create_and_write", "on_read_and_write" }
local VISIBILITIES = { "never_return_expired", "return_expired_if_not_cleaned_up" }

-- Checks that options[field] is one of allowed (or nil: the first).
local function ttl_option(options, field, allowed)
  local v = options[field]
  if v == nil then return allowed[1] end
  for _, a in ipairs(allowed) do
    if v == a then return v end
  end
  error(string.format('state_ttl_config: %s must be "%s" or "%s", got %s', field,
                      allowed[1], allowed[2],
                      type(v) == "string" and string.format("%q", v) or shown(v)), 3)
end

-- Flink's StateTtlConfig: entries of a state that enables it expire ttl
-- milliseconds of processing time after their last write (update_type
-- "on_create_and_write", the default) or their last read or write
-- ("on_read_and_write"); an expired entry is never returned (visibility
-- "never_return_expired", the default), or returned until it is cleaned up
-- ("return_expired_if_not_cleaned_up").
function M.state_ttl_config(ttl, options)
  if type(ttl) ~= "number" or not (ttl > 0) then
    error("state_ttl_config: the time to live must be a positive number of "
          .. "milliseconds, got " .. shown(ttl), 2)
  end
  local ms = math.tointeger(ttl)
  if ms == nil then
    error("state_ttl_config: the time to live must be a whole number of "
          .. "milliseconds, got " .. shown(ttl), 2)
  end
  if options ~= nil and type(options) ~= "table" then
    kind_error("state_ttl_config", "a table of options", options, 2)
  end
  options = options or {}
  for k in pairs(options) do
    if k ~= "update_type" and k ~= "visibility" then
      error(string.format("state_ttl_config: unknown option %s (the options are "
                          .. "update_type and visibility)",
                          type(k) == "string" and string.format("%q", k) or shown(k)), 2)
    end
  end
  return setmetatable({ ttl = ms, update_type = ttl_option(options, "update_type", UPDATE_TYPES),
                        visibility = ttl_option(options, "visibility", VISIBILITIES) },
                      StateTtlConfig)
end

-- descriptor:enable_time_to_live(cstream.state_ttl_config(ms, ...)): the
-- state's entries expire (keyed state only). Returns the descriptor.
function StateDescriptor:enable_time_to_live(config)
  if getmetatable(self) ~= StateDescriptor then
    error("enable_time_to_live: expected a state descriptor (call it as "
          .. "descriptor:enable_time_to_live(config)), got " .. shown(self), 2)
  end
  if getmetatable(config) ~= StateTtlConfig then
    error("enable_time_to_live: expected a cstream.state_ttl_config(ms), got "
          .. shown(config), 2)
  end
  self.ttl_config = config
  return self
end

local function descriptor(t) return setmetatable(t, StateDescriptor) end

local function check_name(what, name, level)
  if type(name) ~= "string" or name == "" then
    kind_error(what, "a state name (non-empty string)", name, level + 1)
  end
end

function M.value_state_descriptor(name)
  check_name("value_state_descriptor", name, 2)
  return descriptor({ kind = "value", name = name })
end

function M.list_state_descriptor(name)
  check_name("list_state_descriptor", name, 2)
  return descriptor({ kind = "list", name = name })
end

function M.map_state_descriptor(name)
  check_name("map_state_descriptor", name, 2)
  return descriptor({ kind = "map", name = name })
end

-- reduce_function(a, b) returns the combination of two values.
function M.reducing_state_descriptor(name, reduce_function)
  check_name("reducing_state_descriptor", name, 2)
  if type(reduce_function) ~= "function" then
    kind_error("reducing_state_descriptor", "a reduce function", reduce_function, 2)
  end
  return descriptor({ kind = "reducing", name = name, reduce_function = reduce_function })
end

-- aggregate_function: { create_accumulator = function() return acc end,
--   add = function(value, acc) return acc end,
--   get_result = function(acc) return result end,
--   merge = function(a, b) return acc end }   (plain functions, as Flink's)
function M.aggregating_state_descriptor(name, aggregate_function)
  check_name("aggregating_state_descriptor", name, 2)
  if type(aggregate_function) ~= "table" then
    kind_error("aggregating_state_descriptor", "an aggregate function table",
               aggregate_function, 2)
  end
  for _, m in ipairs({ "create_accumulator", "add", "get_result" }) do
    if type(aggregate_function[m]) ~= "function" then
      error("aggregating_state_descriptor: the aggregate function has no '" .. m ..
            "' function", 2)
    end
  end
  return descriptor({ kind = "aggregating", name = name,
                      aggregate_function = aggregate_function })
end

-- fold_function(acc, value) returns the new accumulator, starting from a
-- copy of initial_value for each key.
function M.folding_state_descriptor(name, initial_value, fold_function)
  check_name("folding_state_descriptor", name, 2)
  if type(fold_function) ~= "function" then
    kind_error("folding_state_descriptor", "a fold function", fold_function, 2)
  end
  return descriptor({ kind = "folding", name = name, initial_value = initial_value,
                      fold_function = fold_function })
end

-- ------------------------------------------------------------ utilities --

-- Renders a value as Flink prints it: (1,5.0), 3.6666666666666665, ...
M.format = core.format

-- Sleeps for ms milliseconds. Inside a source's run() it yields to the
-- engine, so other operators of the worker keep running.
M.sleep = core.sleep

M.DataStream, M.KeyedStream, M.ConnectedStreams = DataStream, KeyedStream, ConnectedStreams
M.WindowedStream = window.WindowedStream

-- What the API's other modules (cstream/time.lua, ...) build streams with;
-- not part of the public API.
M._internal = {
  one_input = one_input, new_stream = new_stream, add_node = add_node,
  kind_error = kind_error, check_fn = check_fn, check_positive_int = check_positive_int,
}

require("cstream.time").install(M)
M._StateDescriptor, M._StateTtlConfig = StateDescriptor, StateTtlConfig

return M
