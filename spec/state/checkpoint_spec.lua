-- Checkpoints and recovery as a user sees them: exactly-once keyed state
-- for every backend across SIGKILLs, Lua errors and rescaling; operator
-- state of a buffering sink; corrupt, truncated, missing and foreign
-- checkpoint files, and --restore latest falling back past them; an
-- unwritable checkpoint directory and a full disk; `state dump` of every
-- backend; stopping with a final checkpoint or a savepoint; retention
-- across runs; RocksDB state larger than the process's memory.
local h = require("helpers")

-- Inputs of the kill and restart specs: large enough that a run lasts
-- well past a few checkpoints; smaller under the sanitizers (3-5x slower).
-- RocksDB's value cache makes it as fast as the heap backends here.
local SANITIZED = h.sanitized()
local NRECORDS = SANITIZED and 300000 or 1000000
local NRECORDS_OF = { memory = NRECORDS, filesystem = NRECORDS, rocksdb = NRECORDS }
local NKEYS = 1000

-- The job under test: sums the values of lines "k<key>,<value>,<seq>" per
-- key in keyed value state and prints the running sum of every record.
-- Options after the input, as key=value words:
--   fail_at=N marker=PATH  raise a Lua error on the first record whose seq
--                          is >= N once the map has snapshotted twice (so a
--                          checkpoint has completed), unless PATH exists;
--                          PATH is created first, so only one attempt fails
--   throttle=N             sleep 1 ms every N records (per subtask), for a
--                          job that lasts long enough to be checkpointed
--   maxp=N                 env:set_max_parallelism(N)
--   name=NAME              the job name (default "sums")
--   sum_uid=ID             the uid of the summing operator (default "sum")
local SUM_JOB = [[
local cstream = require("cstream")
local env = cstream.get_execution_environment()
local input = arg[1]
local opt = {}
for i = 2, #arg do
  local k, v = arg[i]:match("^([%w_]+)=(.*)$")
  opt[k] = v
end
local fail_at, throttle = tonumber(opt.fail_at), tonumber(opt.throttle)
if opt.maxp then env:set_max_parallelism(tonumber(opt.maxp)) end
local function exists(path)
  local f = io.open(path)
  if f then f:close() end
  return f ~= nil
end
env:read_text_file(input)
  :map({
    snapshots = 0,
    seen = 0,
    snapshot_state = function(self, ctx) self.snapshots = self.snapshots + 1 end,
    map = function(self, line)
      local k, v, seq = line:match("^(k%d+),(%d+),(%d+)$")
      self.seen = self.seen + 1
      if throttle and self.seen % throttle == 0 then cstream.sleep(1) end
      if fail_at and tonumber(seq) >= fail_at and self.snapshots >= 2
         and not exists(opt.marker) then
        assert(io.open(opt.marker, "w")):close()
        error("injected failure on record " .. seq)
      end
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
  }):uid(opt.sum_uid or "sum")
  :print()
env:execute(opt.name or "sums")
]]

-- Writes the input of n records (default NRECORDS) to dir/input.txt;
-- returns its path and, computed here, the final sum and the number of
-- records of every key.
local expectations = {}
local function sums_input(dir, n)
  n = n or NRECORDS
  local path = dir .. "/input.txt"
  -- awk writes a million lines in a fraction of the time Lua takes
  assert(os.execute(string.format("awk 'BEGIN { for (i = 1; i <= %d; i++) print \"k\" (i %% %d) \",\" (i %% 7) \",\" i }' > %s",
                                  n, NKEYS, h.quote(path))))
  if not expectations[n] then
    local sums, counts = {}, {}
    for i = 1, n do
      local k = i % NKEYS
      sums[k] = (sums[k] or 0) + i % 7
      counts[k] = (counts[k] or 0) + 1
    end
    local totals, ncounts = {}, {}
    for k, v in pairs(sums) do totals["k" .. k] = v ncounts["k" .. k] = counts[k] end
    expectations[n] = { totals = totals, counts = ncounts }
  end
  return path, expectations[n].totals, expectations[n].counts
end

-- Every (key, sum) a run printed, in order, with or without "N> ".
local function each_sum(out)
  return out:gmatch("%((k%d+),(%d+)%)")
end

