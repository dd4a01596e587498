-- kafka_sink against librdkafka's mock cluster: at-least-once output, and
-- the exactly-once two-phase commit over Kafka transactions: begin, send
-- and pre-commit at the barrier, commit when the checkpoint completes,
-- abort after a failure, and the commit of a pre-committed transaction
-- after a kill between pre-commit and commit.
--
-- The mock shows the records of transactions that never committed (or
-- were aborted) to every reader, so the specs tell committed records by
-- their cstream.txn header and the sink's protocol lines (CSTREAM_VERBOSE):
-- what a read_committed consumer of a real broker would see is the records
-- of committed transactions only.
local h = require("helpers")
local kmock = dofile(h.src("spec/kafka/mock.lua"))

local function job(delivery, bounded_arg)
  return h.write_job(string.format([[
local cstream = require("cstream")
local env = cstream.get_execution_environment()
env:enable_checkpointing(150)
env:kafka_source{ bootstrap_servers = arg[1], topic = "in", bounded = arg[2] == "bounded" }
  :map(function(r) return { r.key, r.value } end)
  :kafka_sink{ bootstrap_servers = arg[1], topic = "out", delivery = "%s",
               transactional_id_prefix = "tx",
               key = function(r) return r[1] end,
               value = function(r) return r[2] .. "!" end }
env:execute("kafka_sink_job")
]], delivery)), bounded_arg
end

