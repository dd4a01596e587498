-- kafka_source's offsets are its checkpointed position: after a SIGKILL
-- the job restores its keyed state and its offsets together, so every
-- key's count is exact, at the same or another parallelism; and a broker
-- that fails mid-run makes the job restart from its checkpoint and lose
-- nothing.
local h = require("helpers")
local kmock = dofile(h.src("spec/kafka/mock.lua"))

-- Counts records per key; arg[2] == "bounded" ends at the topic's end.
local JOB = [[
local cstream = require("cstream")
local env = cstream.get_execution_environment()
env:enable_checkpointing(100)
env:kafka_source{ bootstrap_servers = arg[1], topic = "in", group_id = "counts",
                  bounded = arg[2] == "bounded" }
  :map(function(r) return { r.key, 1 } end)
  :key_by(1)
  :sum(2)
  :print()
env:execute("kafka_counts")
]]

local KEYS = 7

local function batch(from, to)
  local t = {}
  for i = from, to do t[#t + 1] = { -1, "k" .. (i % KEYS), "v" .. i } end
  return t
end

-- The last count printed for every key.
local function last_counts(stdout)
  local last = {}
  for _, line in ipairs(h.lines(stdout)) do
    local k, n = line:match("%(([^,]+),(%d+)%)")
    if k then last[k] = tonumber(n) end
  end
  return last
end

local function expected(n)
  local t = {}
  for i = 1, n do t["k" .. (i % KEYS)] = (t["k" .. (i % KEYS)] or 0) + 1 end
  return t
end

local function count_lines(path)
  return #h.lines(h.read_file(path) or "")
end

describe("kafka_source restore", function()
  after_each(h.cleanup)

  for _, case in ipairs({ { 2, 2 }, { 2, 1 }, { 1, 3 } }) do
    local p1, p2 = case[1], case[2]
    it(string.format("keeps exact per-key state across a SIGKILL (-p %d, then -p %d)", p1, p2),
       function()
      local mock = kmock.start(h, { ["in"] = 4 })
      local ckpt = h.tmpdir()
      local job = h.write_job(JOB)
      local flags = { "--checkpoint-dir", ckpt, "--state-backend", "filesystem" }
      mock:produce("in", batch(1, 300))
      local p = h.spawn({ h.bin(), "-p", tostring(p1), flags[1], flags[2], flags[3],
                          flags[4], job, mock.bootstrap })
      -- every record counted, then a checkpoint after that
      assert.is_truthy(h.wait_for(function() return count_lines(p.stdout) >= 300 end, 30))
      local seen = h.wait_for_checkpoint(ckpt .. "/kafka_counts", 30)
      assert.is_truthy(seen)
      local first = h.read_file(seen)
      assert.is_truthy(h.wait_for(function()
        return h.wait_for_checkpoint(ckpt .. "/kafka_counts", 1) ~= seen
               or h.read_file(seen) ~= first
      end, 10))
      -- more records, some of them counted after the checkpoint, then kill
      mock:produce("in", batch(301, 500))
      h.wait_for(function() return count_lines(p.stdout) >= 320 end, 10)
      h.signal(p, "KILL")
      h.wait(p, 10)
      mock:produce("in", batch(501, 600))
      local r = h.run({ "-p", tostring(p2), "--restore", "latest", flags[1], flags[2],
                        flags[3], flags[4], job, mock.bootstrap, "bounded" }, { timeout = 60 })
      assert.are.equal(0, r.code, r.stderr)
      assert.matches("restoring job 'kafka_counts' from checkpoint", r.stderr)
      assert.are.same(expected(600), last_counts(r.stdout))
      -- the group's offsets followed the checkpoints to the end
      local c = mock:committed("counts", "in")
      local total = 0
      for part = 0, 3 do total = total + c[part] end
      assert.are.equal(600, total)
    end)
  end

  it("restarts from its checkpoint when every broker fails mid-run, losing nothing", function()
    local mock = kmock.start(h, { ["in"] = 2 })
    local ckpt = h.tmpdir()
    local job = h.write_job(JOB)
    mock:produce("in", batch(1, 200))
    local p = h.spawn({ h.bin(), "-p", "2", "--checkpoint-dir", ckpt, "--state-backend",
                        "filesystem", "-D", "kafka.connect-timeout=1 s",
                        "-D", "restart-strategy.fixed-delay.attempts=30",
                        "-D", "restart-strategy.fixed-delay.delay=300 ms",
                        job, mock.bootstrap })
    assert.is_truthy(h.wait_for(function() return count_lines(p.stdout) >= 200 end, 30))
    assert.is_truthy(h.wait_for_checkpoint(ckpt .. "/kafka_counts", 30))
    mock:command("down 1")
    assert.is_truthy(h.wait_for(function()
      return (h.read_file(p.stderr) or ""):find("restarting", 1, true)
    end, 30), h.read_file(p.stderr))
    assert.matches("kafka_source: brokers " .. mock.bootstrap:gsub("%p", "%%%0")
                   .. ": the Kafka brokers have been failing for more than 1000 ms",
                   h.read_file(p.stderr))
    mock:command("up 1")
    mock:produce("in", batch(201, 300))
    assert.is_truthy(h.wait_for(function()
      local last = last_counts(h.read_file(p.stdout))
      local want = expected(300)
      for k, n in pairs(want) do if last[k] ~= n then return false end end
      return true
    end, 60), h.read_file(p.stderr))
    h.signal(p, "TERM")
    assert.are.equal(0, h.wait(p, 30))
    local last = last_counts(h.read_file(p.stdout))
    assert.are.same(expected(300), last)
  end)
end)
