-- Asynchronous snapshots as a user sees them: the worker stops only for
-- the synchronous part of a snapshot (state copied) and goes on with its
-- records while the state files are written; the checkpoint completes only
-- once they are durable. CSTREAM_TEST_SNAPSHOT_DELAY_MS makes the
-- asynchronous part slow, so that records flow, a kill lands, a directory
-- vanishes or the job ends while it runs. For the filesystem (heap) and
-- RocksDB backends alike.
local h = require("helpers")

local NKEYS = 100

-- Sums "k<key>,<value>" lines per key in a value state and prints each
-- running sum. The map counts its records; snapshot_state (called in the
-- synchronous part) logs "cstream-test: snapshot after <n>", and every
-- 200th record logs "cstream-test: record <n>", on stderr.
local JOB = [[
local cstream = require("cstream")
local env = cstream.get_execution_environment()
env:read_text_file(arg[1])
  :map({
    seen = 0,
    snapshot_state = function(self, ctx)
      io.stderr:write("cstream-test: snapshot after " .. self.seen .. "\n")
    end,
    map = function(self, line)
      self.seen = self.seen + 1
      if self.seen % 20 == 0 then cstream.sleep(1) end
      if self.seen % 200 == 0 then io.stderr:write("cstream-test: record " .. self.seen .. "\n") end
      local k, v = line:match("^(k%d+),(%d+)$")
      return { k, tonumber(v) }
    end,
  }):uid("parse")
  :key_by(1)
  :process({
    open = function(self, ctx) self.sum = ctx:get_state(cstream.value_state_descriptor("sum")) end,
    process_element = function(self, v, ctx, out)
      local s = (self.sum:value() or 0) + v[2]
      self.sum:update(s)
      out:collect({ v[1], s })
    end,
  }):uid("sum")
  :print()
env:execute("sums")
]]

-- n records "k<i % NKEYS>,<i % 7>" in dir/input.txt; returns its path and
-- the final sum of every key.
local function input_of(dir, n)
  local path = dir .. "/input.txt"
  assert(os.execute(string.format(
    "awk 'BEGIN { for (i = 1; i <= %d; i++) print \"k\" (i %% %d) \",\" (i %% 7) }' > %s",
    n, NKEYS, h.quote(path))))
  local totals = {}
  for i = 1, n do
    local k = "k" .. (i % NKEYS)
    totals[k] = (totals[k] or 0) + i % 7
  end
  return path, totals
end

-- Checks that the last sum printed for every key, over the outputs of all
-- runs in order, is its total.
local function assert_sums(outputs, totals)
  local last = {}
  for _, out in ipairs(outputs) do
    for k, v in out:gmatch("%((k%d+),(%d+)%)") do last[k] = tonumber(v) end
  end
  for k, total in pairs(totals) do
    assert(last[k] == total, string.format("%s: last printed %s, expected %d", k, tostring(last[k]), total))
  end
end