-- Checks that the last sum printed for every key, over the outputs of all
-- runs in order, is its total (the print sink is at-least-once).
local function assert_last_sums(outputs, totals)
  local last = {}
  for _, out in ipairs(outputs) do
    for k, v in each_sum(out) do last[k] = tonumber(v) end
  end
  local wrong, nwrong = {}, 0
  for k, total in pairs(totals) do
    if last[k] ~= total then
      nwrong = nwrong + 1
      if #wrong < 5 then
        wrong[#wrong + 1] = string.format("%s: last printed %s, expected %d", k, tostring(last[k]), total)
      end
    end
  end
  for k in pairs(last) do
    if totals[k] == nil then nwrong = nwrong + 1 wrong[#wrong + 1] = "unexpected key " .. k end
  end
  assert(nwrong == 0, nwrong .. " key(s) with a wrong final sum:\n" .. table.concat(wrong, "\n"))
end

-- Checks that the runs printed every key exactly as many times as it has
-- records (nothing replayed, nothing lost), as after a clean stop.
local function assert_counts(outputs, counts)
  local seen = {}
  for _, out in ipairs(outputs) do
    for k in each_sum(out) do seen[k] = (seen[k] or 0) + 1 end
  end
  for k, n in pairs(counts) do
    assert(seen[k] == n, string.format("key %s printed %s times, it has %d records",
                                       k, tostring(seen[k]), n))
  end
end

local function mkdir(path)
  os.execute("mkdir -p " .. h.quote(path))
  return path
end

-- The names in a directory, sorted (empty when it does not exist).
local function list_dir(path)
  local p = io.popen("ls -1 " .. h.quote(path) .. " 2>/dev/null")
  local names = {}
  for l in p:lines() do names[#names + 1] = l end
  p:close()
  table.sort(names)
  return names
end

-- Every file under path with its size, modification time and inode, one
-- per line, sorted: to check that nothing changed a checkpoint.
local function tree_listing(path)
  local p = io.popen("find " .. h.quote(path) .. " -printf '%P %s %T@ %i\\n' | sort")
  local text = p:read("a")
  p:close()
  return text
end

-- The ids of the complete checkpoints (chk-N with a _metadata) in jobdir,
-- ascending.
local function checkpoint_ids(jobdir)
  local ids = {}
  for _, name in ipairs(list_dir(jobdir)) do
    local n = tonumber(name:match("^chk%-(%d+)$"))
    if n and h.read_file(jobdir .. "/" .. name .. "/_metadata") then ids[#ids + 1] = n end
  end
  table.sort(ids)
  return ids
end

local function stderr_of(p) return h.read_file(p.stderr) or "" end

-- Waits until a spawned run logged a checkpoint it completed (with
-- CSTREAM_VERBOSE=1) or ended; returns the id of the first one.
local function wait_checkpoint(p, min_count)
  return h.wait_for(function()
    local err = stderr_of(p)
    local n = 0
    for _ in err:gmatch("checkpoint %d+ completed") do n = n + 1 end
    if n >= (min_count or 1) then return tonumber(err:match("checkpoint (%d+) completed")) end
    if h.read_file(p.codefile) then return -1 end
  end, 60)
end

local function backend_flags(backend, dir)
  local flags = { "--state-backend", backend, "--checkpoint-interval", "100ms" }
  if backend ~= "memory" then
    for _, f in ipairs({ "--checkpoint-dir", dir .. "/chk",
                         "-D", "state.backend.rocksdb.localdir=" .. mkdir(dir .. "/rocksdb-work") }) do
      flags[#flags + 1] = f
    end
  end
  return flags
end

-- The concatenation of lists of arguments, as strings.
local function args_of(...)
  local args = {}
  for _, part in ipairs({ ... }) do
    for _, a in ipairs(part) do args[#args + 1] = tostring(a) end
  end
  return args
end

-- The same, after the binary: an argv for h.spawn.
local function argv_of(...)
  return args_of({ h.bin() }, ...)
end

-- Runs the sums job once per entry of parallelisms, every run after the
-- first with --restore latest; every run but the last is SIGKILLed a
-- random (seeded) short while after it completed a checkpoint of its own.
-- Checks that every restore resumed from a newer checkpoint and that the
-- final sums are exact.
local function sums_killed(backend, parallelisms, seed)
  local dir = h.tmpdir()
  local input, totals = sums_input(dir, NRECORDS_OF[backend])
  local job = h.write_job(SUM_JOB)
  math.randomseed(seed)
  local outputs, last_restored = {}, 0
  for run, p in ipairs(parallelisms) do
    local argv = argv_of({ "-p", p }, backend_flags(backend, dir),
                         run > 1 and { "--restore", "latest" } or {}, { job, input })
    local err
    if run < #parallelisms then
      local proc = h.spawn(argv, { env = "CSTREAM_VERBOSE=1" })
      local first = wait_checkpoint(proc)
      assert(first and first > 0, "run " .. run .. " completed no checkpoint:\n" .. stderr_of(proc))
      h.sleep(math.random(0, 150) / 1000)
      h.signal(proc, "KILL")
      local code = h.wait(proc, 30)
      err = stderr_of(proc)
      assert(code == 137, "run " .. run .. " ended (" .. tostring(code) ..
             ") before it could be killed; use a larger input:\n" .. err)
      outputs[run] = h.read_file(proc.stdout)
    else
      local r = h.run({ table.unpack(argv, 2) }, { env = "CSTREAM_VERBOSE=1", timeout = 120 })
      assert.are.equal(0, r.code, r.stderr)
      err = r.stderr
      outputs[run] = r.stdout
    end
    if run > 1 then
      local n = tonumber(err:match("restoring job 'sums' from checkpoint (%d+) %("))
      assert(n, "run " .. run .. " did not restore:\n" .. err)
      assert(n > last_restored, "run " .. run .. " restored checkpoint " .. n ..
             ", not newer than " .. last_restored)
      last_restored = n
    end
  end
  assert_last_sums(outputs, totals)
end

-- Runs the sums job with a Lua error injected in its first attempt; it
-- restarts in the same process from its last checkpoint.
local function sums_failing(backend, p)
  local dir = h.tmpdir()
  local n = NRECORDS_OF[backend]
  local input, totals = sums_input(dir, n)
  local job = h.write_job(SUM_JOB)
  local marker = dir .. "/failed-once"
  local r = h.run(args_of({ "-p", p }, backend_flags(backend, dir),
                          { "-D", "restart-strategy.fixed-delay.delay=10ms" },
                          { job, input, "fail_at=" .. (n // 4), "marker=" .. marker }),
                  { timeout = 120 })
  assert.are.equal(0, r.code, r.stderr)
  assert.matches("injected failure on record %d+", r.stderr)
  assert.matches("restarting %(attempt 1 of 3%) in 10 ms from checkpoint %d+\n", r.stderr)
  assert.is_nil(r.stderr:match("attempt 2 of"), r.stderr)
  assert_last_sums({ r.stdout }, totals)
end

describe("exactly-once keyed state", function()
  after_each(h.cleanup)

  for i, backend in ipairs({ "filesystem", "rocksdb" }) do
    it(backend .. ": three SIGKILLs at random moments, each run restored with --restore latest", function()
      sums_killed(backend, { 2, 2, 2, 2 }, 1000 + i)
    end)

    it(backend .. ": a Lua error on a record restarts the job in-process from its last checkpoint", function()
      sums_failing(backend, 2)
    end)

    it(backend .. ": a checkpoint taken at -p 2 restored at -p 1", function()
      sums_killed(backend, { 2, 1 }, 2000 + i)
    end)

    it(backend .. ": a checkpoint taken at -p 1 restored at -p 2", function()
      sums_killed(backend, { 1, 2 }, 3000 + i)
    end)
  end

  it("memory: a Lua error on a record restarts the job in-process from its last checkpoint " ..
     "(in-job restart only: memory checkpoints do not outlive the process)", function()
    sums_failing("memory", 2)
  end)
end)

-- A sink that buffers elements and appends them to a file `threshold` at a
-- time, one line per group, keeping its buffer in operator ListState (the
-- pattern of examples/operator_state_sink.lua).
local BUFFER_JOB = [[
local cstream = require("cstream")
local env = cstream.get_execution_environment()
local input, groups, threshold = arg[1], arg[2], tonumber(arg[3])
local seen = 0
local function BufferingSink()
  return {
    buffer = {},
    invoke = function(self, value)
      self.buffer[#self.buffer + 1] = value
      if #self.buffer == threshold then
        local f = assert(io.open(groups, "a"))
        f:setvbuf("full", 1 << 16) -- one write(2) per group
        f:write(table.concat(self.buffer, " "), "\n")
        f:close()
        self.buffer = {}
      end
    end,
    snapshot_state = function(self, ctx)
      self.checkpoint_state:update(self.buffer)
    end,
    initialize_state = function(self, ctx)
      self.checkpoint_state = ctx:get_operator_state_store()
        :get_list_state(cstream.list_state_descriptor("buffered-elements"))
      if ctx:is_restored() then
        for _, e in ipairs(self.checkpoint_state:get()) do
          self.buffer[#self.buffer + 1] = e
        end
      end
    end,
  }
end
env:read_text_file(input)
  :map(function(line)
    seen = seen + 1
    if seen % 50 == 0 then cstream.sleep(1) end -- at least 2 s for 100000
    return tonumber(line)
  end):uid("parse")
  :add_sink(BufferingSink()):uid("buffering-sink"):set_parallelism(1)
env:execute("buffering")
]]

describe("operator state", function()
  after_each(h.cleanup)

  it("a buffering sink's ListState keeps its buffered elements across a kill and a restore", function()
    local dir = h.tmpdir()
    local n, threshold = 100000, 500
    local nums = {}
    for i = 1, n do nums[i] = tostring(i) end
    local input = h.write_file(dir .. "/numbers.txt", table.concat(nums, "\n") .. "\n")
    local groups = dir .. "/groups.txt"
    local job = h.write_job(BUFFER_JOB)
    local flags = { "-p", "1", "--state-backend", "filesystem", "--checkpoint-dir", dir .. "/chk",
                    "--checkpoint-interval", "100ms" }
    math.randomseed(77)
    -- Kill until the checkpoint the next run restores holds a non-empty
    -- buffer (a barrier lands on a group boundary once in 500 times).
    local restored_buffer, restore_id
    for run = 1, 3 do
      local proc = h.spawn(argv_of(flags, run > 1 and { "--restore", "latest" } or {},
                                   { job, input, groups, threshold }),
                           { env = "CSTREAM_VERBOSE=1" })
      local first = wait_checkpoint(proc)
      assert(first and first > 0, "no checkpoint completed:\n" .. stderr_of(proc))
      h.sleep(math.random(0, 150) / 1000)
      h.signal(proc, "KILL")
      assert(h.wait(proc, 30) == 137, "the run ended before it was killed:\n" .. stderr_of(proc))
      local ids = checkpoint_ids(dir .. "/chk/buffering")
      restore_id = ids[#ids]
      local r = h.run({ "state", "dump", dir .. "/chk/buffering/chk-" .. restore_id,
                        "--operator", "buffering-sink", "--state", "buffered-elements" })
      assert.are.equal(0, r.code, r.stderr)
      local lines = h.lines(r.stdout)
      assert.are.equal(1, #lines, r.stdout)
      local rec = h.json_decode(lines[1])
      assert.are.equal("operator_list", rec.kind)
      restored_buffer = rec.value
      if restored_buffer.n > 0 then break end
    end
    assert(restored_buffer.n > 0, "three checkpoints in a row had an empty buffer")
    -- The buffer is the start of a group: consecutive from k * threshold + 1.
    assert.are.equal(1, restored_buffer[1] % threshold, "buffer starts at " .. restored_buffer[1])
    assert.is_true(restored_buffer.n < threshold)
    for i = 2, restored_buffer.n do
      assert.are.equal(restored_buffer[i - 1] + 1, restored_buffer[i])
    end

    local r = h.run(args_of(flags, { "--restore", "latest", job, input, groups, threshold }))
    assert.are.equal(0, r.code, r.stderr)
    assert.matches("restoring job 'buffering' from checkpoint " .. restore_id .. " ", r.stderr)
    -- Groups written after the checkpoint are written again by the restored
    -- run (the file is at-least-once); every line must still be a whole,
    -- correct group, and every group must be there. A lost or duplicated
    -- buffer would shift the groups after the restore.
    local expected = {}
    for g = 0, n // threshold - 1 do
      local parts = {}
      for i = 1, threshold do parts[i] = tostring(g * threshold + i) end
      expected[table.concat(parts, " ")] = g
    end
    local seen, nseen = {}, 0
    local lineno, text = 0, h.read_file(groups)
    assert.are.equal("\n", text:sub(-1), "the last group is not a whole line")
    for line in text:gmatch("([^\n]*)\n") do
      lineno = lineno + 1
      assert(expected[line], "line " .. lineno .. " is not a group of " .. threshold ..
             " consecutive numbers starting at a multiple of it plus one: " .. line:sub(1, 80) .. "...")
      if not seen[line] then nseen = nseen + 1 seen[line] = true end
    end
    assert.are.equal(n // threshold, nseen)
  end)
end)

-- A job with two complete checkpoints kept (num-retained 2): a throttled
-- sums job over 20000 records at -p 2 (at least 500 ms). Returns the
-- directory, the job, the input, the totals, the job's checkpoint dir, the
-- ids of the two checkpoints and the run's output.
local function two_checkpoints()
  local dir = h.tmpdir()
  local input, totals = sums_input(dir, 20000)
  local job = h.write_job(SUM_JOB)
  local r = h.run({ "-p", "2", "--state-backend", "filesystem", "--checkpoint-dir", dir .. "/chk",
                    "--checkpoint-interval", "100ms", "-D", "state.checkpoints.num-retained=2",
                    job, input, "throttle=20" })
  assert.are.equal(0, r.code, r.stderr)
  local jobdir = dir .. "/chk/sums"
  local ids = checkpoint_ids(jobdir)
  assert.are.equal(2, #ids, "expected 2 retained checkpoints, found " .. #ids)
  return dir, job, input, totals, jobdir, ids, r.stdout
end

local function restore_args(dir, job, input, restore, extra)
  local args = { "-p", "2", "--state-backend", "filesystem", "--checkpoint-dir", dir .. "/chk",
                 "--restore", restore }
  for _, a in ipairs(extra or {}) do args[#args + 1] = a end
  args[#args + 1] = job
  args[#args + 1] = input
  return args
end

local function truncate(path, size)
  local data = assert(h.read_file(path))
  h.write_file(path, data:sub(1, size or #data // 2))
end

-- Replaces the bytes at offset (1-based) with other bytes.
local function corrupt(path, offset)
  local data = assert(h.read_file(path))
  local old = data:sub(offset, offset + 3)
  local new = old:gsub(".", function(c) return string.char((c:byte() + 85) % 256) end)
  h.write_file(path, data:sub(1, offset - 1) .. new .. data:sub(offset + 4))
end

local function state_files(chkdir)
  local files = {}
  for _, name in ipairs(list_dir(chkdir)) do
    if name:match("%.state$") then files[#files + 1] = chkdir .. "/" .. name end
  end
  assert(#files > 0, "no state file in " .. chkdir)
  return files
end

local function escape(s) return (s:gsub("%p", "%%%0")) end

-- Checks that stderr says the state file at path is corrupt, naming it by
-- its path, or by its name and its checkpoint (two subtasks may read it).
local function assert_corrupt_file(stderr, path)
  local chk, base = path:match("^(.*)/([^/]+)$")
  assert(stderr:find("the state file '" .. path .. "' is corrupt", 1, true) or
         stderr:find("the state file '" .. base .. "' of checkpoint " .. chk .. " is corrupt", 1, true),
         "no message naming " .. path .. " as corrupt:\n" .. stderr)
end

describe("damaged checkpoints", function()
  after_each(h.cleanup)

  for what, damage in pairs({
    truncated = function(path) truncate(path) end,
    ["corrupt (four bytes changed)"] = function(path) corrupt(path, 30) end,
  }) do
    it("a " .. what .. " _metadata: restoring it names the file; --restore latest restores the older checkpoint", function()
      local dir, job, input, totals, jobdir, ids, first = two_checkpoints()
      local meta = jobdir .. "/chk-" .. ids[2] .. "/_metadata"
      damage(meta)
      local r = h.run(restore_args(dir, job, input, jobdir .. "/chk-" .. ids[2]))
      assert.are.equal(1, r.code, r.stderr)
      assert.matches("checkpoint metadata '" .. escape(meta) .. "': ", r.stderr)
      assert.is_nil(r.stdout:match("%(k"), "a job ran from a damaged checkpoint")

      r = h.run(restore_args(dir, job, input, "latest"))
      assert.are.equal(0, r.code, r.stderr)
      assert.matches("skipping checkpoint " .. escape(jobdir .. "/chk-" .. ids[2]), r.stderr)
      assert.matches("restoring job 'sums' from checkpoint " .. ids[1] .. " ", r.stderr)
      -- (the first run's output too: the older checkpoint may be so close
      -- to the end that the restored run prints only some keys)
      assert_last_sums({ first, r.stdout }, totals)
    end)
  end

  it("a truncated or corrupt state file: restoring it fails with a message naming the file", function()
    local dir, job, input, _, jobdir, ids = two_checkpoints()
    local chk = jobdir .. "/chk-" .. ids[2]
    local files = state_files(chk)
    truncate(files[1])
    local r = h.run(restore_args(dir, job, input, chk))
    assert.are.equal(1, r.code, r.stderr)
    assert.matches("cannot restore the state of operator 'Process' %(id sum, subtask %d/2%)", r.stderr)
    assert_corrupt_file(r.stderr, files[1])

    local _, _, _, _, jobdir2, ids2 = two_checkpoints()
    chk = jobdir2 .. "/chk-" .. ids2[2]
    files = state_files(chk)
    corrupt(files[#files], 60)
    r = h.run(restore_args(dir, job, input, chk))
    assert.are.equal(1, r.code, r.stderr)
    assert_corrupt_file(r.stderr, files[#files])
  end)

  for what, damage in pairs({
    truncated = function(path) truncate(path) end,
    ["corrupt (four bytes changed)"] = function(path) corrupt(path, 60) end,
    missing = function(path) os.remove(path) end,
  }) do
    it("a " .. what .. " state file in the newest checkpoint: --restore latest names it and restores the older complete one", function()
      local dir, job, input, totals, jobdir, ids, first = two_checkpoints()
      local file = state_files(jobdir .. "/chk-" .. ids[2])[1]
      damage(file)
      local r = h.run(restore_args(dir, job, input, "latest"))
      assert.are.equal(0, r.code, r.stderr)
      assert.matches("skipping checkpoint " .. escape(jobdir .. "/chk-" .. ids[2]) ..
                     ": the state file '" .. escape(file) .. "' is ", r.stderr)
      assert.matches("restoring job 'sums' from checkpoint " .. ids[1] .. " ", r.stderr)
      assert_last_sums({ first, r.stdout }, totals)
    end)
  end

  for _, incremental in ipairs({ false, true }) do
    local kind = incremental and "an incremental" or "a full"
    it(kind .. " RocksDB checkpoint with a changed SST file: restoring it fails naming the file; " ..
       "--restore latest restores the older one", function()
      local dir = h.tmpdir()
      local input, totals = sums_input(dir, 20000)
      local job = h.write_job(SUM_JOB)
      local flags = { "-p", "2", "--state-backend", "rocksdb", "--checkpoint-dir", dir .. "/chk",
                      "-D", "state.backend.rocksdb.localdir=" .. mkdir(dir .. "/work"),
                      "-D", "state.backend.incremental=" .. tostring(incremental),
                      "-D", "state.checkpoints.num-retained=2" }
      local r = h.run(args_of(flags, { "--checkpoint-interval", "100ms", job, input, "throttle=20" }))
      assert.are.equal(0, r.code, r.stderr)
      local first = r.stdout
      local jobdir = dir .. "/chk/sums"
      local ids = checkpoint_ids(jobdir)
      assert.are.equal(2, #ids)
      -- An SST file only the newest checkpoint has (a full checkpoint has
      -- its own files; an incremental one shares the older ones).
      local chk = jobdir .. "/chk-" .. ids[2]
      local manifest = assert(h.read_file(chk .. "/sum-0.rocksdb/cs-manifest"))
      local older = h.read_file(jobdir .. "/chk-" .. ids[1] .. "/sum-0.rocksdb/cs-manifest")
      local sst
      if incremental then
        for shared in manifest:gmatch("\nshared %S+ (%S+)") do
          if not older:find(" " .. shared .. " ", 1, true) then sst = jobdir .. "/shared/" .. shared end
        end
      else
        sst = chk .. "/sum-0.rocksdb/" .. assert(manifest:match("\nsst (%S+)"))
      end
      assert(sst, "no SST file of its own in " .. chk .. ":\n" .. manifest)
      -- Checkpoint files may be hard links to live files: replace, never
      -- modify in place (the restore below must not see the change through
      -- another link either).
      local data = assert(h.read_file(sst))
      os.remove(sst)
      h.write_file(sst, data)
      corrupt(sst, #data // 2)
      r = h.run(args_of(flags, { "--restore", chk, job, input }))
      assert.are.equal(1, r.code, r.stderr)
      assert.matches("cannot restore the state of operator 'Process' %(id sum, subtask 1/2%) from " ..
                     escape(chk), r.stderr)
      assert.is_truthy(r.stderr:find("checkpoint file " .. sst .. " is corrupt", 1, true), r.stderr)
      assert.are.equal("", r.stdout)

      r = h.run(args_of(flags, { "--restore", "latest", job, input }))
      assert.are.equal(0, r.code, r.stderr)
      assert.is_truthy(r.stderr:find("skipping checkpoint " .. chk .. ": ", 1, true), r.stderr)
      assert.is_truthy(r.stderr:find(sst, 1, true), r.stderr)
      assert.matches("restoring job 'sums' from checkpoint " .. ids[1] .. " ", r.stderr)
      assert_last_sums({ first, r.stdout }, totals)
    end)
  end

  it("restoring a checkpoint of another job is refused with a message", function()
    local dir, job, input, _, jobdir, ids = two_checkpoints()
    local r = h.run(restore_args(dir, job, input, jobdir .. "/chk-" .. ids[2], {}))
    assert.are.equal(0, r.code, r.stderr) -- the same job restores
    local args = restore_args(dir, job, input, jobdir .. "/chk-" .. ids[2])
    args[#args + 1] = "name=other"
    r = h.run(args)
    assert.are.equal(1, r.code, r.stderr)
    assert.matches("cannot restore " .. escape(jobdir .. "/chk-" .. ids[2]) ..
                   ": it belongs to job 'sums', not 'other'", r.stderr)
    assert.are.equal("", r.stdout)
  end)

  it("state for an operator the job no longer has: refused, suggesting --allow-non-restored-state, which runs it", function()
    local dir, job, input, _, jobdir, ids = two_checkpoints()
    local chk = jobdir .. "/chk-" .. ids[2]
    local args = restore_args(dir, job, input, chk)
    args[#args + 1] = "sum_uid=renamed"
    local r = h.run(args)
    assert.are.equal(1, r.code, r.stderr)
    assert.matches("cannot restore " .. escape(chk) .. ": it has state for operator%(s%) 'sum' " ..
                   "that the job no longer has", r.stderr)
    assert.matches("%-%-allow%-non%-restored%-state", r.stderr)
    assert.are.equal("", r.stdout)

    args = restore_args(dir, job, input, chk, { "--allow-non-restored-state" })
    args[#args + 1] = "sum_uid=renamed"
    r = h.run(args)
    assert.are.equal(0, r.code, r.stderr)
    assert.matches("dropping the state of operator%(s%) 'sum'", r.stderr)
    assert.matches("restoring job 'sums' from checkpoint " .. ids[2], r.stderr)
  end)

  it("a changed max parallelism is refused (env:set_max_parallelism and pipeline.max-parallelism)", function()
    local dir, job, input, _, jobdir, ids = two_checkpoints()
    local chk = jobdir .. "/chk-" .. ids[2]
    local args = restore_args(dir, job, input, chk)
    args[#args + 1] = "maxp=256"
    local r = h.run(args)
    assert.are.equal(1, r.code, r.stderr)
    assert.matches("cannot restore " .. escape(chk) .. ": it was taken with max parallelism 128 " ..
                   "and the job now has 256", r.stderr)
    r = h.run(restore_args(dir, job, input, chk, { "-D", "pipeline.max-parallelism=64" }))
    assert.are.equal(1, r.code, r.stderr)
    assert.matches("it was taken with max parallelism 128 and the job now has 64", r.stderr)
    assert.are.equal("", r.stdout)
  end)
end)

describe("checkpoint failures", function()
  after_each(h.cleanup)

  -- A checkpoint directory that cannot be created, even by root: its
  -- parent is a regular file.
  local function unwritable(dir)
    h.write_file(dir .. "/file", "not a directory\n")
    return dir .. "/file/sub"
  end

  it("an unwritable checkpoint directory fails checkpoints; tolerated, the job completes correctly", function()
    local dir = h.tmpdir()
    local input, totals = sums_input(dir, 20000)
    local job = h.write_job(SUM_JOB)
    local r = h.run({ "-p", "2", "--state-backend", "filesystem", "--checkpoint-dir", unwritable(dir),
                      "--checkpoint-interval", "100ms",
                      "-D", "execution.checkpointing.tolerable-failed-checkpoints=1000",
                      job, input, "throttle=20" })
    assert.are.equal(0, r.code, r.stderr)
    assert.matches("checkpoint %d+ failed: cannot create directory '" .. escape(dir .. "/file"), r.stderr)
    assert_last_sums({ r.stdout }, totals)
  end)

  it("an unwritable checkpoint directory with no tolerated failures fails the job, naming the key", function()
    local dir = h.tmpdir()
    local input = sums_input(dir, 20000)
    local job = h.write_job(SUM_JOB)
    local r = h.run({ "-p", "2", "--state-backend", "filesystem", "--checkpoint-dir", unwritable(dir),
                      "--checkpoint-interval", "100ms", "-D", "restart-strategy=none",
                      job, input, "throttle=20" })
    assert.are.equal(1, r.code, r.stderr)
    assert.matches("checkpoint 1 failed: cannot create directory", r.stderr)
    assert.matches("execution%.checkpointing%.tolerable%-failed%-checkpoints", r.stderr)
  end)

  it("a full disk (a 1 MiB tmpfs): checkpoints fail, tolerated or failing the job, " ..
     "and the complete checkpoint already there stays whole", function()
    local dir = h.tmpdir()
    local mnt = mkdir(dir .. "/mnt")
    if not os.execute("mount -t tmpfs -o size=1m tmpfs " .. h.quote(mnt) .. " 2>/dev/null") then
      pending("mounting a tmpfs needs root; only the unwritable directory above is tested")
    end
    finally(function() os.execute("umount " .. h.quote(mnt)) end)
    local input, totals = sums_input(dir, 20000)
    local job = h.write_job(SUM_JOB)
    local flags = { "-p", "2", "--state-backend", "filesystem", "--checkpoint-dir", mnt .. "/chk",
                    "--checkpoint-interval", "100ms" }
    -- Run 1 is killed after a checkpoint, so that much is left to do.
    local proc = h.spawn(argv_of(flags, { job, input, "throttle=20" }), { env = "CSTREAM_VERBOSE=1" })
    assert((wait_checkpoint(proc, 2) or -1) > 0, stderr_of(proc))
    h.signal(proc, "KILL")
    assert.are.equal(137, h.wait(proc, 30))
    local jobdir = mnt .. "/chk/sums"
    local ids = checkpoint_ids(jobdir)
    assert.are.equal(1, #ids)
    local chk = jobdir .. "/chk-" .. ids[1]
    local good = tree_listing(chk)
    os.execute("dd if=/dev/zero of=" .. h.quote(mnt .. "/filler") .. " bs=4096 2>/dev/null")

    r = h.run(args_of(flags, { "--restore", "latest",
                               "-D", "execution.checkpointing.tolerable-failed-checkpoints=1000",
                               job, input, "throttle=20" }))
    assert.are.equal(0, r.code, r.stderr)
    assert.matches("checkpoint %d+ failed: [^\n]*No space left on device", r.stderr)
    assert_last_sums({ h.read_file(proc.stdout), r.stdout }, totals)
    assert.are.equal(good, tree_listing(chk), "the complete checkpoint changed")
    assert.are.same({ "chk-" .. ids[1] }, list_dir(jobdir), "a failed checkpoint left files behind")

    r = h.run(args_of(flags, { "--restore", "latest", "-D", "restart-strategy=none",
                               job, input, "throttle=20" }))
    assert.are.equal(1, r.code, r.stderr)
    assert.matches("checkpoint %d+ failed and the job tolerates 0 failed checkpoint%(s%) in a row " ..
                   "%(execution%.checkpointing%.tolerable%-failed%-checkpoints%): [^\n]*No space left on device",
                   r.stderr)
    assert.are.equal(good, tree_listing(chk), "the complete checkpoint changed")
    assert.are.same({ "chk-" .. ids[1] }, list_dir(jobdir), "a failed checkpoint left files behind")

    os.remove(mnt .. "/filler")
    r = h.run(args_of(flags, { "--restore", "latest", job, input }))
    assert.are.equal(0, r.code, r.stderr)
    assert.matches("restoring job 'sums' from checkpoint " .. ids[1] .. " ", r.stderr)
  end)

  it("a memory checkpoint over state.backend.memory.max-state-size fails, naming the key", function()
    local dir = h.tmpdir()
    local input, totals = sums_input(dir, 20000)
    local job = h.write_job(SUM_JOB)
    local r = h.run({ "-p", "2", "--state-backend", "memory", "--checkpoint-interval", "100ms",
                      "-D", "state.backend.memory.max-state-size=1kb", "-D", "restart-strategy=none",
                      job, input, "throttle=20" })
    assert.are.equal(1, r.code, r.stderr)
    assert.matches("checkpoint 1 failed: the state size %d+ bytes exceeds the memory backend's " ..
                   "maximum of 1024 bytes %(state%.backend%.memory%.max%-state%-size%)", r.stderr)
    r = h.run({ "-p", "2", "--state-backend", "memory", "--checkpoint-interval", "100ms",
                "-D", "state.backend.memory.max-state-size=1kb",
                "-D", "execution.checkpointing.tolerable-failed-checkpoints=1000",
                job, input, "throttle=20" })
    assert.are.equal(0, r.code, r.stderr)
    assert_last_sums({ r.stdout }, totals)
  end)
end)

describe("state dump", function()
  after_each(h.cleanup)

  -- The source emits every record, then waits for two more snapshots, so a
  -- checkpoint with the final state completes before the job ends.
  local DUMP_JOB = [[
local cstream = require("cstream")
local env = cstream.get_execution_environment()
local records = {}
for i = 1, 300 do records[#records + 1] = { "k" .. (i % 3), i } end
records[#records + 1] = { 'q"uote\\back\nline \u{e9}', 7 }
env:add_source({
  run = function(self, ctx)
    for _, r in ipairs(records) do ctx:collect(r) end
    self.emitted = true
    while (self.after or 0) < 2 do cstream.sleep(5) end
  end,
  snapshot_state = function(self, ctx)
    if self.emitted then self.after = (self.after or 0) + 1 end
  end,
}):uid("gen")
  :key_by(1)
  :process({
    open = function(self, ctx)
      self.sum = ctx:get_state(cstream.value_state_descriptor("sum"))
      self.all = ctx:get_list_state(cstream.list_state_descriptor("all"))
      self.parity = ctx:get_map_state(cstream.map_state_descriptor("parity"))
    end,
    process_element = function(self, v, ctx, out)
      self.sum:update((self.sum:value() or 0) + v[2])
      self.all:add(v[2])
      local p = v[2] % 2 == 0 and "even" or "odd"
      self.parity:put(p, (self.parity:get(p) or 0) + 1)
    end,
  }):uid("agg")
  :add_sink({ invoke = function() end })
env:execute("dump")
]]

  for _, backend in ipairs({ "filesystem", "rocksdb", "rocksdb-incremental" }) do
  it(backend .. ": prints keyed state of every kind and source positions as JSON lines, filtered by operator and state", function()
    local dir = h.tmpdir()
    local job = h.write_job(DUMP_JOB)
    local r = h.run({ "-p", "2", "--state-backend", backend:match("^[a-z]+"),
                      "--checkpoint-dir", dir .. "/chk",
                      "-D", "state.backend.rocksdb.localdir=" .. mkdir(dir .. "/work"),
                      "-D", "state.backend.incremental=" .. tostring(backend == "rocksdb-incremental"),
                      "--checkpoint-interval", "50ms", job })
    assert.are.equal(0, r.code, r.stderr)
    local ids = checkpoint_ids(dir .. "/chk/dump")
    assert.are.equal(1, #ids)
    local chk = dir .. "/chk/dump/chk-" .. ids[1]
    if backend == "rocksdb-incremental" then
      assert.is_true(#list_dir(dir .. "/chk/dump/shared") > 0, "no shared SST files")
      for _, name in ipairs(list_dir(chk .. "/agg-0.rocksdb")) do
        assert.is_nil(name:match("%.sst$"), "an SST file in the incremental checkpoint: " .. name)
      end
    end
    local before = tree_listing(dir .. "/chk")
    assert.matches("chk%-%d+/_metadata %d+", before)
    local scratch = mkdir(dir .. "/scratch")
    r = h.run({ "state", "dump", chk }, { env = "TMPDIR=" .. scratch })
    assert.are.equal(0, r.code, r.stderr)
    assert.are.equal(before, tree_listing(dir .. "/chk"), "the dump changed the checkpoint")
    assert.are.same({}, list_dir(scratch), "the dump left its scratch files")
    local weird = 'q"uote\\back\nline \u{e9}'
    local sums, lists, parity, sources = {}, {}, {}, 0
    for _, line in ipairs(h.lines(r.stdout)) do
      local rec = h.json_decode(line) -- raises on anything that is not JSON
      assert.is_truthy(rec.operator == "gen" or rec.operator == "agg", line)
      assert.is_true(math.type(rec.subtask) == "integer" and rec.subtask >= 0 and rec.subtask < 2, line)
      if rec.source_position then
        sources = sources + 1
      else
        assert.are.equal("agg", rec.operator)
        assert.is_true(math.type(rec.key_group) == "integer" and rec.key_group >= 0 and rec.key_group < 128, line)
        if rec.state == "sum" then
          assert.are.equal("value", rec.kind)
          sums[rec.key] = rec.value
        elseif rec.state == "all" then
          assert.are.equal("list", rec.kind)
          lists[rec.key] = rec.value.n
        else
          assert.are.equal("parity", rec.state)
          assert.are.equal("map", rec.kind)
          parity[rec.key .. "/" .. rec.user_key] = rec.value
        end
      end
    end
    assert.is_true(sources >= 1, "no source position")
    assert.are.same({ k0 = 15150, k1 = 14950, k2 = 15050, [weird] = 7 }, sums)
    assert.are.same({ k0 = 100, k1 = 100, k2 = 100, [weird] = 1 }, lists)
    assert.are.same({ ["k0/even"] = 50, ["k0/odd"] = 50, ["k1/even"] = 50, ["k1/odd"] = 50,
                      ["k2/even"] = 50, ["k2/odd"] = 50, [weird .. "/odd"] = 1 }, parity)

    r = h.run({ "state", "dump", chk, "--operator", "agg", "--state", "sum" })
    assert.are.equal(0, r.code, r.stderr)
    local lines = h.lines(r.stdout)
    assert.are.equal(4, #lines)
    for _, line in ipairs(lines) do
      local rec = h.json_decode(line)
      assert.are.equal("agg", rec.operator)
      assert.are.equal("sum", rec.state)
    end
    r = h.run({ "state", "dump", chk, "--operator", "gen" })
    assert.are.equal(0, r.code, r.stderr)
    lines = h.lines(r.stdout)
    assert.are.equal(sources, #lines)
    for _, line in ipairs(lines) do assert.is_string(h.json_decode(line).source_position) end
  end)
  end

  it("reports a damaged checkpoint and bad arguments", function()
    local _, _, _, _, jobdir, ids = two_checkpoints()
    local chk = jobdir .. "/chk-" .. ids[2]
    local file = state_files(chk)[1]
    truncate(file)
    local r = h.run({ "state", "dump", chk })
    assert.are.equal(1, r.code)
    assert.matches("the state file '" .. escape(file) .. "' cannot be read: it is corrupt or truncated", r.stderr)
    truncate(chk .. "/_metadata", 10)
    r = h.run({ "state", "dump", chk })
    assert.are.equal(1, r.code)
    assert.matches("checkpoint metadata '" .. escape(chk .. "/_metadata") .. "'", r.stderr)
    r = h.run({ "state", "dump" })
    assert.are.equal(2, r.code)
    r = h.run({ "state", "dump", chk, "--bogus" })
    assert.are.equal(2, r.code)
    assert.matches("unexpected argument '%-%-bogus'", r.stderr)
  end)
end)

describe("stopping", function()
  after_each(h.cleanup)

  -- Starts the throttled sums job (n records, at least n / p / 20 ms) and
  -- waits until it completed two checkpoints.
  local function start(dir, p, n, extra, backend)
    local input, totals, counts = sums_input(dir, n)
    local job = h.write_job(SUM_JOB)
    local proc = h.spawn(argv_of({ "-p", p, "--state-backend", backend or "filesystem",
                                   "-D", "state.backend.rocksdb.localdir=" .. mkdir(dir .. "/work"),
                                   "--checkpoint-dir", dir .. "/chk", "--checkpoint-interval", "100ms" },
                                 extra or {}, { job, input, "throttle=20" }),
                         { env = "CSTREAM_VERBOSE=1" })
    local id = wait_checkpoint(proc, 2)
    assert(id and id > 0, "no checkpoint completed:\n" .. stderr_of(proc))
    return proc, job, input, totals, counts
  end

  it("SIGINT stops the job after a final checkpoint; --restore latest resumes it exactly once", function()
    local dir = h.tmpdir()
    local proc, job, input, totals = start(dir, 1, 30000)
    h.signal(proc, "INT")
    assert.are.equal(0, h.wait(proc, 30), stderr_of(proc))
    local err = stderr_of(proc)
    local stop = err:find("SIGINT received, stopping the job after a final checkpoint", 1, true)
    assert.is_truthy(stop, err)
    local final = tonumber(err:sub(stop):match("checkpoint (%d+) completed"))
    assert(final, "no checkpoint completed after the signal:\n" .. err)
    assert.are.same({ final }, checkpoint_ids(dir .. "/chk/sums"))

    local r = h.run({ "-p", "1", "--state-backend", "filesystem", "--checkpoint-dir", dir .. "/chk",
                      "--restore", "latest", job, input })
    assert.are.equal(0, r.code, r.stderr)
    assert.matches("restoring job 'sums' from checkpoint " .. final .. " ", r.stderr)
    -- At -p 1 the two runs print exactly the running sums of one run.
    local first = h.read_file(proc.stdout)
    assert.is_true(#first > 0 and #r.stdout > 0)
    local want, sums = {}, {}
    for line in h.read_file(input):gmatch("[^\n]+") do
      local k, v = line:match("^(k%d+),(%d+)")
      sums[k] = (sums[k] or 0) + tonumber(v)
      want[#want + 1] = "(" .. k .. "," .. sums[k] .. ")"
    end
    local got = h.lines(first .. r.stdout)
    assert.are.equal(#want, #got)
    for i = 1, #want do
      if want[i] ~= got[i] then error("line " .. i .. ": expected " .. want[i] .. ", got " .. got[i]) end
    end
    assert_last_sums({ first, r.stdout }, totals)
  end)

  for _, backend in ipairs({ "memory", "filesystem", "rocksdb" }) do
  it(backend .. ": --savepoint-on-stop writes a savepoint on SIGTERM that --restore resumes at another parallelism", function()
    local dir = h.tmpdir()
    local proc, job, input, totals, counts = start(dir, 2, 40000, { "--savepoint-on-stop" }, backend)
    h.signal(proc, "TERM")
    assert.are.equal(0, h.wait(proc, 30), stderr_of(proc))
    local err = stderr_of(proc)
    assert.matches("SIGTERM received, stopping the job with a savepoint", err)
    local sp = err:match("savepoint written to ([^\n]+)")
    assert(sp, err)
    local n = sp:match("^" .. escape(dir .. "/chk/sums/savepoint-") .. "(%d+)$")
    assert(n, "savepoint at " .. sp)
    assert.matches("\nkind savepoint\n", h.read_file(sp .. "/_metadata"))

    local r = h.run({ "-p", "1", "--state-backend", backend, "--checkpoint-dir", dir .. "/chk",
                      "-D", "state.backend.rocksdb.localdir=" .. dir .. "/work",
                      "--checkpoint-interval", "100ms", "--restore", sp, job, input })
    assert.are.equal(0, r.code, r.stderr)
    assert.matches("restoring job 'sums' from savepoint " .. n .. " ", r.stderr)
    local outputs = { h.read_file(proc.stdout), r.stdout }
    assert_last_sums(outputs, totals)
    assert_counts(outputs, counts) -- a stop with a savepoint replays nothing
    assert.is_truthy(h.read_file(sp .. "/_metadata"), "the savepoint was removed")
  end)
  end

  it("writes the savepoint under state.savepoints.dir when set", function()
    local dir = h.tmpdir()
    local proc, job, input, totals = start(dir, 2, 40000,
      { "--savepoint-on-stop", "-D", "state.savepoints.dir=" .. dir .. "/savepoints" })
    h.signal(proc, "INT")
    assert.are.equal(0, h.wait(proc, 30), stderr_of(proc))
    local sp = stderr_of(proc):match("savepoint written to ([^\n]+)")
    assert(sp and sp:match("^" .. escape(dir .. "/savepoints/savepoint-") .. "%d+$"), stderr_of(proc))
    local r = h.run({ "-p", "2", "--state-backend", "filesystem", "--restore", sp, job, input })
    assert.are.equal(0, r.code, r.stderr)
    assert_last_sums({ h.read_file(proc.stdout), r.stdout }, totals)
  end)
end)

describe("retention", function()
  after_each(h.cleanup)

  it("keeps only the newest state.checkpoints.num-retained checkpoints, also after a restore", function()
    local dir = h.tmpdir()
    local input, totals = sums_input(dir, 40000)
    local job = h.write_job(SUM_JOB)
    local flags = { "-p", "2", "--state-backend", "filesystem", "--checkpoint-dir", dir .. "/chk",
                    "--checkpoint-interval", "100ms", "-D", "state.checkpoints.num-retained=2" }
    local proc = h.spawn(argv_of(flags, { job, input, "throttle=20" }), { env = "CSTREAM_VERBOSE=1" })
    assert((wait_checkpoint(proc, 3) or -1) > 0, stderr_of(proc))
    h.signal(proc, "KILL")
    assert.are.equal(137, h.wait(proc, 30))
    local before = checkpoint_ids(dir .. "/chk/sums")
    assert.is_true(#before <= 2 and #before >= 1, "after the kill: " .. table.concat(before, ","))

    local r = h.run(args_of(flags, { "--restore", "latest", job, input, "throttle=20" }),
                    { env = "CSTREAM_VERBOSE=1" })
    assert.are.equal(0, r.code, r.stderr)
    assert_last_sums({ r.stdout }, totals)
    local completed = {}
    for n in r.stderr:gmatch("checkpoint (%d+) completed") do completed[#completed + 1] = tonumber(n) end
    assert(#completed >= 2, "the restored run completed fewer than 2 checkpoints:\n" .. r.stderr)
    -- the checkpoints of the killed run are older: they must be gone too
    assert.are.same({ completed[#completed - 1], completed[#completed] },
                    checkpoint_ids(dir .. "/chk/sums"))
    -- nor is a directory the kill left incomplete
    local names = { "chk-" .. completed[#completed - 1], "chk-" .. completed[#completed] }
    table.sort(names)
    assert.are.same(names, list_dir(dir .. "/chk/sums"))
  end)

  it("rocksdb incremental: after a restore, keeps the newest checkpoints, the shared files they " ..
     "reference and an earlier savepoint, and nothing else", function()
    local dir = h.tmpdir()
    local input, totals = sums_input(dir, 40000)
    local job = h.write_job(SUM_JOB)
    local flags = { "-p", "2", "--state-backend", "rocksdb", "--checkpoint-dir", dir .. "/chk",
                    "-D", "state.backend.rocksdb.localdir=" .. mkdir(dir .. "/work"),
                    "-D", "state.backend.incremental=true",
                    "--checkpoint-interval", "100ms", "-D", "state.checkpoints.num-retained=2" }
    local jobdir = dir .. "/chk/sums"
    -- Run 1 stops with a savepoint after a few checkpoints.
    local proc = h.spawn(argv_of(flags, { "--savepoint-on-stop", job, input, "throttle=20" }),
                         { env = "CSTREAM_VERBOSE=1" })
    assert((wait_checkpoint(proc, 3) or -1) > 0, stderr_of(proc))
    h.signal(proc, "TERM")
    assert.are.equal(0, h.wait(proc, 30), stderr_of(proc))
    local sp = stderr_of(proc):match("savepoint written to ([^\n]+)")
    assert(sp, stderr_of(proc))
    local before = checkpoint_ids(jobdir)
    assert.is_true(#before >= 1, "run 1 left no checkpoint")

    -- Run 2 restores the newest checkpoint of run 1 and completes.
    local r = h.run(args_of(flags, { "--restore", "latest", job, input, "throttle=20" }),
                    { env = "CSTREAM_VERBOSE=1" })
    assert.are.equal(0, r.code, r.stderr)
    assert.matches("restoring job 'sums' from checkpoint " .. before[#before] .. " ", r.stderr)
    local completed = {}
    for n in r.stderr:gmatch("checkpoint (%d+) completed") do completed[#completed + 1] = tonumber(n) end
    assert(#completed >= 2, "run 2 completed fewer than 2 checkpoints:\n" .. r.stderr)
    assert.are.same({ completed[#completed - 1], completed[#completed] }, checkpoint_ids(jobdir))
    assert.is_truthy(h.read_file(sp .. "/_metadata"), "the savepoint was removed")

    -- The shared directory holds exactly what the retained checkpoints
    -- reference, and each of them (and the savepoint) is whole.
    local referenced, nref = {}, 0
    for _, id in ipairs({ completed[#completed - 1], completed[#completed] }) do
      local chk = jobdir .. "/chk-" .. id
      for _, part in ipairs(list_dir(chk)) do
        if part:match("%.rocksdb$") then
          local manifest = assert(h.read_file(chk .. "/" .. part .. "/cs-manifest"))
          for shared in manifest:gmatch("\nshared %S+ (%S+)") do
            if not referenced[shared] then nref = nref + 1 end
            referenced[shared] = true
          end
        end
      end
      local d = h.run({ "state", "dump", chk, "--operator", "sum" })
      assert.are.equal(0, d.code, d.stderr)
      assert.are.equal(NKEYS, #h.lines(d.stdout))
    end
    assert.is_true(nref > 0, "no shared file referenced")
    local files = list_dir(jobdir .. "/shared")
    for _, name in ipairs(files) do
      assert.is_true(referenced[name], "an unreferenced shared file was kept: " .. name)
    end
    assert.are.equal(nref, #files)
    local d = h.run({ "state", "dump", sp, "--operator", "sum" })
    assert.are.equal(0, d.code, d.stderr)
    assert.are.equal(NKEYS, #h.lines(d.stdout))
    assert_last_sums({ h.read_file(proc.stdout), r.stdout }, totals)
  end)
end)

describe("rocksdb backend", function()
  after_each(h.cleanup)

  it("keeps its working state under state.backend.rocksdb.localdir while running, and removes it", function()
    local dir = h.tmpdir()
    local input, totals = sums_input(dir, 40000)
    local job = h.write_job(SUM_JOB)
    local work = mkdir(dir .. "/work")
    local proc = h.spawn({ h.bin(), "-p", "2", "--state-backend", "rocksdb", "--checkpoint-dir", dir .. "/chk",
                           "--checkpoint-interval", "100ms", "-D", "state.backend.rocksdb.localdir=" .. work,
                           job, input, "throttle=20" })
    assert.is_truthy(h.wait_for(function() return #list_dir(work) > 0 or h.read_file(proc.codefile) end, 30))
    assert.is_true(#list_dir(work) > 0, "nothing under the local dir while the job runs")
    assert.are.equal(0, h.wait(proc, 60), stderr_of(proc))
    assert.are.same({}, list_dir(work))
    assert_last_sums({ h.read_file(proc.stdout) }, totals)
  end)

  it("incremental checkpoints share SST files under <job>/shared/ and restore exactly once after kills", function()
    local dir = h.tmpdir()
    local input, totals = sums_input(dir, NRECORDS_OF.rocksdb)
    local job = h.write_job(SUM_JOB)
    math.randomseed(4242)
    local outputs = {}
    for run = 1, 3 do
      local proc = h.spawn(argv_of({ "-p", "2", "-D", "state.backend.incremental=true" },
                                   backend_flags("rocksdb", dir),
                                   run > 1 and { "--restore", "latest" } or {}, { job, input }),
                           { env = "CSTREAM_VERBOSE=1" })
      if run < 3 then
        assert((wait_checkpoint(proc, 2) or -1) > 0, stderr_of(proc))
        assert.is_true(#list_dir(dir .. "/chk/sums/shared") > 0, "no shared files")
        h.sleep(math.random(0, 150) / 1000)
        h.signal(proc, "KILL")
        assert.are.equal(137, h.wait(proc, 30))
      else
        assert.are.equal(0, h.wait(proc, 120), stderr_of(proc))
      end
      outputs[run] = h.read_file(proc.stdout)
    end
    assert_last_sums(outputs, totals)
  end)

  -- The job is bench/rocksdb_large_job.lua (n keys, vlen pseudo-random
  -- bytes each, VmHWM reported on stderr); its full-scale run (2 million
  -- keys, 2 GiB) is bench/rocksdb_large.sh.
  it("holds state several times larger than its peak resident memory, with checkpoints", function()
    local dir = h.tmpdir()
    -- 200,000 x 1 KiB: 200 MiB of state. Under the sanitizers (whose
    -- shadow memory and quarantine dwarf this) a small run checks only
    -- that it completes.
    local n, vlen = SANITIZED and 20000 or 200000, 1024
    local job = h.src("bench/rocksdb_large_job.lua")
    local r = h.run({ "-p", "1", "--state-backend", "rocksdb", "--checkpoint-dir", dir .. "/chk",
                      "--checkpoint-interval", "1s",
                      "-D", "state.backend.rocksdb.localdir=" .. mkdir(dir .. "/work"),
                      "-D", "state.backend.rocksdb.block.cache-size=8mb",
                      "-D", "state.backend.rocksdb.writebuffer.size=4mb",
                      "-D", "state.backend.rocksdb.value-cache.size=4mb",
                      job, n, vlen }, { timeout = 300 })
    assert.are.equal(0, r.code, r.stderr)
    local wrote, hwm = r.stderr:match("wrote (%d+) values; VmHWM (%d+) kB")
    assert(wrote, r.stderr)
    assert.are.equal(n, tonumber(wrote))
    if not SANITIZED then
      local state_kb = n * vlen // 1024
      assert(tonumber(hwm) < state_kb // 2, string.format(
             "peak resident memory %d kB for %d kB of state", tonumber(hwm), state_kb))
    end
  end)
end)
