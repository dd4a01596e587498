-- kafka_source with a watermark_strategy: watermarks per partition, as
-- Flink's fromSource(kafkaSource, strategy). The subtask's watermark is
-- the minimum over its partitions, so a partition that lags holds event
-- time back and its records are not late; with_idleness lets a partition
-- without records stop holding it back; the strategy's extractor gives
-- the timestamps.
local h = require("helpers")
local kmock = dofile(h.src("spec/kafka/mock.lua"))

-- Counts per tumbling 2 s event-time window, printed as "start:count";
-- every record read is logged on stderr as "seen <timestamp>".
local JOB = [[
local cstream = require("cstream")
local env = cstream.get_execution_environment()
local ws = cstream.watermark_strategy.for_bounded_out_of_orderness(0)
if arg[2] == "idle" then ws = ws:with_idleness(300) end
env:kafka_source{ bootstrap_servers = arg[1], topic = "w", watermark_strategy = ws }
  :map(function(r)
    io.stderr:write("seen " .. r.timestamp .. "\n")
    return { "all", r.timestamp }
  end)
  :key_by(1)
  :window(cstream.tumbling_event_time_windows(2000))
  :process(function(key, ctx, elements, out)
    out:collect(ctx:window().start .. ":" .. #elements)
  end)
  :print()
env:execute("wm")
]]

local function spawn(mock, mode)
  local job = h.write_job(JOB)
  return h.spawn({ h.bin(), "-p", "1", "-D", "pipeline.auto-watermark-interval=50ms", job,
                   mock.bootstrap, mode or "" })
end

local function wait_text(file, pat, timeout)
  return h.wait_for(function() return (h.read_file(file) or ""):find(pat) end, timeout or 30)
end

describe("kafka_source watermarks", function()
  after_each(h.cleanup)

  it("are the minimum over the partitions: a lagging partition's records are not late", function()
    local mock = kmock.start(h, { w = 2 })
    mock:produce("w", { { 0, "", "a", 100 }, { 0, "", "b", 2500 }, { 0, "", "c", 5000 } })
    local p = spawn(mock)
    assert(wait_text(p.stderr, "seen 5000\n"), h.read_file(p.stderr))
    -- partition 0 alone is at 5000; a watermark of the whole subtask would
    -- now close [0, 2000) with one record. Partition 1 has given none, so
    -- the watermark stays back, and its record at 1500 is on time.
    h.sleep(0.5)
    assert.are.equal("", h.read_file(p.stdout) or "")
    mock:produce("w", { { 1, "", "d", 1500 } })
    assert(wait_text(p.stderr, "seen 1500\n"), h.read_file(p.stderr))
    mock:produce("w", { { 0, "", "e", 10000 }, { 1, "", "f", 10000 } })
    assert(wait_text(p.stdout, "4000:1"), h.read_file(p.stdout) .. h.read_file(p.stderr))
    h.signal(p, "TERM")
    h.wait(p, 30)
    assert.are.same({ "0:2", "2000:1", "4000:1" }, h.lines(h.read_file(p.stdout)))
  end)

  it("leave out a partition idle for with_idleness; without it, the partition holds them back",
     function()
    for _, mode in ipairs({ "idle", "" }) do
      local mock = kmock.start(h, { w = 2 })
      mock:produce("w", { { 0, "", "a", 100 }, { 0, "", "b", 2500 } })
      local p = spawn(mock, mode)
      assert(wait_text(p.stderr, "seen 2500\n"), h.read_file(p.stderr))
      if mode == "idle" then
        -- partition 1 never gets a record: after 300 ms it stops counting
        assert(wait_text(p.stdout, "0:1", 20), h.read_file(p.stderr))
      else
        h.sleep(1.5)
        assert.are.equal("", h.read_file(p.stdout) or "")
      end
      h.signal(p, "TERM")
      h.wait(p, 30)
      mock:stop()
    end
  end)

  it("take timestamps from the strategy's extractor, which is checked", function()
    local mock = kmock.start(h, { x = 2 })
    mock:produce("x", { { 0, "", "100", 1 }, { 1, "", "2100", 1 }, { 0, "", "2200", 1 },
                        { 1, "", "oops", 1 } })
    local job = h.write_job([[
local cstream = require("cstream")
local env = cstream.get_execution_environment()
env:kafka_source{ bootstrap_servers = arg[1], topic = "x", bounded = true,
  watermark_strategy = cstream.watermark_strategy.for_monotonous_timestamps(
    function(r, kafka_ts)
      assert(kafka_ts == 1)
      return r.value == "oops" and r.value or math.tointeger(tonumber(r.value))
    end) }
  :map(function(r) return { "all", r.value } end)
  :key_by(1)
  :window(cstream.tumbling_event_time_windows(2000))
  :process(function(key, ctx, elements, out)
    out:collect(ctx:window().start .. ":" .. #elements)
  end)
  :print()
env:execute("ex")
]])
    local r = h.run({ "-p", "1", job, mock.bootstrap }, { timeout = 60 })
    assert.are.equal(1, r.code, r.stderr)
    assert.matches("kafka_source: topic 'x' partition 1 offset 1: the watermark strategy's "
                   .. "timestamp extractor returned string", r.stderr)
    -- without the bad record: the extractor's timestamps place the windows
    mock:command("create y 2")
    mock:produce("y", { { 0, "", "100", 1 }, { 1, "", "2100", 1 }, { 0, "", "2200", 1 } })
    local fixed = h.write_job((h.read_file(job):gsub('topic = "x"', 'topic = "y"')))
    r = h.run({ "-p", "1", fixed, mock.bootstrap }, { timeout = 60 })
    assert.are.equal(0, r.code, r.stderr)
    assert.are.same({ "0:1", "2000:2" }, h.sorted(h.lines(r.stdout)))
  end)

  it("reject a watermark_strategy that is not a strategy", function()
    local job = h.write_job([[
local cstream = require("cstream")
local env = cstream.get_execution_environment()
env:kafka_source{ bootstrap_servers = "127.0.0.1:1", topic = "t", watermark_strategy = 5000 }
  :print()
env:execute("bad")
]])
    local r = h.run({ job })
    assert.are.equal(1, r.code)
    assert.matches("job%.lua:3: kafka_source: watermark_strategy: expected a strategy from "
                   .. "cstream.watermark_strategy", r.stderr)
  end)
end)