local function inputs(from, to)
  local t = {}
  for i = from, to do t[#t + 1] = { -1, "k" .. (i % 3), "v" .. i, 5000 + i } end
  return t
end

local function values(from, to)
  local t = {}
  for i = from, to do t[#t + 1] = "v" .. i .. "!" end
  return h.sorted(t)
end

-- The labels of committed, aborted and begun transactions in stderr.
local function protocol(stderr)
  local p = { begun = {}, committed = {}, aborted = {}, order = {} }
  for _, line in ipairs(h.lines(stderr)) do
    local label, what = line:match("kafka_sink: transaction (%S+) (%a+)")
    if label then
      if what == "begun" then p.begun[label] = true end
      if what == "committed" then p.committed[label] = true end
      if what == "aborted" then p.aborted[label] = true end
      p.order[#p.order + 1] = label .. " " .. what
    end
  end
  return p
end

local function committed_values(mock, p)
  local out, other = {}, {}
  for _, r in ipairs(mock:dump("out")) do
    local label = r.headers["cstream.txn"]
    assert.is_truthy(label, "a record without transaction header")
    assert.are.equal(5000 + tonumber(r.value:match("%d+")), r.timestamp)
    if p.committed[label] then out[#out + 1] = r.value else other[#other + 1] = r.value end
  end
  return h.sorted(out), other
end

-- How many records the committed transactions held, by the sink's lines.
local function committed_count(stderr)
  local n = 0
  for c in (stderr or ""):gmatch(" committed %([^\n]-, (%d+) records%)") do n = n + tonumber(c) end
  return n
end

local FLAGS = { "--state-backend", "filesystem" }

describe("kafka_sink", function()
  after_each(h.cleanup)

  it("writes every record at least once, with key and value from the job's functions", function()
    local mock = kmock.start(h, { ["in"] = 2, out = 3 })
    mock:produce("in", inputs(1, 60))
    local script, b = job("at_least_once", "bounded")
    local r = h.run({ "-p", "2", "--checkpoint-dir", h.tmpdir(), FLAGS[1], FLAGS[2],
                      script, mock.bootstrap, b }, { timeout = 60 })
    assert.are.equal(0, r.code, r.stderr)
    local got = {}
    for _, rec in ipairs(mock:dump("out")) do
      got[#got + 1] = rec.value
      local i = tonumber(rec.value:match("%d+"))
      assert.are.equal("k" .. (i % 3), rec.key)
      assert.are.equal(5000 + i, rec.timestamp) -- the record's timestamp
    end
    assert.are.same(values(1, 60), h.sorted(got))
  end)

  it("commits each checkpoint's transaction when the checkpoint completes", function()
    local mock = kmock.start(h, { ["in"] = 2, out = 2 })
    local ckpt = h.tmpdir()
    local p = h.spawn({ h.bin(), "-p", "1", "--checkpoint-dir", ckpt, FLAGS[1], FLAGS[2],
                        (job("exactly_once")), mock.bootstrap }, { env = "CSTREAM_VERBOSE=1" })
    mock:produce("in", inputs(1, 100))
    assert.is_truthy(h.wait_for(function()
      return (h.read_file(p.stderr) or ""):find(" committed %(checkpoint")
    end, 30), h.read_file(p.stderr))
    mock:produce("in", inputs(101, 200))
    assert.is_truthy(h.wait_for(function()
      return committed_count(h.read_file(p.stderr)) >= 200
    end, 30), h.read_file(p.stderr))
    h.signal(p, "TERM")
    assert.are.equal(0, h.wait(p, 30))
    local stderr = h.read_file(p.stderr)
    local proto = protocol(stderr)
    -- each transaction: begun, pre-committed, committed, in that order
    local state = {}
    for _, step in ipairs(proto.order) do
      local label, what = step:match("(%S+) (%S+)")
      local prev = state[label]
      if what == "begun" then assert.is_nil(prev)
      elseif what == "pre-committed" then assert.is_true(prev == "begun" or prev == "pre-committed")
      elseif what == "committed" then assert.is_truthy(prev) end
      state[label] = what
    end
    for label in pairs(proto.begun) do assert.is_true(proto.committed[label], label) end
    local got, other = committed_values(mock, proto)
    assert.are.same(values(1, 200), got)
    assert.are.same({}, other)
    -- the marker group holds the newest checkpoint committed
    local newest = 0
    for id in stderr:gmatch(" committed %(checkpoint (%d+)") do newest = math.max(newest, tonumber(id)) end
    assert.are.equal(newest, mock:committed("tx-0", "out")[0])
  end)

  it("aborts the open transaction after a failure and commits its records after the restart", function()
    local mock = kmock.start(h, { ["in"] = 1, out = 1 })
    local ckpt = h.tmpdir()
    mock:produce("in", inputs(1, 100))
    local p = h.spawn({ h.bin(), "-p", "1", "--checkpoint-dir", ckpt, FLAGS[1], FLAGS[2],
                        "-D", "restart-strategy.fixed-delay.delay=100 ms",
                        (job("exactly_once")), mock.bootstrap },
                      { env = "CSTREAM_VERBOSE=1 CSTREAM_KAFKA_TEST_FAULT=fail:1" })
    assert.is_truthy(h.wait_for(function()
      return (h.read_file(p.stderr) or ""):find("committed (recovery of tx-0", 1, true)
    end, 30), h.read_file(p.stderr))
    mock:produce("in", inputs(101, 150))
    assert.is_truthy(h.wait_for(function()
      return committed_count(h.read_file(p.stderr)) >= 150
    end, 30), h.read_file(p.stderr))
    h.signal(p, "TERM")
    assert.are.equal(0, h.wait(p, 30))
    local stderr = h.read_file(p.stderr)
    assert.matches("injected failure before the commit", stderr, 1, true)
    local proto = protocol(stderr)
    local aborted = next(proto.aborted)
    assert.is_truthy(aborted, stderr)
    assert.is_nil(proto.committed[aborted])
    local got, other = committed_values(mock, proto)
    assert.are.same(values(1, 150), got)
    assert.is_true(#other > 0) -- the aborted records, which the mock still shows
  end)

  it("commits a pre-committed transaction after a kill, at another parallelism", function()
    local mock = kmock.start(h, { ["in"] = 2, out = 1 })
    local ckpt = h.tmpdir()
    mock:produce("in", inputs(1, 100))
    local script = job("exactly_once")
    local p = h.spawn({ h.bin(), "-p", "2", "--checkpoint-dir", ckpt, FLAGS[1], FLAGS[2],
                        script, mock.bootstrap },
                      { env = "CSTREAM_VERBOSE=1 CSTREAM_KAFKA_TEST_FAULT=kill:1" })
    assert.are.equal(137, h.wait(p, 30))
    local first = protocol(h.read_file(p.stderr))
    assert.is_nil(next(first.committed))
    mock:produce("in", inputs(101, 130))
    local r = h.run({ "-p", "1", "--checkpoint-dir", ckpt, "--restore", "latest", FLAGS[1],
                      FLAGS[2], script, mock.bootstrap, "bounded" },
                    { timeout = 60, env = "CSTREAM_VERBOSE=1" })
    assert.are.equal(0, r.code, r.stderr)
    assert.matches("committed (recovery of tx-", r.stderr, 1, true)
    local got = committed_values(mock, protocol(r.stderr))
    assert.are.same(values(1, 130), got)
  end)
end)
