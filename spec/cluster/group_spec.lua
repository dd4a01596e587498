-- Scale-out through Kafka (docs/scale-out.md): several cstream-lua
-- processes started with the same --group share one job through
-- librdkafka's mock cluster (started by the spec, on loopback). The job
-- sums "k<key>,<value>" records per key in value state and prints each
-- running sum; the sums only grow, so the largest printed sum of a key over
-- every process's output is its state: it equals the key's total when
-- nothing was lost, and exceeds it when a record was counted twice.
local h = require("helpers")
local kmock = dofile(h.src("spec/kafka/mock.lua"))

local NKEYS = 40
local PARTS = 6

local JOB = [[
local cstream = require("cstream")
local env = cstream.get_execution_environment()
local n = 0
env:kafka_source{ topic = "in" }
  :map(function(r)
    -- slow enough that a kill lands while records flow
    n = n + 1
    if n % 5 == 0 then cstream.sleep(2) end
    local k, v = r.value:match("^(k%d+),(%d+)$")
    return { k, tonumber(v) }
  end)
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

-- Records first..last as "k<i % NKEYS>,<i % 7>"; adds them to totals.
local function records(first, last, totals)
  local t = {}
  for i = first, last do
    local k = "k" .. (i % NKEYS)
    t[#t + 1] = { -1, "", k .. "," .. (i % 7) }
    totals[k] = (totals[k] or 0) + i % 7
  end
  return t
end

local function largest(procs)
  local m = {}
  for _, p in ipairs(procs) do
    for k, v in (h.read_file(p.stdout) or ""):gmatch("%((k%d+),(%d+)%)") do
      v = tonumber(v)
      if v > (m[k] or -1) then m[k] = v end
    end
  end
  return m
end

-- Waits until every key's largest sum is its total; then checks, after a
-- while more, that none went past it.
local function assert_exact(procs, totals)
  local ok = h.wait_for(function()
    local m = largest(procs)
    for k, t in pairs(totals) do
      if m[k] ~= t then return nil end
    end
    return true
  end, 90)
  h.sleep(1)
  local m = largest(procs)
  local bad = {}
  for k, t in pairs(totals) do
    if m[k] ~= t then bad[#bad + 1] = string.format("%s: %s, expected %d", k, tostring(m[k]), t) end
  end
  local errs = {}
  for i, p in ipairs(procs) do errs[#errs + 1] = "process " .. i .. ":\n" .. (h.read_file(p.stderr) or "") end
  assert(ok and #bad == 0, table.concat(bad, "\n") .. "\n" .. table.concat(errs, "\n"))
end

-- The logical subtasks a process said it runs, last time it said so.
local function share(p)
  local last
  for list in (h.read_file(p.stderr) or ""):gmatch("runs logical subtask%(s%) %[([%d,]*)%]") do
    last = list
  end
  return last
end

describe("a group of processes", function()
  local mock, dir, job
  before_each(function()
    mock = kmock.start(h, { ["in"] = PARTS })
    dir = h.tmpdir()
    job = h.write_job(JOB)
  end)
  after_each(function()
    h.cleanup()
  end)

  local function start(group)
    mock:command("create " .. group .. "-sum-repartition " .. PARTS)
    return function()
      local p = h.spawn({ h.bin(), "--group", group, "-D", "kafka.bootstrap-servers=" .. mock.bootstrap,
                          "--checkpoint-dir", dir .. "/chk", "--checkpoint-interval", "200ms",
                          "--state-backend", "filesystem", "-D", "cluster.partitions=" .. PARTS,
                          "-D", "cluster.session-timeout=3s", job })
      assert(h.wait_for(function() return share(p) end, 30), h.read_file(p.stderr))
      return p
    end
  end

  local function stop(procs)
    for _, p in ipairs(procs) do
      if h.alive(p) then h.signal(p, "TERM") end
    end
    for _, p in ipairs(procs) do h.wait(p, 30) end
  end

  it("gives the per-key results of one process, each process running a share", function()
    local totals = {}
    mock:produce("in", records(1, 6000, totals))
    local one = start("solo")()
    assert_exact({ one }, totals)
    assert.are.equal("0,1,2,3,4,5", share(one))
    stop({ one })

    local spawn = start("trio")
    local procs = { spawn(), spawn(), spawn() }
    -- wait for the group to settle on three shares that cover the six subtasks
    assert(h.wait_for(function()
      local all = {}
      for _, p in ipairs(procs) do
        local s = share(p)
        if s == nil or s == "" then return nil end
        for r in s:gmatch("%d+") do all[#all + 1] = tonumber(r) end
      end
      table.sort(all)
      return table.concat(all, ",") == "0,1,2,3,4,5"
    end, 30), share(procs[1]) .. " | " .. tostring(share(procs[2])) .. " | " .. tostring(share(procs[3])))
    assert_exact(procs, totals)
    stop(procs)
    -- each member keeps its newest checkpoint and the newest of it that
    -- holds each logical subtask: at most 1 + 6, after hundreds taken
    local members = 0
    for m in io.popen("ls " .. h.quote(dir .. "/chk/sums/trio")):lines() do
      members = members + 1
      local n = 0
      for c in io.popen("ls " .. h.quote(dir .. "/chk/sums/trio/" .. m)):lines() do
        if c:match("^chk%-%d+$") then n = n + 1 end
      end
      assert(n >= 1 and n <= 7, m .. " keeps " .. n .. " checkpoints")
    end
    assert.are.equal(3, members)
  end)

  it("survives a SIGKILL of one of three: the others take its subtasks, no record lost or "
     .. "counted twice", function()
    local totals = {}
    local spawn = start("kill")
    local procs = { spawn(), spawn(), spawn() }
    mock:produce("in", records(1, 8000, totals))
    -- the victim has processed records and completed checkpoints
    assert(h.wait_for(function()
      return h.read_file(procs[2].stdout) ~= "" and
             #h.lines(h.read_file(procs[2].stdout) or "") > 100
    end, 60), h.read_file(procs[2].stderr))
    h.sleep(0.5)
    local taken = share(procs[2])
    h.signal(procs[2], "KILL")
    h.wait(procs[2], 10)
    mock:produce("in", records(8001, 16000, totals))
    -- the survivors now run the victim's subtasks as well
    assert(h.wait_for(function()
      local have = (share(procs[1]) or "") .. "," .. (share(procs[3]) or "")
      for r in taken:gmatch("%d+") do
        if not ("," .. have .. ","):find("," .. r .. ",", 1, true) then return nil end
      end
      return true
    end, 60), (h.read_file(procs[1].stderr) or "") .. (h.read_file(procs[3].stderr) or ""))
    assert.matches("logical subtask %d+ starts from [^\n]*/chk%-%d+", h.read_file(procs[1].stderr)
                   .. h.read_file(procs[3].stderr))
    assert_exact(procs, totals)
    stop(procs)
  end)

  it("gives a fourth process a share, and nothing is counted twice", function()
    local totals = {}
    local spawn = start("grow")
    local procs = { spawn(), spawn(), spawn() }
    mock:produce("in", records(1, 6000, totals))
    assert_exact(procs, totals)
    procs[4] = spawn()
    assert(h.wait_for(function()
      local s = share(procs[4])
      return s and s ~= ""
    end, 60), h.read_file(procs[4].stderr))
    mock:produce("in", records(6001, 12000, totals))
    assert_exact(procs, totals)
    -- those that gave work away committed it first (with the range
    -- assignor at least one of the three loses a subtask to the fourth)
    local committed = 0
    for i = 1, 3 do
      if h.read_file(procs[i].stderr):find("committing the old share with a final checkpoint",
                                           1, true) then
        committed = committed + 1
      end
    end
    assert.is_true(committed >= 1)
    -- the newcomer did part of the work
    assert.is_true(#h.lines(h.read_file(procs[4].stdout) or "") > 0)
    stop(procs)
  end)

  it("refuses to start without what a group needs, saying what is missing", function()
    local function run(extra, script)
      local args = { "--group", "bad" }
      for _, a in ipairs(extra) do args[#args + 1] = a end
      args[#args + 1] = script or job
      return h.run(args, { timeout = 60 })
    end
    local B = "kafka.bootstrap-servers=" .. mock.bootstrap
    local r = run({ "-D", B, "--checkpoint-interval", "1s", "--state-backend", "filesystem" })
    assert.are.equal(1, r.code)
    assert.matches("%-%-group bad needs a checkpoint directory that every process", r.stderr)
    r = run({ "-D", B, "--checkpoint-dir", dir, "--state-backend", "filesystem" })
    assert.matches("needs checkpointing", r.stderr)
    r = run({ "--checkpoint-dir", dir, "--checkpoint-interval", "1s", "--state-backend", "filesystem" })
    assert.matches("needs Kafka brokers %(kafka.bootstrap%-servers%)", r.stderr)
    r = run({ "-D", B, "--checkpoint-dir", dir, "--checkpoint-interval", "1s", "--state-backend",
              "filesystem", "--restore", "latest" })
    assert.matches("needs no %-%-restore", r.stderr)
    -- the repartition topic does not exist / has another partition count
    r = run({ "-D", B, "--checkpoint-dir", dir, "--checkpoint-interval", "1s", "--state-backend",
              "filesystem" })
    assert.are.equal(1, r.code)
    assert.matches("repartition topic 'bad%-sum%-repartition' must exist with cluster.partitions = 4 "
                   .. "partitions %(it does not exist%)", r.stderr)
    mock:command("create bad-sum-repartition 3")
    r = run({ "-D", B, "--checkpoint-dir", dir, "--checkpoint-interval", "1s", "--state-backend",
              "filesystem" })
    assert.matches("must exist with cluster.partitions = 4 partitions %(it has 3 partitions%)", r.stderr)
    r = h.run({ "--group", "a/b", "-D", B, "--checkpoint-dir", dir, "--checkpoint-interval", "1s",
                "--state-backend", "filesystem", job })
    assert.are.equal(1, r.code)
    assert.matches("%-%-group a/b needs a name of letters, digits", r.stderr)
    -- a file source cannot be shared
    local file_job = h.write_job([[
local cstream = require("cstream")
local env = cstream.get_execution_environment()
env:read_text_file("x"):key_by(1):sum(2):print()
env:execute("f")
]], "file_job.lua")
    r = run({ "-D", B, "--checkpoint-dir", dir, "--checkpoint-interval", "1s" }, file_job)
    assert.are.equal(1, r.code)
    assert.matches("the job's file source %(operator 1%) cannot run in a group", r.stderr)
  end)
end)
