-- Chaos: a keyed sum over a replayable file source, SIGKILLed at random
-- moments many times in a row, each run restored with --restore latest at
-- a random parallelism in 1..4 and with a random checkpoint interval in
-- 50..200 ms; optionally with the checkpoint disk (a small tmpfs) filling
-- up and draining at random moments. Every random choice comes from one
-- seed, printed first, so a failing sequence can be run again.
--
--   lua5.4 scripts/chaos.lua [--kills N] [--seed S] [--records N]
--                            [--backend filesystem|rocksdb|all] [--disk-full]
--
-- (after bash scripts/build.sh; CSTREAM_BIN overrides build/cstream-lua).
-- The long mode is the default (20 kills per backend, 1M records); the
-- spec spec/chaos/chaos_spec.lua runs a short one under ctest.
--
-- What "exact" means here: the print sink is at-least-once (a replay
-- prints some sums again), so the output cannot be counted. Two checks
-- are exact instead:
--   * after every kill, the newest complete checkpoint is consistent: its
--     per-key sums (`cstream-lua state dump`) plus the sums of the records
--     its source positions say are still to be read equal the totals of
--     the whole input, for every key (nothing lost, nothing counted twice);
--   * after the last run has read the input to its end, the last sum it
--     or an earlier run printed for every key is that key's total.
-- And: no restore ever skips a damaged checkpoint (a kill or a full disk
-- must not damage a complete one), every run restores a checkpoint no
-- older than the one before, and a run that fails does so with a message.
local M = {}

local here = debug.getinfo(1, "S").source:match("^@(.*)/scripts/[^/]*$") or "."
package.path = here .. "/spec/support/?.lua;" .. package.path
local h = require("helpers")

local NKEYS = 1000
local WIDTH = 17 -- "k0123,4,00001234\n": fixed-width lines, so a byte range is a line range
local JOB_NAME = "chaos"

