-- kafka_source against librdkafka's mock cluster (started by the spec):
-- what a job reads, which subtask reads which partition, offsets
-- committed to the group, event time from Kafka timestamps, and the
-- errors a user gets for bad brokers, topics and values.
local h = require("helpers")
local kmock = dofile(h.src("spec/kafka/mock.lua"))

local HEADER = [[
local cstream = require("cstream")
local env = cstream.get_execution_environment()
local B = arg[1]
]]

local function run(script, flags, mock, opts)
  local job = h.write_job(HEADER .. script)
  local args = {}
  for _, f in ipairs(flags or { "-p", "1" }) do args[#args + 1] = f end
  args[#args + 1] = job
  args[#args + 1] = mock and mock.bootstrap or "127.0.0.1:1"
  return h.run(args, opts or { timeout = 60 })
end

-- n records over the partitions: key k<i % 5>, value v<i>, timestamp 1000 + i.
local function records(n, parts)
  local t = {}
  for i = 1, n do t[i] = { (i - 1) % parts, "k" .. (i % 5), "v" .. i, 1000 + i } end
  return t
end

describe("kafka_source", function()
  after_each(h.cleanup)

  it("reads every record with key, value, partition, offset, timestamp and topic", function()
    local mock = kmock.start(h, { events = 3 })
    mock:produce("events", records(30, 3))
    local r = run([[
env:kafka_source{ bootstrap_servers = B, topic = "events", bounded = true }
  :map(function(r) return string.format("%s|%s|%d|%d|%d|%s", r.key, r.value, r.partition,
                                        r.offset, r.timestamp, r.topic) end)
  :print()
env:execute("read")
]], nil, mock)
    assert.are.equal(0, r.code, r.stderr)
    local lines = h.sorted(h.lines(r.stdout))
    assert.are.equal(30, #lines)
    local expect = {}
    for i = 1, 30 do
      expect[i] = string.format("k%d|v%d|%d|%d|%d|events", i % 5, i, (i - 1) % 3,
                                (i - 1) // 3, 1000 + i)
    end
    assert.are.same(h.sorted(expect), lines)
    -- the end offsets are the group's committed offsets (monitoring)
    assert.are.same({ [0] = 10, [1] = 10, [2] = 10 }, mock:committed("read", "events"))
  end)

  for _, p in ipairs({ 1, 2 }) do
    it("gives partition k to subtask k % parallelism at -p " .. p, function()
      local mock = kmock.start(h, { events = 4 })
      mock:produce("events", records(40, 4))
      local r = run([[
env:kafka_source{ bootstrap_servers = B, topic = "events", bounded = true, group_id = "g" }
  :map({ open = function(self, ctx) self.sub = ctx:index_of_this_subtask() end,
         map = function(self, r) return self.sub .. " " .. r.partition end })
  :print()
env:execute("assign")
]], { "-p", tostring(p) }, mock)
      assert.are.equal(0, r.code, r.stderr)
      local seen = {}
      for _, line in ipairs(h.lines(r.stdout)) do
        local sub, part = line:match("(%d+) (%d+)$")
        seen[part] = seen[part] or {}
        seen[part][tonumber(sub)] = (seen[part][tonumber(sub)] or 0) + 1
      end
      for part = 0, 3 do
        assert.are.same({ [part % p] = 10 }, seen[tostring(part)])
      end
    end)
  end

  it("starts from given offsets, from the latest and from the group's committed ones", function()
    local mock = kmock.start(h, { t = 2 })
    mock:produce("t", records(10, 2))
    local r = run([[
env:kafka_source{ bootstrap_servers = B, topic = "t", bounded = true,
                  starting_offsets = { [0] = 3, [1] = 4 } }
  :map(function(r) return r.value end):print()
env:execute("offsets")
]], nil, mock)
    assert.are.equal(0, r.code, r.stderr)
    assert.are.same(h.sorted({ "v7", "v9", "v10" }), h.sorted(h.lines(r.stdout)))
    r = run([[
env:kafka_source{ bootstrap_servers = B, topic = "t", bounded = true,
                  starting_offsets = "latest" }
  :map(function(r) return r.value end):print()
env:execute("latest")
]], nil, mock)
    assert.are.equal(0, r.code, r.stderr)
    assert.are.equal("", r.stdout)
    -- "offsets" committed 5 and 5; new records after them are what a
    -- "committed" start reads
    mock:produce("t", { { 0, "", "new0" }, { 1, "", "new1" } })
    r = run([[
env:kafka_source{ bootstrap_servers = B, topic = "t", bounded = true, group_id = "offsets",
                  starting_offsets = "committed" }
  :map(function(r) return r.value end):print()
env:execute("committed")
]], nil, mock)
    assert.are.equal(0, r.code, r.stderr)
    assert.are.same({ "new0", "new1" }, h.sorted(h.lines(r.stdout)))
  end)

  it("decodes JSON values and gives Kafka timestamps as event time", function()
    local mock = kmock.start(h, { j = 1 })
    local recs = {}
    for i = 1, 6 do recs[i] = { 0, "", string.format('{"n": %d}', i), i * 1000 } end
    mock:produce("j", recs)
    local r = run([[
env:kafka_source{ bootstrap_servers = B, topic = "j", bounded = true, value_format = "json" }
  :assign_timestamps_and_watermarks(cstream.watermark_strategy.for_monotonous_timestamps())
  :map(function(r) return { "all", r.value.n } end)
  :key_by(1)
  :window(cstream.tumbling_event_time_windows(3000))
  :reduce(function(a, b) return { a[1], a[2] + b[2] } end)
  :print()
env:execute("json")
]], nil, mock)
    assert.are.equal(0, r.code, r.stderr)
    -- windows [0, 3000): 1 + 2, [3000, 6000): 3 + 4 + 5, [6000, 9000): 6
    assert.are.same({ "(all,3)", "(all,12)", "(all,6)" }, h.lines(r.stdout))
  end)

  it("names the topic, partition and offset of a value that is not JSON", function()
    local mock = kmock.start(h, { j = 2 })
    mock:produce("j", { { 1, "", '{"ok": 1}' }, { 1, "", "not json" } })
    local r = run([[
env:kafka_source{ bootstrap_servers = B, topic = "j", bounded = true, value_format = "json" }
  :print()
env:execute("badjson")
]], nil, mock)
    assert.are.equal(1, r.code)
    assert.matches("kafka_source: topic 'j' partition 1 offset 1: the value is not valid JSON",
                   r.stderr, 1, true)
  end)

  it("fails clearly on a missing topic", function()
    local mock = kmock.start(h, { other = 1 })
    local r = run([[
env:kafka_source{ bootstrap_servers = B, topic = "nope", bounded = true }:print()
env:execute("missing")
]], nil, mock)
    assert.are.equal(1, r.code)
    assert.matches("topic 'nope' does not exist on the Kafka broker(s) " .. mock.bootstrap,
                   r.stderr, 1, true)
  end)

  it("fails after kafka.connect-timeout when no broker answers", function()
    local t0 = os.time()
    local r = run([[
env:kafka_source{ topic = "t", bounded = true }:print()
env:execute("unreachable")
]], { "-p", "1", "-D", "kafka.bootstrap-servers=127.0.0.1:1",
        "-D", "kafka.connect-timeout=1 s" }, nil, { timeout = 60 })
    assert.are.equal(1, r.code)
    assert.matches("cannot reach the Kafka broker(s) 127.0.0.1:1 within 1000 ms "
                   .. "(kafka.connect-timeout) for topic 't'", r.stderr, 1, true)
    assert.is_true(os.time() - t0 < 20)
  end)

  it("reads several topics with one source, each record once, at -p 2", function()
    local mock = kmock.start(h, { a = 2, b = 3 })
    -- value "<topic>/<partition>/<i>": the i-th record of that partition,
    -- so at offset i
    local expect = {}
    for _, t in ipairs({ { "a", 2, 7 }, { "b", 3, 5 } }) do
      local topic, parts, per = t[1], t[2], t[3]
      local recs = {}
      for i = 0, per - 1 do
        for part = 0, parts - 1 do
          local v = string.format("%s/%d/%d", topic, part, i)
          recs[#recs + 1] = { part, "k" .. i, v }
          expect[#expect + 1] = string.format("%s|%d|%d|%s", topic, part, i, v)
        end
      end
      mock:produce(topic, recs)
    end
    local r = run([[
env:kafka_source{ bootstrap_servers = B, topics = { "a", "b" }, bounded = true }
  :map({ open = function(self, ctx) self.sub = ctx:index_of_this_subtask() end,
         map = function(self, r)
           return string.format("%s|%d|%d|%s %d", r.topic, r.partition, r.offset, r.value,
                                self.sub)
         end })
  :print()
env:execute("topics")
]], { "-p", "2" }, mock)
    assert.are.equal(0, r.code, r.stderr)
    local got, subs = {}, {}
    for _, line in ipairs(h.lines(r.stdout)) do
      local rec, sub = line:match("(%S+) (%d)$")
      got[#got + 1] = rec
      local tp = rec:match("^(%a+|%d+)|")
      subs[tp] = subs[tp] or {}
      subs[tp][sub] = true
    end
    -- 2 * 7 + 3 * 5 records, each exactly once, with its own topic,
    -- partition and offset
    assert.are.equal(29, #got)
    assert.are.same(h.sorted(expect), h.sorted(got))
    -- each partition of either topic is read by one subtask, and both
    -- subtasks read some
    local used = {}
    for _, tp in ipairs({ "a|0", "a|1", "b|0", "b|1", "b|2" }) do
      local n = 0
      for sub in pairs(subs[tp] or {}) do
        n = n + 1
        used[sub] = true
      end
      assert.are.equal(1, n, tp .. " read by " .. n .. " subtasks")
    end
    assert.is_true(used["0"] and used["1"])
    assert.are.same({ [0] = 7, [1] = 7 }, mock:committed("topics", "a"))
    assert.are.same({ [0] = 5, [1] = 5, [2] = 5 }, mock:committed("topics", "b"))
  end)

  it("gives the bytes of a value unchanged with value_format = \"raw\"", function()
    local mock = kmock.start(h, { bin = 1 })
    -- cs_kafka_mock produce decodes \xNN: a NUL, invalid UTF-8 (a lone
    -- continuation byte, 0xff, a truncated sequence), a tab and newline, a
    -- backslash, and what looks like JSON
    local values = { "plain", "a\\x00b", "\\x80\\xff\\xfe\\xc3", "\\x00",
                     "t\\x09n\\x0ar\\x0d", "back\\x5cslash", '{"n": 1}' }
    local bytes = { "plain", "a\0b", "\x80\xff\xfe\xc3", "\0", "t\tn\nr\r",
                    "back\\slash", '{"n": 1}' }
    local recs = {}
    for i, v in ipairs(values) do recs[i] = { 0, "", v } end
    mock:produce("bin", recs)
    local r = run([[
env:kafka_source{ bootstrap_servers = B, topic = "bin", bounded = true, value_format = "raw" }
  :map(function(r)
    return string.format("%d %s %d %s", r.offset, math.type(#r.value), #r.value,
                         (r.value:gsub(".", function(c) return string.format("%02x", c:byte()) end)))
  end)
  :print()
env:execute("raw")
]], nil, mock)
    assert.are.equal(0, r.code, r.stderr)
    local expect = {}
    for i, b in ipairs(bytes) do
      expect[i] = string.format("%d integer %d %s", i - 1, #b,
                                (b:gsub(".", function(c) return string.format("%02x", c:byte()) end)))
    end
    assert.are.same(expect, h.lines(r.stdout))
  end)

  it("passes librdkafka properties through: client.id takes effect", function()
    local mock = kmock.start(h, { t = 1 })
    mock:produce("t", records(3, 1))
    -- librdkafka names its client "<client.id>#consumer-<n>" in the log
    -- lines it prints at log_level 7 with debug contexts on
    local r = run([[
env:kafka_source{ bootstrap_servers = B, topic = "t", bounded = true,
                  properties = { ["client.id"] = "spec-client-42", debug = "consumer",
                                 log_level = 7, ["fetch.wait.max.ms"] = 10 } }
  :map(function(r) return r.value end):print()
env:execute("props")
]], nil, mock)
    assert.are.equal(0, r.code, r.stderr)
    assert.are.same({ "v1", "v2", "v3" }, h.sorted(h.lines(r.stdout)))
    assert.matches("|spec-client-42#consumer-", r.stderr, 1, true)
    -- without the property the client has librdkafka's default name
    r = run([[
env:kafka_source{ bootstrap_servers = B, topic = "t", bounded = true,
                  properties = { debug = "consumer", log_level = 7 } }
  :map(function(r) return r.value end):print()
env:execute("props")
]], nil, mock)
    assert.are.equal(0, r.code, r.stderr)
    assert.is_nil(r.stderr:find("spec-client-42", 1, true))
    assert.matches("|rdkafka#consumer-", r.stderr, 1, true)
  end)

  it("names a librdkafka property that does not exist, and fails", function()
    local mock = kmock.start(h, { t = 1 })
    mock:produce("t", records(3, 1))
    local r = run([[
env:kafka_source{ bootstrap_servers = B, topic = "t", bounded = true,
                  properties = { ["no.such.property"] = "1" } }
  :print()
env:execute("badprop")
]], nil, mock)
    assert.are.equal(1, r.code)
    assert.matches("bad librdkafka property no.such.property = '1'", r.stderr, 1, true)
    assert.matches("No such configuration property", r.stderr, 1, true)
    assert.are.equal("", r.stdout)
  end)

  it("checks its options where the script gives them", function()
    local r = run([[
env:kafka_source{ bootstrap_servers = B, topic = "t", value_format = "xml" }:print()
env:execute("x")
]])
    assert.are.equal(1, r.code)
    assert.matches('job%.lua:4: kafka_source: value_format: expected "string", "json" or "raw"',
                   r.stderr)
  end)
end)
