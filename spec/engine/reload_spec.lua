-- Hot reload (--watch) as a developer sees it: a keyed counting job keeps
-- running while its script (or a module it requires) is edited and saved;
-- the new code takes over between two records with every key's state kept,
-- bad versions are refused or rolled back while the old code goes on, rapid
-- saves coalesce, SIGHUP asks for a reload, and a changed topology restarts
-- the job in the same process from a savepoint.
--
-- The socket jobs read from cs_lineserver, which sends a list of keys again
-- and again (--repeat) every 2 ms until the spec creates its stop file, then
-- writes how many lines it sent and closes the connection, which ends the
-- job: the spec decides how long the stream lasts, and knows exactly what
-- the job must have counted.
local h = require("helpers")

local NKEYS = 20

-- Escapes the magic characters of a Lua pattern.
local function esc(s)
  return (s:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0"))
end

local function count_matches(s, pattern)
  local n = 0
  for _ in (s or ""):gmatch(pattern) do n = n + 1 end
  return n
end

local function stderr_of(p) return h.read_file(p.stderr) or "" end
local function stdout_of(p) return h.read_file(p.stdout) or "" end

-- Waits until the process's stderr holds at least n matches of pattern;
-- fails with the stderr so far otherwise.
local function wait_stderr(p, pattern, n, timeout)
  n = n or 1
  local ok = h.wait_for(function()
    return count_matches(stderr_of(p), pattern) >= n
  end, timeout or 15)
  assert(ok, string.format("no %d× '%s' in stderr:\n%s", n, pattern, stderr_of(p)))
end

-- Waits until stdout holds at least n lines matching pattern.
local function wait_stdout(p, pattern, n, timeout)
  n = n or 1
  local ok = h.wait_for(function()
    return count_matches(stdout_of(p), pattern) >= n
  end, timeout or 15)
  assert(ok, string.format("no %d× '%s' in stdout (%d lines so far); stderr:\n%s", n,
                           pattern, #h.lines(stdout_of(p)), stderr_of(p)))
end

local function nlines(p) return count_matches(stdout_of(p), "\n") end

-- Seconds since boot, to 10 ms.
local function uptime()
  local f = assert(io.open("/proc/uptime"))
  local t = f:read("n")
  f:close()
  return t
end

-- Saves text over path the way editors do: "write" truncates the file and
-- writes it again (io.open(path, "w")); "rename" writes a temporary file in
-- the same directory and renames it over the old one.
local function save(path, text, how)
  if how == "rename" then
    local tmp = path:match("^(.*)/") .. "/.~" .. path:match("[^/]*$") .. ".tmp"
    h.write_file(tmp, text)
    assert(os.rename(tmp, path))
  else
    local f = assert(io.open(path, "w"))
    f:write(text)
    f:close()
  end
end

-- ------------------------------------------------------------ the job --

-- The keyed counting job read from the line server: value state "count"
-- per key, output "<fmt> <key> <count>". o.fmt is a Lua expression for
-- the format, o.open code run at the start of open(), o.kind the state's
-- descriptor function, o.module a module required as fmt (from the job's
-- directory).
local function counting_job(o)
  return table.concat({
    'local dir = arg[0]:match("^(.*)/[^/]*$") or "."',
    'package.path = dir .. "/?.lua;" .. package.path',
    'local cstream = require("cstream")',
    o.module and 'local fmt = require("' .. o.module .. '")' or "",
    "local env = cstream.get_execution_environment()",
    'env:socket_text_stream("127.0.0.1", math.tointeger(tonumber(arg[1])))',
    "  :key_by(function(line) return line end)",
    "  :process({",
    "    open = function(self, ctx)",
    "      " .. (o.open or ""),
    '      self.count = ctx:get_state(cstream.' .. (o.kind or "value_state_descriptor") .. '("count"))',
    "    end,",
    "    process_element = function(self, key, ctx, out)",
    "      local n = (self.count:value() or 0) + 1",
    "      self.count:update(n)",
    '      out:collect(' .. o.fmt .. ' .. " " .. key .. " " .. n)',
    "    end,",
    "  })",
    "  :print()",
    'env:execute("counting")',
    "",
  }, "\n")
end

-- Starts the line server (keys k1..kNKEYS, over and over, one every 2 ms)
-- and the job with --watch at -p 2 (and extra_args). Returns the job's
-- process record, with the server's in p.server and the job's path in
-- p.job. files: other files (name -> text) to write next to the job first;
-- env: VAR=value words for the job's environment.
local function start(job_text, files, extra_args, env)
  local dir = h.tmpdir()
  local keys = {}
  for i = 1, NKEYS do keys[i] = "k" .. i end
  h.write_file(dir .. "/keys.txt", table.concat(keys, "\n") .. "\n")
  local server = {
    keys = keys, stop = dir .. "/stop", sent = dir .. "/sent", portfile = dir .. "/port",
  }
  server.proc = h.spawn({ h.tool("cs_lineserver"), "--file", dir .. "/keys.txt",
                          "--port-file", server.portfile, "--interval-ms", "2", "--repeat",
                          "--stop-file", server.stop, "--sent-file", server.sent,
                          "--timeout", "90" })
  local port = h.wait_for(function()
    local f = io.open(server.portfile)
    if not f then return nil end
    local n = f:read("n")
    f:close()
    return n
  end, 10)
  assert(port, "the line server did not start")
  local job = h.write_job(job_text)
  for name, text in pairs(files or {}) do h.write_file(job:match("^(.*)/") .. "/" .. name, text) end
  local argv = { h.bin(), "--watch", "-p", "2" }
  for _, a in ipairs(extra_args or {}) do argv[#argv + 1] = a end
  argv[#argv + 1] = job
  argv[#argv + 1] = tostring(port)
  local p = h.spawn(argv, { env = env })
  p.server, p.job, p.dir = server, job, job:match("^(.*)/")
  wait_stderr(p, "watching %d+ file%(s%) for changes")
  -- some records have been counted with the first version
  wait_stdout(p, "\n", 100)
  return p
end

-- True while the server is still sending (it writes the sent file when it
-- stops).
local function server_sending(p)
  return h.read_file(p.server.sent) == nil and h.alive(p.server.proc)
end

-- Stops the stream; the job ends when the server closes the connection.
-- Returns the number of times each key was sent.
local function finish(p)
  assert.is_true(server_sending(p), "the stream ended before the spec was done: the "
                 .. "edits did not happen while lines arrived")
  h.write_file(p.server.stop, "")
  local code = h.wait(p, 30)
  assert.are.equal(0, code, stderr_of(p))
  assert.are.equal(0, h.wait(p.server.proc, 10))
  local sent = tonumber(h.read_file(p.server.sent):match("%d+"))
  local totals, keys = {}, p.server.keys
  for j = 0, sent - 1 do
    local k = keys[j % #keys + 1]
    totals[k] = (totals[k] or 0) + 1
  end
  return totals, sent
end

-- Checks the job's output: every line is "N> <fmt> <key> <count>"; for
-- every key the counts are exactly 1, 2, 3, ... in output order (no reset,
-- gap or repeat) and end at the number of times the key was sent; the
-- formats of a key's lines follow the order of `formats` (a version never
-- comes back after a newer one took over). Returns the set of formats seen.
local function check_counts(stdout, totals, formats)
  local rank = {}
  for i, f in ipairs(formats) do rank[f] = i end
  local last, last_rank, seen, n = {}, {}, {}, 0
  for _, line in ipairs(h.lines(stdout)) do
    n = n + 1
    local fmt, key, c = line:match("^%d+> (%S+) (%S+) (%d+)$")
    assert.is_truthy(fmt, "unexpected output line: " .. line)
    assert.is_truthy(rank[fmt], "unexpected format in: " .. line)
    assert.is_truthy(totals[key], "unexpected key in: " .. line)
    c = tonumber(c)
    assert.are.equal((last[key] or 0) + 1, c,
                     "counts of " .. key .. " not continuous at: " .. line)
    assert.is_true(rank[fmt] >= (last_rank[key] or 0),
                   "an older version ran after a newer one at: " .. line)
    last[key], last_rank[key], seen[fmt] = c, rank[fmt], true
  end
  local expected_lines = 0
  for key, total in pairs(totals) do
    assert.are.equal(total, last[key], "final count of " .. key)
    expected_lines = expected_lines + total
  end
  assert.are.equal(expected_lines, n, "every line sent was counted once")
  return seen
end

local RELOADED = "cstream%-lua: reloaded job%.lua %(changed operators: ([^)]*)%): ([%d.]+) ms "
                 .. "after the change, processing paused ([%d.]+) ms\n"
local FAILED = "cstream%-lua: reload failed, the running code stays:"
local ROLLED_BACK = "cstream%-lua: reload rolled back, the running code stays:"

-- After a reload or a refused version: the job is the same process, still
-- running, and did not restart (one "watching" line).
local function assert_same_process(p)
  assert.is_true(h.alive(p), "the job is not running after the reload:\n" .. stderr_of(p))
  assert.is_true(server_sending(p))
  assert.are.equal(1, count_matches(stderr_of(p), "watching %d+ file"),
                   "the job restarted:\n" .. stderr_of(p))
end

describe("hot reload, same topology", function()
  after_each(h.cleanup)

  it("swaps the code of a running keyed job, keeping every count, the process and every record", function()
    local p = start(counting_job({ fmt = '"A"' }))
    -- a save that truncates and writes the file again
    save(p.job, counting_job({ fmt = '"B"' }), "write")
    wait_stderr(p, RELOADED, 1)
    assert_same_process(p)
    local changed, after, paused = stderr_of(p):match(RELOADED)
    assert.matches("^process_%d+$", changed)
    assert.is_true(tonumber(after) >= 0 and tonumber(after) < 5000, after)
    assert.is_true(tonumber(paused) >= 0 and tonumber(paused) <= tonumber(after), paused)
    wait_stdout(p, "> B k%d+ %d+\n", 50)
    -- a save by rename over the script
    save(p.job, counting_job({ fmt = '"C"' }), "rename")
    wait_stderr(p, RELOADED, 2)
    assert_same_process(p)
    wait_stdout(p, "> C k%d+ %d+\n", 50)
    local totals = finish(p)
    local seen = check_counts(stdout_of(p), totals, { "A", "B", "C" })
    assert.is_true(seen.A and seen.B and seen.C)
    assert.are.equal(2, count_matches(stderr_of(p), RELOADED))
  end)

  it("swaps the code of a job on the RocksDB backend, keeping every count", function()
    local p = start(counting_job({ fmt = '"A"' }), nil, { "--state-backend", "rocksdb" })
    save(p.job, counting_job({ fmt = '"B"' }), "rename")
    wait_stderr(p, RELOADED)
    assert_same_process(p)
    wait_stdout(p, "> B k%d+ %d+\n", 50)
    local totals = finish(p)
    local seen = check_counts(stdout_of(p), totals, { "A", "B" })
    assert.is_true(seen.A and seen.B)
  end)

  it("refuses a save with a syntax error, naming file and line, and keeps running", function()
    local p = start(counting_job({ fmt = '"A"' }))
    local broken = counting_job({ fmt = '"B"' }):gsub('out:collect%(', "out:collect((")
    save(p.job, broken, "write")
    wait_stderr(p, FAILED)
    local err = stderr_of(p)
    local line = 0
    for i, l in ipairs(h.lines(broken)) do if l:find("collect((", 1, true) then line = i end end
    assert.matches(FAILED .. "\n" .. esc(p.job) .. ":%d+: '%)' expected %(to close '%(' at line "
                   .. line .. "%)", err)
    assert.are.equal(0, count_matches(err, RELOADED))
    assert_same_process(p)
    -- the old code goes on counting
    local before = nlines(p)
    wait_stdout(p, "\n", before + 100)
    assert.are.equal(0, count_matches(stdout_of(p), "> B "))
    -- fixing the file is picked up
    save(p.job, counting_job({ fmt = '"C"' }), "rename")
    wait_stderr(p, RELOADED)
    wait_stdout(p, "> C k%d+ %d+\n", 20)
    local totals = finish(p)
    local seen = check_counts(stdout_of(p), totals, { "A", "C" })
    assert.is_true(seen.A and seen.C)
  end)

  it("rolls back a version whose open() raises, naming the operator", function()
    local p = start(counting_job({ fmt = '"A"' }))
    save(p.job, counting_job({ fmt = '"B"', open = 'error("no database for B")' }), "write")
    wait_stderr(p, ROLLED_BACK)
    local err = stderr_of(p)
    local msg = err:match(ROLLED_BACK .. "\n([^\n]*\n[^\n]*)")
    assert.is_truthy(msg, err)
    assert.matches("process_%d+", msg)
    assert.matches(esc(p.job) .. ":%d+: no database for B", msg)
    assert.are.equal(0, count_matches(err, RELOADED))
    assert_same_process(p)
    local before = nlines(p)
    wait_stdout(p, "\n", before + 100)
    save(p.job, counting_job({ fmt = '"C"' }), "write")
    wait_stderr(p, RELOADED)
    wait_stdout(p, "> C k%d+ %d+\n", 20)
    local totals = finish(p)
    -- no record ever went through the rolled-back version
    local seen = check_counts(stdout_of(p), totals, { "A", "C" })
    assert.is_true(seen.A and seen.C)
  end)

  it("rolls back a version that changes a state's kind under the same name", function()
    local p = start(counting_job({ fmt = '"A"' }))
    save(p.job, counting_job({ fmt = '"B"', kind = "map_state_descriptor" }), "rename")
    wait_stderr(p, ROLLED_BACK)
    local err = stderr_of(p)
    local msg = err:match(ROLLED_BACK .. "\n([^\n]*\n[^\n]*)")
    assert.is_truthy(msg, err)
    assert.matches("process_%d+", msg)
    assert.matches("'count'", msg)
    assert_same_process(p)
    local before = nlines(p)
    wait_stdout(p, "\n", before + 100)
    save(p.job, counting_job({ fmt = '"C"' }), "rename")
    wait_stderr(p, RELOADED)
    wait_stdout(p, "> C k%d+ %d+\n", 20)
    local totals = finish(p)
    local seen = check_counts(stdout_of(p), totals, { "A", "C" })
    assert.is_true(seen.A and seen.C)
  end)

  it("watches a local module: an edit is picked up, its deletion refused", function()
    local p = start(counting_job({ fmt = "fmt.tag", module = "fmt" }),
                    { ["fmt.lua"] = 'return { tag = "A" }\n' })
    assert.matches("watching 2 file%(s%) for changes %(job%.lua, fmt%.lua%)", stderr_of(p))
    local module = p.dir .. "/fmt.lua"
    save(module, 'return { tag = "B" }\n', "write")
    wait_stderr(p, RELOADED)
    wait_stdout(p, "> B k%d+ %d+\n", 20)
    assert_same_process(p)
    -- deleted while watched: the reload fails, the job goes on
    assert(os.remove(module))
    wait_stderr(p, FAILED)
    assert.matches(FAILED .. "\n" .. esc(p.job) .. ":%d+: module 'fmt' not found", stderr_of(p))
    assert_same_process(p)
    local before = nlines(p)
    wait_stdout(p, "\n", before + 100)
    -- written again: picked up
    save(module, 'return { tag = "C" }\n', "rename")
    wait_stderr(p, RELOADED, 2)
    wait_stdout(p, "> C k%d+ %d+\n", 20)
    local totals = finish(p)
    local seen = check_counts(stdout_of(p), totals, { "A", "B", "C" })
    assert.is_true(seen.A and seen.B and seen.C)
  end)

  it("coalesces ten saves within a second into at most two reloads, ending on the last", function()
    local p = start(counting_job({ fmt = '"A"' }))
    local formats = { "A" }
    local t0 = uptime()
    for i = 1, 10 do
      formats[#formats + 1] = "V" .. i
      save(p.job, counting_job({ fmt = '"V' .. i .. '"' }), i % 2 == 0 and "rename" or "write")
      if i < 10 then h.sleep(0.05) end
    end
    local took = uptime() - t0 -- about 0.5 s, more on a loaded machine
    wait_stdout(p, "> V10 k%d+ %d+\n", 20)
    -- a reload still pending would come within the next second
    h.sleep(1.5)
    local n = count_matches(stderr_of(p), RELOADED)
    -- the first save reloads at once, the next reload waits a second and
    -- takes every save made meanwhile: two reloads for saves within a
    -- second, one more per second they were stretched over
    local max = took < 1 and 2 or 1 + math.ceil(took)
    assert.is_true(n >= 1 and n <= max, string.format("%d reloads for saves over %.2f s\n%s",
                                                      n, took, stderr_of(p)))
    assert.are.equal(0, count_matches(stderr_of(p), FAILED))
    assert_same_process(p)
    local totals = finish(p)
    local seen = check_counts(stdout_of(p), totals, formats)
    assert.is_true(seen.A and seen.V10)
  end)

  it("rolls every subtask back when open() raises on one subtask only", function()
    local p = start(counting_job({ fmt = '"A"' }))
    save(p.job, counting_job({ fmt = '"B"',
      open = 'if ctx:index_of_this_subtask() == 1 then error("subtask 2 cannot open") end' }),
      "write")
    wait_stderr(p, ROLLED_BACK)
    assert.matches(ROLLED_BACK .. "\n[^\n]*process_%d+, subtask 2/2[^\n]*\n[^\n]*subtask 2 cannot open",
                   stderr_of(p))
    assert_same_process(p)
    local before = nlines(p)
    wait_stdout(p, "\n", before + 100)
    save(p.job, counting_job({ fmt = '"C"' }), "write")
    wait_stderr(p, RELOADED)
    wait_stdout(p, "> C k%d+ %d+\n", 20)
    local totals = finish(p)
    -- subtask 1 prepared B but went back to A: no B line on either subtask
    local seen = check_counts(stdout_of(p), totals, { "A", "C" })
    assert.is_true(seen.A and seen.C)
  end)

  it("forgets the states a rolled-back version registered", function()
    local p = start(counting_job({ fmt = '"A"' }))
    -- B registers a map state "scratch", then fails: rolled back
    save(p.job, counting_job({ fmt = '"B"',
      open = 'ctx:get_map_state(cstream.map_state_descriptor("scratch")) error("B fails")' }),
      "write")
    wait_stderr(p, ROLLED_BACK)
    -- C, which never ran with B, uses "scratch" as a value state: no state
    -- of that name ever existed in the running job, so this is no change of
    -- kind
    save(p.job, counting_job({ fmt = '"C"',
      open = 'self.scratch = ctx:get_state(cstream.value_state_descriptor("scratch"))' }),
      "write")
    h.wait_for(function()
      local err = stderr_of(p)
      return count_matches(err, RELOADED) + count_matches(err, ROLLED_BACK) >= 2
    end, 15)
    assert.are.equal(1, count_matches(stderr_of(p), ROLLED_BACK), stderr_of(p))
    wait_stderr(p, RELOADED)
    wait_stdout(p, "> C k%d+ %d+\n", 20)
    local totals = finish(p)
    check_counts(stdout_of(p), totals, { "A", "C" })
  end)

  for _, backend in ipairs({ "filesystem", "rocksdb" }) do
    it(backend .. ": reloads, and rolls back a version that registered a state, while a " ..
       "checkpoint's files are being written; checkpoints complete before and after", function()
      local chk = h.tmpdir() .. "/chk"
      local p = start(counting_job({ fmt = '"A"' }), nil,
                      { "--state-backend", backend, "--checkpoint-dir", chk, "--checkpoint-interval", "100ms" },
                      "CSTREAM_VERBOSE=1 CSTREAM_TEST_SNAPSHOT_DELAY_MS=500")
      wait_stderr(p, "checkpoint %d+ completed")
      save(p.job, counting_job({ fmt = '"B"',
        open = 'ctx:get_map_state(cstream.map_state_descriptor("scratch")) error("B fails")' }), "write")
      wait_stderr(p, ROLLED_BACK)
      save(p.job, counting_job({ fmt = '"C"' }), "rename")
      wait_stderr(p, RELOADED)
      assert_same_process(p)
      wait_stdout(p, "> C k%d+ %d+\n", 20)
      local before = count_matches(stderr_of(p), "checkpoint %d+ completed")
      h.wait_for(function() return count_matches(stderr_of(p), "checkpoint %d+ completed") > before end, 20)
      local totals = finish(p)
      check_counts(stdout_of(p), totals, { "A", "C" })
      assert.is_true(count_matches(stderr_of(p), "checkpoint %d+ completed") > before, stderr_of(p))
      assert.is_nil(stderr_of(p):match("checkpoint %d+ failed"), stderr_of(p))
    end)
  end

  it("refuses the empty file of a slow truncate-then-write, then picks up the whole file", function()
    local p = start(counting_job({ fmt = '"A"' }))
    local f = assert(io.open(p.job, "w")) -- truncated
    f:flush()
    h.sleep(0.1) -- longer than the debounce
    f:write(counting_job({ fmt = '"B"' }))
    f:close()
    wait_stderr(p, FAILED .. " " .. esc(p.job) .. " never called env:execute%(%)")
    wait_stderr(p, RELOADED)
    wait_stdout(p, "> B k%d+ %d+\n", 20)
    assert_same_process(p)
    local totals = finish(p)
    check_counts(stdout_of(p), totals, { "A", "B" })
  end)

  it("watches a local module that only a reloaded version requires, even one that failed to load", function()
    local p = start(counting_job({ fmt = '"A"' }),
                    { ["fmt2.lua"] = 'return { tag = "B" \n' }) -- a syntax error
    assert.matches("watching 1 file%(s%) for changes %(job%.lua%)", stderr_of(p))
    save(p.job, counting_job({ fmt = "fmt.tag", module = "fmt2" }), "write")
    wait_stderr(p, FAILED)
    assert.matches(FAILED .. "\nerror loading module 'fmt2' from file '" .. esc(p.dir)
                   .. "/fmt2%.lua':\n%s*" .. esc(p.dir) .. "/fmt2%.lua:2: '}' expected",
                   stderr_of(p))
    wait_stderr(p, "cstream%-lua: watching fmt2%.lua too\n")
    -- fixing the module alone is picked up
    save(p.dir .. "/fmt2.lua", 'return { tag = "B" }\n', "rename")
    wait_stderr(p, RELOADED)
    wait_stdout(p, "> B k%d+ %d+\n", 20)
    assert_same_process(p)
    -- fmt2.lua is now part of the running code: editing it reloads
    save(p.dir .. "/fmt2.lua", 'return { tag = "C" }\n', "write")
    wait_stderr(p, RELOADED, 2, 5)
    wait_stdout(p, "> C k%d+ %d+\n", 20)
    local totals = finish(p)
    check_counts(stdout_of(p), totals, { "A", "B", "C" })
  end)

  it("names exactly the operators a change reaches: through a module, an upvalue, not a moved line", function()
    -- cleaner calls a function of the local module fmt; counter's output
    -- uses the upvalue TAG; passthrough never changes
    local function job(tag, header)
      return (header or "") .. table.concat({
        'local dir = arg[0]:match("^(.*)/[^/]*$") or "."',
        'package.path = dir .. "/?.lua;" .. package.path',
        'local cstream = require("cstream")',
        'local fmt = require("fmt")',
        'local TAG = "' .. tag .. '"',
        "local env = cstream.get_execution_environment()",
        'env:socket_text_stream("127.0.0.1", math.tointeger(tonumber(arg[1])))',
        '  :map(function(line) return fmt.clean(line) end):uid("cleaner")',
        "  :key_by(function(line) return line end)",
        "  :process({",
        "    open = function(self, ctx)",
        '      self.count = ctx:get_state(cstream.value_state_descriptor("count"))',
        "    end,",
        "    process_element = function(self, key, ctx, out)",
        "      local n = (self.count:value() or 0) + 1",
        "      self.count:update(n)",
        '      out:collect(TAG .. " " .. key .. " " .. n)',
        "    end,",
        '  }):uid("counter")',
        '  :map(function(s) return s end):uid("passthrough")',
        "  :print()",
        'env:execute("counting")',
        "",
      }, "\n")
    end
    local p = start(job("A"), { ["fmt.lua"] = "return { clean = function(s) return s end }\n" })
    -- the module's function changes (not its behaviour): only cleaner
    save(p.dir .. "/fmt.lua",
         'return { clean = function(s) return (s:gsub("%s+$", "")) end }\n', "write")
    wait_stderr(p, RELOADED)
    assert.are.equal("cleaner", stderr_of(p):match(RELOADED))
    -- the upvalue's value changes: only counter
    save(p.job, job("B"), "rename")
    wait_stderr(p, RELOADED, 2)
    local changed = {}
    for c in stderr_of(p):gmatch(RELOADED) do changed[#changed + 1] = c end
    assert.are.same({ "cleaner", "counter" }, changed)
    wait_stdout(p, "> B k%d+ %d+\n", 20)
    -- lines added above every operator: no code changed
    save(p.job, job("B", "-- counts the keys\n-- (a comment)\n\n"), "write")
    wait_stderr(p, RELOADED, 3)
    changed = {}
    for c in stderr_of(p):gmatch(RELOADED) do changed[#changed + 1] = c end
    assert.are.same({ "cleaner", "counter", "none" }, changed)
    assert_same_process(p)
    local totals = finish(p)
    check_counts(stdout_of(p), totals, { "A", "B" })
  end)

  it("reloads on SIGHUP with no change, naming no changed operator", function()
    local p = start(counting_job({ fmt = '"A"' }))
    h.signal(p, "HUP")
    wait_stderr(p, RELOADED)
    assert.matches("reloaded job%.lua %(changed operators: none%)", stderr_of(p))
    assert_same_process(p)
    local before = nlines(p)
    wait_stdout(p, "\n", before + 100)
    local totals = finish(p)
    check_counts(stdout_of(p), totals, { "A" })
  end)

  it("restarts a Lua source's run() at the position kept in its operator state", function()
    local N = 4000
    local function source_job(tag)
      return [[
local cstream = require("cstream")
local env = cstream.get_execution_environment()
env:add_source({
  initialize_state = function(self, ctx)
    self.state = ctx:get_operator_state_store()
      :get_list_state(cstream.list_state_descriptor("pos"))
    self.pos = 0
    for _, v in ipairs(self.state:get()) do self.pos = v end
  end,
  snapshot_state = function(self, ctx) self.state:update({ self.pos }) end,
  run = function(self, ctx)
    while self.pos < ]] .. N .. [[ do
      self.pos = self.pos + 1
      ctx:collect("k" .. (self.pos % 20 + 1))
      if self.pos % 4 == 0 then cstream.sleep(2) end
    end
  end,
}):set_parallelism(1):uid("numbers")
  :key_by(function(line) return line end)
  :process({
    open = function(self, ctx)
      self.count = ctx:get_state(cstream.value_state_descriptor("count"))
    end,
    process_element = function(self, key, ctx, out)
      local n = (self.count:value() or 0) + 1
      self.count:update(n)
      out:collect("]] .. tag .. [[" .. " " .. key .. " " .. n)
    end,
  })
  :print()
env:execute("counting")
]]
    end
    local job = h.write_job(source_job("A"))
    local p = h.spawn({ h.bin(), "--watch", "-p", "2", job })
    p.job = job
    wait_stderr(p, "watching %d+ file")
    wait_stdout(p, "\n", 100)
    save(job, source_job("B"), "write")
    wait_stderr(p, RELOADED)
    assert.is_true(h.alive(p), stderr_of(p))
    assert.are.equal(0, h.wait(p, 30), stderr_of(p))
    local totals = {}
    for i = 1, N do
      local k = "k" .. (i % 20 + 1)
      totals[k] = (totals[k] or 0) + 1
    end
    local seen = check_counts(stdout_of(p), totals, { "A", "B" })
    assert.is_true(seen.A and seen.B, "the reload came after the source ended")
  end)
end)

-- -------------------------------------------------- changed topology --

-- A job reading a file (its position is in the savepoint, so the restart
-- is exactly-once), slowed down by a map that sleeps 1 ms a record (chained
-- to the source, so the source reads at most a batch ahead of the map, and the
-- savepoint's barrier is not queued behind thousands of records), with
-- a keyed counter whose id is fixed. o.before / o.after: operators
-- inserted before the counter's key_by / after the counter; o.key: the
-- key selector (the line itself by default; a record that is a table
-- prints its first field); o.par: the counter's (and the sink's)
-- parallelism.
local function file_job(o)
  return table.concat({
    'local cstream = require("cstream")',
    "local env = cstream.get_execution_environment()",
    "env:read_text_file(arg[1])",
    "  :map(function(line) cstream.sleep(1) return line end)",
    o.before or "",
    "  :key_by(" .. (o.key or "function(line) return line end") .. ")",
    "  :process({",
    "    open = function(self, ctx)",
    '      self.count = ctx:get_state(cstream.value_state_descriptor("count"))',
    "    end,",
    "    process_element = function(self, v, ctx, out)",
    "      local n = (self.count:value() or 0) + 1",
    "      self.count:update(n)",
    '      out:collect("A " .. (type(v) == "table" and v[1] or v) .. " " .. n)',
    "    end,",
    '  }):uid("counter")' .. (o.par and (":set_parallelism(" .. o.par .. ")") or ""),
    o.after or "",
    "  :print()" .. (o.par and (":set_parallelism(" .. o.par .. ")") or ""),
    'env:execute("counting")',
    "",
  }, "\n")
end

-- Keys k1..k20, n lines; returns the path and the count of each key.
local function input_file(dir, n)
  local lines, totals = {}, {}
  for i = 1, n do
    local k = "k" .. ((i * 7) % 20 + 1)
    lines[i] = k
    totals[k] = (totals[k] or 0) + 1
  end
  return h.write_file(dir .. "/input.txt", table.concat(lines, "\n") .. "\n"), totals
end

local function cmdline(pid)
  local s = h.read_file("/proc/" .. pid .. "/cmdline")
  return s and s:gsub("%z", " ") or ""
end

-- The lines a restart prints, in order; returns the savepoint's path.
local function assert_restart_lines(err)
  local pos = 1
  local savepoint
  for _, pat in ipairs({
    "the job's topology changed %(operators, ids, keys or parallelism%): stopping with a savepoint",
    "savepoint written to [^\n]+",
    "restarting with the new plan from ([^\n]+)\n",
    "restoring job 'counting' from savepoint %d+",
    "watching 1 file%(s%) for changes",
  }) do
    local s, e, cap = err:find(pat, pos)
    assert.is_truthy(s, "missing '" .. pat .. "' in order in:\n" .. err)
    savepoint = savepoint or cap
    pos = e + 1
  end
  return savepoint
end

describe("hot reload, changed topology", function()
  -- savepoint directories a restart made outside the spec's temporary ones
  local reload_dirs = {}
  after_each(function()
    h.cleanup()
    for _, d in ipairs(reload_dirs) do os.execute("rm -rf " .. h.quote(d)) end
    reload_dirs = {}
  end)

  local function run_restart(o_before, o_after, extra_args, check)
    local dir = h.tmpdir()
    local input, totals = input_file(dir, 10000)
    local job = h.write_job(file_job(o_before))
    local args = { h.bin(), "--watch", "-p", "2" }
    for _, a in ipairs(extra_args or {}) do args[#args + 1] = a end
    args[#args + 1] = job
    args[#args + 1] = input
    local p = h.spawn(args)
    reload_dirs[#reload_dirs + 1] = "/tmp/cstream-reload-" .. p.pid
    wait_stderr(p, "watching 1 file")
    -- A busy job's print() output reaches stdout in 64 KB blocks (or when a
    -- worker idles), so stdout cannot tell how far it got: the edit comes
    -- 0.5 s in, about a tenth of the way through the file.
    h.sleep(0.5)
    assert.is_true(h.alive(p), stderr_of(p))
    assert.is_falsy(cmdline(p.pid):match("%-%-restore"))
    save(job, file_job(o_after), "rename")
    wait_stderr(p, "restoring job 'counting' from savepoint %d+")
    -- the same process runs the new plan
    assert.is_true(h.alive(p), stderr_of(p))
    assert.matches("%-%-restore [^ ]+ %-%-allow%-non%-restored%-state", cmdline(p.pid))
    assert.are.equal(0, h.wait(p, 30), stderr_of(p))
    local err = stderr_of(p)
    local savepoint = assert_restart_lines(err)
    assert.are.equal(0, count_matches(err, RELOADED))
    assert.is_true(nlines(p) > 0)
    if check then check(err, savepoint, dir) end
    return p, totals, savepoint
  end

  it("adding an operator stops with a savepoint and restarts in the same process, counts carried over", function()
    local p, totals, savepoint = run_restart(
      {}, { after = '  :map(function(s) return (s:gsub("^A ", "B ")) end)' })
    assert.are.equal(0, count_matches(stderr_of(p), "dropping the state"))
    -- exactly once: every line of the file counted once, counts continue
    local seen = check_counts(stdout_of(p), totals, { "A", "B" })
    assert.is_true(seen.A and seen.B, "the restart came after the file was read")
    -- without a checkpoint directory the savepoint goes to a directory of
    -- its own, named after the process
    assert.matches("^/tmp/cstream%-reload%-" .. p.pid .. "/", savepoint)
    -- and it is removed when the job ends
    assert.is_nil(h.read_file(savepoint .. "/_metadata"))
    assert.is_nil(io.open("/tmp/cstream-reload-" .. p.pid), "left behind")
  end)

  it("removes its restarts' savepoints when the restarted job fails", function()
    local dir = h.tmpdir()
    local input = input_file(dir, 10000)
    local job = h.write_job(file_job({}))
    local p = h.spawn({ h.bin(), "--watch", "-p", "2", job, input })
    reload_dirs[#reload_dirs + 1] = "/tmp/cstream-reload-" .. p.pid
    wait_stderr(p, "watching 1 file")
    h.sleep(0.5) -- see run_restart
    -- the new version fails on the 400th line of a key, well after the restart
    save(job, file_job({ after = '  :map(function(s) if s:match(" 400$") then '
                                 .. 'error("no room for " .. s) end return s end)' }), "rename")
    wait_stderr(p, "restoring job 'counting' from savepoint %d+")
    assert.is_truthy(io.open("/tmp/cstream-reload-" .. p.pid), "no savepoint directory")
    assert.are.equal(1, h.wait(p, 30), stderr_of(p))
    assert.matches("no room for A k%d+ 400", stderr_of(p))
    assert.is_nil(io.open("/tmp/cstream-reload-" .. p.pid), "left behind")
  end)

  it("a changed key selector restarts from a savepoint, the keyed state carried over", function()
    local p, totals = run_restart({}, { key = "function(line) return line:sub(1) end" })
    local err = stderr_of(p)
    assert.matches("the key selector of operator%(s%) 'counter' changed: their keyed state "
                   .. "is carried over", err)
    assert.is_true(err:find("the key selector", 1, true) < err:find("savepoint written", 1, true))
    assert.are.equal(0, count_matches(err, "dropping the state"))
    -- the new selector gives the same keys: every count goes on
    local seen = check_counts(stdout_of(p), totals, { "A" })
    assert.is_true(seen.A)
  end)

  it("key_by(1) changed to key_by(2) restarts from a savepoint too (RocksDB backend)", function()
    local tuple = "  :map(function(line) return { line, line } end)"
    local p, totals = run_restart({ before = tuple, key = "1" }, { before = tuple, key = "2" },
      { "--state-backend", "rocksdb" })
    assert.matches("the key selector of operator%(s%) 'counter' changed", stderr_of(p))
    check_counts(stdout_of(p), totals, { "A" })
  end)

  it("removing a stateful operator drops and names its state, the others' carried over", function()
    local extra = table.concat({
      "  :key_by(function(line) return line end)",
      "  :process({",
      '    open = function(self, ctx) self.seen = ctx:get_state(cstream.value_state_descriptor("seen")) end,',
      "    process_element = function(self, key, ctx, out)",
      "      self.seen:update(true)",
      "      out:collect(key)",
      "    end,",
      '  }):uid("extra")',
    }, "\n")
    local p, totals, savepoint = run_restart({ before = extra }, {},
      { "--checkpoint-dir", h.tmpdir() .. "/chk" })
    local err = stderr_of(p)
    assert.matches("dropping the state of operator%(s%) 'extra'", err)
    assert.is_falsy(err:match("dropping the state of operator%(s%) [^\n]*counter"))
    -- it comes after the restart and before the restore
    assert.is_true(err:find("dropping the state", 1, true) > err:find("restarting with the new plan", 1, true))
    local seen = check_counts(stdout_of(p), totals, { "A" })
    assert.is_true(seen.A)
    assert.is_falsy(savepoint:match("^/tmp/cstream%-reload%-"), savepoint)
    -- in the configured directory, it is kept
    assert.is_truthy(h.read_file(savepoint .. "/_metadata"))
  end)

  it("changing the counter's parallelism restarts and redistributes its keyed state (filesystem backend)", function()
    local p, totals = run_restart({ par = 2 }, { par = 3 },
      { "--state-backend", "filesystem", "--checkpoint-dir", h.tmpdir() .. "/chk" })
    assert.are.equal(0, count_matches(stderr_of(p), "dropping the state"))
    local subtasks = {}
    for _, line in ipairs(h.lines(stdout_of(p))) do subtasks[line:match("^(%d+)>")] = true end
    assert.is_true(subtasks["3"], "no output from the third subtask")
    check_counts(stdout_of(p), totals, { "A" })
  end)
end)