-- The job: parses "k<key>,<value>,<seq>", sums the values per key in keyed
-- value state and prints every running sum. throttle=N sleeps 1 ms every
-- N records per subtask so that a run lasts long enough to be killed.
local JOB = [[
local cstream = require("cstream")
local env = cstream.get_execution_environment()
local throttle = tonumber(arg[2])
env:read_text_file(arg[1])
  :map({
    seen = 0,
    map = function(self, line)
      local k, v = line:match("^(k%d+),(%d+),%d+$")
      self.seen = self.seen + 1
      if throttle and self.seen % throttle == 0 then cstream.sleep(1) end
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
env:execute("]] .. JOB_NAME .. [[")
]]

-- Record n (1-based) is line n-1: key n % NKEYS, value n % 7.
local function key_of(n) return string.format("k%04d", n % NKEYS) end

-- Writes the input of n records; returns its path and the totals per key.
local function write_input(dir, n)
  local path = dir .. "/input.txt"
  assert(os.execute(string.format(
    "awk 'BEGIN { for (i = 1; i <= %d; i++) printf \"k%%04d,%%d,%%08d\\n\", i %% %d, i %% 7, i }' > %s",
    n, NKEYS, h.quote(path))))
  return path, M.sums_of_lines(0, n)
end

-- The per-key sums of the records on lines [first, last) (0-based).
function M.sums_of_lines(first, last, into)
  local sums = into or {}
  for i = first, last - 1 do
    local n = i + 1
    local k = key_of(n)
    sums[k] = (sums[k] or 0) + n % 7
  end
  return sums
end

-- Adds to sums the records a file source position ("file a0:100,s100:200")
-- has still to read: the lines that start in each range [start, end).
-- Returns their number.
local function add_unread(position, nrecords, sums)
  local body, n = position:match("^file ?(.*)$"), 0
  assert(body, "not a file source position: " .. position)
  for _, s, e in body:gmatch("([as])(%d+):(%d+)") do
    local first = (tonumber(s) + WIDTH - 1) // WIDTH
    local last = math.min((tonumber(e) + WIDTH - 1) // WIDTH, nrecords)
    if last > first then
      M.sums_of_lines(first, last, sums)
      n = n + (last - first)
    end
  end
  return n
end

local function list_dir(path)
  local p = io.popen("ls -1 " .. h.quote(path) .. " 2>/dev/null")
  local names = {}
  for l in p:lines() do names[#names + 1] = l end
  p:close()
  return names
end

-- The newest complete checkpoint (chk-N with a _metadata) in jobdir: its
-- path and id, or nil.
local function latest_checkpoint(jobdir)
  local best
  for _, name in ipairs(list_dir(jobdir)) do
    local n = tonumber(name:match("^chk%-(%d+)$"))
    if n and (best == nil or n > best) and h.read_file(jobdir .. "/" .. name .. "/_metadata") then
      best = n
    end
  end
  if best then return jobdir .. "/chk-" .. best, best end
end

-- Checks that checkpoint chk is consistent with the input (see the top):
-- raises naming the first keys that are off. Returns the number of records
-- the checkpoint has read.
local function check_checkpoint(chk, nrecords, totals)
  local r = h.run({ "state", "dump", chk }, { timeout = 120 })
  assert(r.code == 0, "state dump " .. chk .. " failed:\n" .. r.stderr)
  local sums, unread, counted = {}, {}, nrecords
  for line in r.stdout:gmatch("[^\n]+") do
    local k, v = line:match('"state":"sum".-"key":"(k%d+)".-"value":(%d+)')
    if k then
      if sums[k] ~= nil then
        local same = {}
        for l in r.stdout:gmatch("[^\n]*\"" .. k .. "\"[^\n]*") do same[#same + 1] = l end
        error("key " .. k .. " twice in " .. chk .. ":\n" .. table.concat(same, "\n"))
      end
      sums[k] = tonumber(v)
    end
    local pos = line:match('"source_position":"(file[^"]*)"')
    if pos then counted = counted - add_unread(pos, nrecords, unread) end
  end
  for k, v in pairs(unread) do sums[k] = (sums[k] or 0) + v end
  local wrong = {}
  for k, total in pairs(totals) do
    if sums[k] ~= total and #wrong < 5 then
      wrong[#wrong + 1] = string.format("%s: state + unread = %s, total %d", k, tostring(sums[k]), total)
    end
  end
  for k in pairs(sums) do
    if totals[k] == nil then wrong[#wrong + 1] = "unexpected key " .. k end
  end
  assert(#wrong == 0, "checkpoint " .. chk .. " is not consistent with the input:\n" ..
         table.concat(wrong, "\n"))
  return counted
end

-- The last sum printed for every key, over the outputs in order, must be
-- its total.
local function check_last_sums(outputs, totals)
  local last = {}
  for _, out in ipairs(outputs) do
    for k, v in out:gmatch("%((k%d+),(%d+)%)") do last[k] = tonumber(v) end
  end
  local wrong = {}
  for k, total in pairs(totals) do
    if last[k] ~= total and #wrong < 5 then
      wrong[#wrong + 1] = string.format("%s: last printed %s, total %d", k, tostring(last[k]), total)
    end
  end
  assert(#wrong == 0, "wrong final sums:\n" .. table.concat(wrong, "\n"))
end

local function stderr_of(p) return h.read_file(p.stderr) or "" end

local function wall()
  local p = io.popen("date +%s.%N")
  local t = tonumber(p:read("l"))
  p:close()
  return t
end

local function completed_checkpoints(err)
  local n = 0
  for _ in err:gmatch("checkpoint %d+ completed") do n = n + 1 end
  return n
end


-- The disk filler of the full-disk mode: a file that takes every free
-- block of the tmpfs, written and removed at random moments.
local function fill(mnt) os.execute("dd if=/dev/zero of=" .. h.quote(mnt .. "/filler") .. " bs=65536 2>/dev/null") end
local function drain(mnt) os.remove(mnt .. "/filler") end

-- Runs one chaos sequence. opts: backend ("filesystem"|"rocksdb"), kills,
-- records, seed, disk_full (a tmpfs of the checkpoint dir, filled at random
-- moments; the caller checked it can mount), log (a function taking a
-- line). Returns a summary table; raises on any violation.
function M.run(opts)
  local log = opts.log or print
  local rnd = function(a, b) return math.random(a, b) end
  math.randomseed(opts.seed)
  local t0 = wall()
  local dir = h.tmpdir()
  local input, totals = write_input(dir, opts.records)
  local job = h.write_file(dir .. "/job.lua", JOB)
  local ckdir = dir .. "/chk"
  local mnt
  if opts.disk_full then
    mnt = dir .. "/mnt"
    os.execute("mkdir -p " .. h.quote(mnt))
    assert(os.execute("mount -t tmpfs -o size=" .. (opts.tmpfs_size or "4m") .. " tmpfs " .. h.quote(mnt)),
           "cannot mount a tmpfs")
    ckdir = mnt .. "/chk"
  end
  local ok, res = pcall(function()
    local jobdir = ckdir .. "/" .. JOB_NAME
    local base = { "--state-backend", opts.backend, "--checkpoint-dir", ckdir,
                   "-D", "state.backend.rocksdb.localdir=" .. dir .. "/rocksdb-work" }
    if opts.backend == "rocksdb" then
      base[#base + 1] = "-D"
      base[#base + 1] = "state.backend.incremental=true"
    end
    local outputs, last_restored = {}, 0
    local kills, failed_runs, fills, checked = 0, 0, 0, 0
    local run, had_checkpoint = 0, false
    while true do
      run = run + 1
      local final = kills >= opts.kills
      local p = rnd(1, 4)
      local interval = rnd(50, 200)
      local argv = { h.bin(), "-p", p, "--checkpoint-interval", interval .. "ms" }
      for _, a in ipairs(base) do argv[#argv + 1] = a end
      if run > 1 then argv[#argv + 1] = "--restore" argv[#argv + 1] = "latest" end
      -- With a full disk, checkpoint failures are tolerated, or fail the job,
      -- which restarts in the process from its last complete checkpoint, or
      -- fail the job for good (exit 1, with a message).
      local policy = mnt and ({ "tolerated", "restarts", "fails" })[rnd(1, 3)]
      if policy then
        local flags = policy == "tolerated"
          and { "execution.checkpointing.tolerable-failed-checkpoints=1000000" }
          or policy == "restarts"
          and { "restart-strategy.fixed-delay.attempts=1000000", "restart-strategy.fixed-delay.delay=10ms" }
          or { "restart-strategy=none" }
        for _, f in ipairs(flags) do
          argv[#argv + 1] = "-D"
          argv[#argv + 1] = f
        end
      end
      argv[#argv + 1] = job
      argv[#argv + 1] = input
      if not final then argv[#argv + 1] = tostring(opts.throttle or 10) end
      local how
      if final then
        if mnt then drain(mnt) end
        local r = h.run({ table.unpack(argv, 2) }, { env = "CSTREAM_VERBOSE=1", timeout = 300 })
        assert(r.code == 0, "the final run (" .. table.concat(argv, " ", 2) .. ") exited " ..
               tostring(r.code) .. ":\n" .. r.stderr)
        outputs[run] = r.stdout
        opts.last_err = r.stderr
        how = "ran to the end"
      else
        local proc = h.spawn(argv, { env = "CSTREAM_VERBOSE=1" })
        if rnd(1, 4) == 1 then
          -- at any moment: while restoring, or before a first checkpoint
          h.sleep(rnd(0, 400) / 1000)
          how = "killed at random"
        else
          local want = rnd(1, 3)
          h.wait_for(function()
            return completed_checkpoints(stderr_of(proc)) >= want or h.read_file(proc.codefile)
          end, 2)
          if mnt and rnd(1, 2) == 1 then
            -- the disk fills up now, and drains again a while later, or not
            fill(mnt)
            fills = fills + 1
            how = "disk filled, "
            h.sleep(rnd(0, 300) / 1000)
            if rnd(1, 2) == 1 then drain(mnt) end
          end
          h.sleep(rnd(0, 200) / 1000)
          how = (how or "") .. "killed after " .. completed_checkpoints(stderr_of(proc)) .. " checkpoint(s)"
        end
        h.signal(proc, "KILL")
        local code = h.wait(proc, 60)
        local err = stderr_of(proc)
        outputs[run] = h.read_file(proc.stdout) or ""
        opts.last_err = err
        if code == 0 then
          error("run " .. run .. " read all its input before it was killed: use more records " ..
                "or a lower throttle:\n" .. err)
        elseif code == 1 then
          -- only a full disk with no tolerated failures fails a run, with
          -- a message naming the key
          assert(policy == "fails" and err:match("checkpoint %d+ failed and the job tolerates 0 " ..
                 "failed checkpoint%(s%) in a row %(execution%.checkpointing%.tolerable%-failed%-checkpoints%)"),
                 "run " .. run .. " failed:\n" .. err)
          failed_runs = failed_runs + 1
          how = how .. ", had failed"
        else
          assert(code == 137, "run " .. run .. " ended with " .. tostring(code) .. ":\n" .. err)
          kills = kills + 1
        end
        if mnt and rnd(1, 2) == 1 then drain(mnt) end
      end
      local err = opts.last_err
      assert(not err:match("skipping checkpoint"), "run " .. run ..
             " found a damaged checkpoint:\n" .. err)
      assert(not err:match("AddressSanitizer") and not err:match("runtime error:"), err)
      assert(not (had_checkpoint and err:match("starting without state")), "run " .. run ..
             " found no checkpoint to restore, though one was complete:\n" .. err)
      local restored = run > 1 and tonumber(err:match("restoring job '" .. JOB_NAME .. "' from checkpoint (%d+)"))
      if restored then
        assert(restored >= last_restored, "run " .. run .. " restored checkpoint " .. restored ..
               ", older than " .. last_restored)
        last_restored = restored
      end
      local chk, id = latest_checkpoint(jobdir)
      had_checkpoint = chk ~= nil
      local counted = "-"
      if chk and not final then
        counted = check_checkpoint(chk, opts.records, totals)
        checked = checked + 1
      end
      log(string.format("chaos: run %d -p %d, checkpoints every %d ms%s: %s; restored %s; newest checkpoint %s (%s records read)",
                        run, p, interval, policy and (", checkpoint failures " .. policy) or "",
                        how, restored and ("chk-" .. restored) or "none", id and ("chk-" .. id) or "none",
                        tostring(counted)))
      if final then break end
    end
    check_last_sums(outputs, totals)
    return { kills = kills, runs = run, failed_runs = failed_runs, fills = fills,
             checked = checked, seconds = wall() - t0 }
  end)
  if mnt then os.execute("umount " .. h.quote(mnt)) end
  h.cleanup()
  if not ok then error(string.format("chaos (seed %d, %s%s): %s", opts.seed, opts.backend,
                                     mnt and ", full disk" or "", tostring(res)), 0) end
  return res
end

-- True when this process may mount a tmpfs (root, and the kernel lets it).
function M.can_mount()
  local dir = h.tmpdir()
  local okm = os.execute("mount -t tmpfs -o size=1m tmpfs " .. h.quote(dir) .. " 2>/dev/null")
  if okm then os.execute("umount " .. h.quote(dir)) end
  h.cleanup()
  return okm == true
end

local function main(argv)
  local opts = { kills = 20, records = 1000000, backend = "all", seed = os.time() }
  local i = 1
  while i <= #argv do
    local a = argv[i]
    if a == "--kills" then opts.kills = tonumber(argv[i + 1]) i = i + 1
    elseif a == "--seed" then opts.seed = tonumber(argv[i + 1]) i = i + 1
    elseif a == "--records" then opts.records = tonumber(argv[i + 1]) i = i + 1
    elseif a == "--backend" then opts.backend = argv[i + 1] i = i + 1
    elseif a == "--throttle" then opts.throttle = tonumber(argv[i + 1]) i = i + 1
    elseif a == "--disk-full" then opts.disk_full = true
    elseif a == "--only-disk-full" then opts.disk_full, opts.only_full = true, true
    else
      io.stderr:write("usage: lua5.4 scripts/chaos.lua [--kills N] [--seed S] [--records N] " ..
                      "[--backend filesystem|rocksdb|all] [--throttle N] [--disk-full]\n")
      os.exit(2)
    end
    i = i + 1
  end
  print("chaos: seed " .. opts.seed)
  local backends = opts.backend == "all" and { "filesystem", "rocksdb" } or { opts.backend }
  local modes = { false }
  if opts.disk_full then
    if M.can_mount() then modes = opts.only_full and { true } or { false, true }
    else print("chaos: the full-disk runs need to mount a tmpfs (root): skipped") end
  end
  for _, full in ipairs(modes) do
    for _, backend in ipairs(backends) do
      local o = {}
      for k, v in pairs(opts) do o[k] = v end
      o.backend, o.disk_full = backend, full
      local ok, res = pcall(M.run, o)
      if not ok then
        io.stderr:write(res, "\n")
        os.exit(1)
      end
      print(string.format("chaos: %s%s: %d kills survived in %d runs (%d failed on a full disk, " ..
                          "%d fills), %d checkpoints checked, totals of %d keys exact, %.1f s",
                          backend, full and ", full disk" or "", res.kills, res.runs, res.failed_runs,
                          res.fills, res.checked, NKEYS, res.seconds))
    end
  end
end

if arg and arg[0] and arg[0]:match("chaos%.lua$") and not package.loaded["busted"] then
  main(arg)
end
return M