local function flags_of(backend, dir, extra)
  local f = { h.bin(), "-p", "1", "--state-backend", backend, "--checkpoint-dir", dir .. "/chk",
              "--checkpoint-interval", "100ms",
              "-D", "state.backend.rocksdb.localdir=" .. dir .. "/work" }
  for _, a in ipairs(extra or {}) do f[#f + 1] = a end
  return f
end

local function stderr_of(p) return h.read_file(p.stderr) or "" end

local function count(s, pat)
  local n = 0
  for _ in s:gmatch(pat) do n = n + 1 end
  return n
end

-- Waits until the spawned run's stderr matches pat at least n times.
local function wait_count(p, pat, n, timeout)
  return h.wait_for(function()
    if count(stderr_of(p), pat) >= n then return true end
    if h.read_file(p.codefile) then return nil end
  end, timeout or 60)
end

describe("asynchronous snapshots", function()
  after_each(h.cleanup)

  for _, backend in ipairs({ "filesystem", "rocksdb" }) do
    it(backend .. ": a checkpoint completes while records keep flowing through the worker", function()
      local dir = h.tmpdir()
      local input, totals = input_of(dir, 12000)
      local job = h.write_job(JOB)
      local r = h.run({ table.unpack(flags_of(backend, dir, { job, input }), 2) },
                      { env = "CSTREAM_VERBOSE=1 CSTREAM_TEST_SNAPSHOT_DELAY_MS=700" })
      assert.are.equal(0, r.code, r.stderr)
      assert_sums({ r.stdout }, totals)
      -- between the synchronous part of checkpoint 1 and its completion the
      -- map went on: record lines stand between the two
      local after = tonumber(r.stderr:match("cstream%-test: snapshot after (%d+)\n"))
      assert(after, r.stderr)
      local s = r.stderr:find("cstream-test: snapshot after", 1, true)
      local e = r.stderr:find("checkpoint 1 completed", 1, true)
      assert(e and e > s, "checkpoint 1 did not complete:\n" .. r.stderr)
      local between = r.stderr:sub(s, e)
      local flowed = 0
      for n in between:gmatch("cstream%-test: record (%d+)\n") do
        if tonumber(n) > after then flowed = flowed + 1 end
      end
      assert(flowed >= 2, "no records were processed while checkpoint 1 was written:\n" .. between)
      local took = tonumber(r.stderr:match("checkpoint 1 completed in ([%d.]+) ms"))
      local pause = tonumber(r.stderr:match("checkpoint 1 completed in [^\n]*sync pause ([%d.]+) ms"))
      assert(took >= 700 and pause < 700, r.stderr)
    end)

    it(backend .. ": a kill during the asynchronous part leaves the previous checkpoint restorable", function()
      local dir = h.tmpdir()
      -- 1 ms of sleep per 20 records: about 3 s of input, enough for
      -- checkpoint 1 (1.6 s) and the next one's synchronous part
      local input, totals = input_of(dir, 60000)
      local job = h.write_job(JOB)
      local p = h.spawn(flags_of(backend, dir, { job, input }),
                        { env = "CSTREAM_VERBOSE=1 CSTREAM_TEST_SNAPSHOT_DELAY_MS=1500" })
      assert(wait_count(p, "checkpoint %d+ completed", 1), stderr_of(p))
      -- the next snapshot's synchronous part is done: its files are being written
      assert(wait_count(p, "cstream%-test: snapshot after", 2), stderr_of(p))
      h.sleep(0.2)
      h.signal(p, "KILL")
      assert.are.equal(137, h.wait(p, 30))
      local done = tonumber(stderr_of(p):match("checkpoint (%d+) completed"))
      assert.are.equal(1, count(stderr_of(p), "checkpoint %d+ completed"), stderr_of(p))
      local r = h.run({ table.unpack(flags_of(backend, dir, { "--restore", "latest", job, input }), 2) })
      assert.are.equal(0, r.code, r.stderr)
      assert.matches("restoring job 'sums' from checkpoint " .. done .. " ", r.stderr)
      assert_sums({ h.read_file(p.stdout), r.stdout }, totals)
    end)

    it(backend .. ": a checkpoint directory gone during the asynchronous part fails that checkpoint " ..
       "with a message; the job goes on within the tolerance, or fails without it", function()
      for _, tolerate in ipairs({ true, false }) do
        local dir = h.tmpdir()
        -- about 2 s of input: checkpoint 1 fails at 0.9 s, later ones complete
        local input, totals = input_of(dir, 40000)
        local job = h.write_job(JOB)
        local extra = { "-D", "restart-strategy=none" }
        if tolerate then extra = { "-D", "execution.checkpointing.tolerable-failed-checkpoints=100" } end
        extra[#extra + 1] = job
        extra[#extra + 1] = input
        local p = h.spawn(flags_of(backend, dir, extra),
                          { env = "CSTREAM_VERBOSE=1 CSTREAM_TEST_SNAPSHOT_DELAY_MS=800" })
        assert(wait_count(p, "cstream%-test: snapshot after", 1), stderr_of(p))
        -- checkpoint 1's directory becomes a file while its state is written
        local chk = dir .. "/chk/sums/chk-1"
        os.execute("rm -rf " .. h.quote(chk))
        h.write_file(chk, "in the way\n")
        local code = h.wait(p, 60)
        local err = stderr_of(p)
        assert.matches("checkpoint 1 failed: [^\n]*" .. chk:gsub("%p", "%%%0"), err)
        if tolerate then
          assert.are.equal(0, code, err)
          assert.matches("checkpoint %d+ completed", err)
          assert_sums({ h.read_file(p.stdout) }, totals)
        else
          assert.are.equal(1, code, err)
          assert.matches("execution%.checkpointing%.tolerable%-failed%-checkpoints", err)
        end
        h.cleanup()
      end
    end)

    it(backend .. ": the job ends, or is stopped with a savepoint, while a snapshot is being written", function()
      local dir = h.tmpdir()
      local input, totals = input_of(dir, 3000)
      local job = h.write_job(JOB)
      -- the input ends while checkpoints' files are still being written
      local r = h.run({ table.unpack(flags_of(backend, dir, { job, input }), 2) },
                      { env = "CSTREAM_TEST_SNAPSHOT_DELAY_MS=400" })
      assert.are.equal(0, r.code, r.stderr)
      assert_sums({ r.stdout }, totals)
      -- SIGINT: the savepoint's files are written before the job ends
      input, totals = input_of(dir, 40000)
      local p = h.spawn(flags_of(backend, dir, { "--savepoint-on-stop", job, input }),
                        { env = "CSTREAM_VERBOSE=1 CSTREAM_TEST_SNAPSHOT_DELAY_MS=400" })
      assert(wait_count(p, "checkpoint %d+ completed", 1), stderr_of(p))
      h.signal(p, "INT")
      assert.are.equal(0, h.wait(p, 60), stderr_of(p))
      local sp = stderr_of(p):match("savepoint written to ([^\n]+)")
      assert(sp, stderr_of(p))
      r = h.run({ table.unpack(flags_of(backend, dir, { "--restore", sp, job, input }), 2) })
      assert.are.equal(0, r.code, r.stderr)
      assert_sums({ h.read_file(p.stdout), r.stdout }, totals)
    end)
  end
end)
