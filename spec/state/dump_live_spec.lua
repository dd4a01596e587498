-- `state dump` against the checkpoints of a job that is running: it takes
-- no lock and must never see a half-written checkpoint, nor one that the
-- job's retention removes while the dump reads it. The job counts records
-- of eight keys that its one source emits round robin, so the counts of
-- any consistent checkpoint are c1 >= c2 >= ... >= c8 >= c1 - 1.
local h = require("helpers")

local NKEYS = 8

local JOB = [[
local cstream = require("cstream")
local env = cstream.get_execution_environment()
env:add_source({ run = function(self, ctx)
  local i, f = 0, nil
  repeat
    i = i + 1
    ctx:collect({ "key" .. ((i - 1) % ]] .. NKEYS .. [[ + 1), 1 })
    if i % 8 == 0 then cstream.sleep(5) end
    if i % 64 == 0 then f = io.open(arg[1]) end
  until f
  f:close()
end }):set_parallelism(1):key_by(1):sum(2):print()
env:execute("live")
]]

-- The per-key counts of a dump's stdout ({["key1"] = n, ...}) and the
-- number of state lines.
local function counts_of(stdout)
  local c, n = {}, 0
  for _, line in ipairs(h.lines(stdout)) do
    if line:find('"state":"_rolling"', 1, true) then
      n = n + 1
      local k, v = line:match('"key":"(key%d+)","value":%["key%d+",(%d+)%]')
      assert(k, "unexpected dump line: " .. line)
      assert(c[k] == nil, "key " .. k .. " twice in one dump")
      c[k] = tonumber(v)
    end
  end
  return c, n
end

-- Checks that the counts c of a dump are a cut of the round robin (c1 >=
-- c2 >= ... >= c8 >= c1 - 1) and each at most the final count; returns c1.
local function check_cut(c, final, what)
  local first = c.key1 or 0
  local last = first
  for k = 1, NKEYS do
    local n = c["key" .. k] or 0
    assert.is_true(n <= last and n >= first - 1,
                   what .. ": key" .. k .. " = " .. n .. " after " .. last)
    assert.is_true(n <= final["key" .. k], what .. ": key" .. k .. " = " .. n
                   .. " > final " .. final["key" .. k])
    last = n
  end
  return first
end

local BACKENDS = {
  { "filesystem", { "--state-backend", "filesystem" } },
  { "RocksDB incremental", { "--state-backend", "rocksdb", "-D", "state.backend.incremental=true" } },
}

describe("state dump of a running job", function()
  after_each(h.cleanup)

  for _, b in ipairs(BACKENDS) do
    it(b[1] .. ": 20 dumps while it checkpoints every 50 ms each read a completed checkpoint",
       function()
      local dir = h.tmpdir()
      local stop = dir .. "/stop"
      local argv = { h.bin(), "-p", "2" }
      for _, a in ipairs(b[2]) do argv[#argv + 1] = a end
      for _, a in ipairs({ "--checkpoint-dir", dir .. "/ckpt", "--checkpoint-interval", "50ms",
                           h.write_job(JOB), stop }) do
        argv[#argv + 1] = a
      end
      local job = h.spawn(argv)
      local job_dir = dir .. "/ckpt/live"
      assert.is_truthy(h.wait_for_checkpoint(job_dir, 30), "no checkpoint completed")
      local dumps = {}
      -- the job directory: state dump picks the newest complete checkpoint
      -- and says which on its first line
      for i = 1, 20 do
        local r = h.run({ "state", "dump", job_dir })
        dumps[i] = { id = tonumber(r.stdout:match('^{"checkpoint":(%d+)}\n')), r = r }
        h.sleep(0.03)
      end
      -- the job ran all along: the dumps raced its checkpoints
      assert.is_true(h.alive(job), "the job ended early: " .. (h.read_file(job.stderr) or ""))
      h.write_file(stop, "")
      assert.are.equal(0, h.wait(job, 60), h.read_file(job.stderr))
      local final = {}
      for _, line in ipairs(h.lines(h.read_file(job.stdout))) do
        local k, v = line:match("%((key%d+),(%d+)%)$")
        if k then final[k] = math.max(final[k] or 0, tonumber(v)) end
      end
      for k = 1, NKEYS do
        assert.is_true((final["key" .. k] or 0) > 0, "no output for key" .. k)
      end
      -- the newest checkpoint completed (the dumps' can be no newer)
      local newest = 0
      local l = io.popen("ls -d " .. h.quote(job_dir) .. "/chk-*/_metadata")
      for name in l:lines() do
        newest = math.max(newest, tonumber(name:match("/chk%-(%d+)/_metadata$")))
      end
      l:close()
      local ids, prev = {}, nil
      for i, d in ipairs(dumps) do
        local what = "dump " .. i .. " of chk-" .. tostring(d.id)
        assert.are.equal(0, d.r.code, what .. ": " .. d.r.stderr)
        assert.are.equal("", d.r.stderr, what)
        assert.is_truthy(d.id, what .. ": no checkpoint line")
        assert.is_true(d.id <= newest, what .. " after the newest, chk-" .. newest)
        local first = check_cut(counts_of(d.r.stdout), final, what)
        assert.is_true(first > 0, what .. " holds no counts")
        -- a newer checkpoint never holds less
        if prev then
          assert.is_true(d.id >= prev.id, what)
          assert.is_true(first >= prev.first, what .. ": key1 " .. first .. " < " .. prev.first)
        end
        prev = { id = d.id, first = first }
        ids[d.id] = true
      end
      local distinct = 0
      for _ in pairs(ids) do distinct = distinct + 1 end
      assert.is_true(distinct >= 2, "every dump read the same checkpoint")
      -- a newer chk-N without _metadata (being written) is passed over,
      -- for the newest complete one
      local partial = string.format("%s/chk-%d", job_dir, newest + 1)
      assert(os.execute("mkdir " .. h.quote(partial)))
      h.write_file(partial .. "/reduce_2-0.state", "half")
      local r = h.run({ "state", "dump", job_dir })
      assert.are.equal(0, r.code, r.stderr)
      assert.are.equal(string.format('{"checkpoint":%d}', newest), h.lines(r.stdout)[1])
      check_cut(counts_of(r.stdout), final, "the dump after the job")
    end)
  end

  it("of a job directory with no complete checkpoint fails, saying so", function()
    local dir = h.tmpdir()
    assert(os.execute("mkdir -p " .. h.quote(dir .. "/live/chk-3")))
    local r = h.run({ "state", "dump", dir .. "/live" })
    assert.are.equal(1, r.code)
    assert.are.equal("", r.stdout)
    assert.matches("state dump: '" .. dir .. "/live' holds no complete checkpoint", r.stderr, 1, true)
  end)
end)
