-- Helpers shared by the specs: running the cstream-lua binary and the test
-- tools as a user would (exit code, stdout, stderr), temporary directories,
-- background processes that are always stopped, and small list utilities.
--
-- ctest sets CSTREAM_BIN (the binary), CSTREAM_TOOLS (the build directory
-- holding the test tools) and CSTREAM_SRC (the source tree).
local M = {}

local SRC = os.getenv("CSTREAM_SRC") or "."
local BIN = os.getenv("CSTREAM_BIN") or (SRC .. "/build/cstream-lua")
local TOOLS = os.getenv("CSTREAM_TOOLS") or (SRC .. "/build")

local tmpdirs, procs = {}, {}

-- Quotes s for the POSIX shell.
local function q(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end
M.quote = q

local function join(args)
  local parts = {}
  for i, a in ipairs(args) do parts[i] = q(a) end
  return table.concat(parts, " ")
end

-- How much slower than a plain build the binary runs: ThreadSanitizer
-- builds set CSTREAM_SLOW (CMakeLists.txt), and every wait below is that
-- many times longer there.
local SLOW = tonumber(os.getenv("CSTREAM_SLOW") or "") or 1

function M.src(rel) return SRC .. "/" .. rel end
function M.bin() return BIN end
function M.tool(name) return TOOLS .. "/" .. name end

function M.read_file(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

function M.write_file(path, text)
  local f = assert(io.open(path, "wb"))
  f:write(text)
  f:close()
  return path
end

-- A fresh directory, removed by cleanup().
function M.tmpdir()
  local p = io.popen("mktemp -d /tmp/cstream-spec.XXXXXX")
  local dir = p:read("l")
  p:close()
  tmpdirs[#tmpdirs + 1] = dir
  return dir
end

-- Writes a job script as <fresh dir>/job.lua and returns its path.
function M.write_job(text, name)
  return M.write_file(M.tmpdir() .. "/" .. (name or "job.lua"), text)
end

-- The lines of s, without the final empty one.
function M.lines(s)
  local out = {}
  if s == nil then return out end
  for line in s:gmatch("([^\n]*)\n") do out[#out + 1] = line end
  local rest = s:match("([^\n]+)$")
  if rest then out[#out + 1] = rest end
  return out
end

function M.sorted(t)
  local c = {}
  for i, v in ipairs(t) do c[i] = v end
  table.sort(c)
  return c
end

function M.sleep(s) os.execute("sleep " .. s) end

-- CSTREAM_SPEC_BACKEND runs the same spec against another state backend
-- (ctest registers the state and time specs once more with it): an argv
-- that runs the binary, not its "state" tool, and names no backend of its
-- own gets --state-backend=<it>. Returns argv, changed in place.
local function with_spec_backend(argv)
  local backend = os.getenv("CSTREAM_SPEC_BACKEND")
  if not backend or argv[1] ~= BIN or argv[2] == "state" then return argv end
  for _, a in ipairs(argv) do
    if a == "--state-backend" or a:match("^%-%-state%-backend=") then return argv end
  end
  table.insert(argv, 2, "--state-backend=" .. backend)
  return argv
end

-- Runs the binary with args and waits for it. opts: timeout (seconds,
-- default 120; the process is killed past it and code is 124 or 137),
-- stdin (a file to read input from), env (a string of VAR=value words),
-- cmd (an argv to run instead of the binary). Returns {code, stdout, stderr}.
function M.run(args, opts)
  opts = opts or {}
  local dir = M.tmpdir()
  local out, err = dir .. "/stdout", dir .. "/stderr"
  local argv = opts.cmd or with_spec_backend({ BIN, table.unpack(args) })
  local cmd = string.format("%s timeout -k 5 %d %s < %s > %s 2> %s; echo $?",
    opts.env or "", (opts.timeout or 120) * SLOW, join(argv), q(opts.stdin or "/dev/null"),
    q(out), q(err))
  local p = io.popen(cmd)
  local code = tonumber(p:read("a"))
  p:close()
  local r = { code = code, stdout = M.read_file(out) or "", stderr = M.read_file(err) or "" }
  M.check_sanitizers(r.stderr)
  return r
end

-- Fails the spec when a sanitizer reported anything, whatever the exit
-- code the spec expected (a job that must fail with 1 could hide one).
function M.check_sanitizers(stderr)
  if stderr:match("ERROR: AddressSanitizer") or stderr:match("ERROR: LeakSanitizer")
     or stderr:match("runtime error: ") or stderr:match("WARNING: ThreadSanitizer") then
    error("sanitizer report:\n" .. stderr, 2)
  end
end

-- Starts argv in the background (the binary on CSTREAM_SPEC_BACKEND's
-- backend, as run() does). Returns a process record {pid, stdout, stderr
-- (paths)}; cleanup() kills it if it is still running.
function M.spawn(argv, opts)
  opts = opts or {}
  argv = with_spec_backend({ table.unpack(argv) })
  local dir = M.tmpdir()
  local p = { stdout = dir .. "/stdout", stderr = dir .. "/stderr", codefile = dir .. "/code" }
  local pidfile = dir .. "/pid"
  -- The files exist before the shell opens them, so a reader polling them
  -- right after spawn() returns never finds them missing.
  M.write_file(p.stdout, "")
  M.write_file(p.stderr, "")
  -- The inner command's own pid is recorded, so signals reach it; the
  -- wrapper waits for it and records its exit status.
  local script = string.format("%s %s < %s > %s 2> %s & echo $! > %s; wait $!; echo $? > %s",
    opts.env or "", join(argv), q(opts.stdin or "/dev/null"), q(p.stdout), q(p.stderr),
    q(pidfile), q(p.codefile))
  os.execute("sh -c " .. q(script) .. " > /dev/null 2>&1 &")
  p.pid = M.wait_for(function()
    local s = M.read_file(pidfile)
    return s and tonumber(s:match("%d+"))
  end, 10)
  assert(p.pid, "could not start " .. argv[1])
  procs[#procs + 1] = p
  return p
end

-- Calls fn every 20 ms until it returns a true value (returned) or timeout
-- seconds pass (nil).
function M.wait_for(fn, timeout)
  local deadline = os.time() + (timeout or 10) * SLOW
  repeat
    local v = fn()
    if v then return v end
    M.sleep(0.02)
  until os.time() > deadline
  return nil
end

-- Waits until job_dir (<checkpoint dir>/<job name>) holds a completed
-- checkpoint; returns the path of its _metadata, or nil after timeout
-- seconds.
function M.wait_for_checkpoint(job_dir, timeout)
  return M.wait_for(function()
    local l = io.popen("ls " .. q(job_dir) .. "/chk-*/_metadata 2>/dev/null")
    local found = l:read("l")
    l:close()
    return found
  end, timeout or 30)
end

function M.alive(p)
  return os.execute("kill -0 " .. p.pid .. " 2>/dev/null") == true
end

-- Waits for a spawned process to exit; returns its exit code, or nil on
-- timeout.
function M.wait(p, timeout)
  local code = M.wait_for(function()
    local s = M.read_file(p.codefile)
    return s and tonumber(s:match("%d+"))
  end, timeout or 30)
  if code then M.check_sanitizers(M.read_file(p.stderr) or "") end
  return code
end

function M.signal(p, sig)
  os.execute(string.format("kill -%s %d 2>/dev/null", sig, p.pid))
end

-- Stops a spawned process (TERM, then KILL) and waits for it.
function M.kill(p)
  if M.read_file(p.codefile) then return end
  M.signal(p, "TERM")
  if not M.wait(p, 5) then
    M.signal(p, "KILL")
    M.wait(p, 5)
  end
end

-- Stops every spawned process and removes every temporary directory.
function M.cleanup()
  for _, p in ipairs(procs) do M.kill(p) end
  procs = {}
  for _, d in ipairs(tmpdirs) do os.execute("rm -rf " .. q(d)) end
  tmpdirs = {}
end

-- True when the binary under test was built with sanitizers (CI sets
-- ASAN_OPTIONS for that run; ctest in a sanitizer build sets
-- CSTREAM_SANITIZED): specs use smaller inputs there.
function M.sanitized()
  return os.getenv("ASAN_OPTIONS") ~= nil or os.getenv("CSTREAM_SANITIZED") == "1"
end

-- Decodes one JSON text (RFC 8259) into Lua values: objects and arrays
-- become tables (an array's length is in its field n), null becomes
-- M.json_null. Raises an error naming the offset on anything malformed,
-- so a spec can check that output is valid JSON.
M.json_null = setmetatable({}, { __tostring = function() return "null" end })

function M.json_decode(s)
  local pos = 1
  local function fail(what)
    error(string.format("invalid JSON at offset %d (%s): %s", pos, what, s), 0)
  end
  local function ws() pos = s:find("[^ \t\r\n]", pos) or #s + 1 end
  local value
  local function str()
    local out = {}
    pos = pos + 1
    while true do
      local c = s:sub(pos, pos)
      if c == "" then fail("unterminated string") end
      if c == '"' then pos = pos + 1 break end
      if c:byte() < 32 then fail("control character in a string") end
      if c == "\\" then
        local e = s:sub(pos + 1, pos + 1)
        local simple = { ['"'] = '"', ["\\"] = "\\", ["/"] = "/", b = "\b", f = "\f",
                         n = "\n", r = "\r", t = "\t" }
        if simple[e] then
          out[#out + 1] = simple[e]
          pos = pos + 2
        elseif e == "u" then
          local hex = s:match("^%x%x%x%x", pos + 2)
          if not hex then fail("bad \\u escape") end
          local cp = tonumber(hex, 16)
          pos = pos + 6
          if cp >= 0xD800 and cp <= 0xDBFF then
            local lo = s:match("^\\u(%x%x%x%x)", pos)
            if not lo then fail("lone surrogate") end
            cp = 0x10000 + (cp - 0xD800) * 0x400 + (tonumber(lo, 16) - 0xDC00)
            pos = pos + 6
          end
          out[#out + 1] = utf8.char(cp)
        else
          fail("bad escape")
        end
      else
        out[#out + 1] = c
        pos = pos + 1
      end
    end
    return table.concat(out)
  end
  function value()
    ws()
    local c = s:sub(pos, pos)
    if c == "{" then
      local t = {}
      pos = pos + 1
      ws()
      if s:sub(pos, pos) == "}" then pos = pos + 1 return t end
      while true do
        ws()
        if s:sub(pos, pos) ~= '"' then fail("expected a member name") end
        local k = str()
        ws()
        if s:sub(pos, pos) ~= ":" then fail("expected ':'") end
        pos = pos + 1
        t[k] = value()
        ws()
        local d = s:sub(pos, pos)
        pos = pos + 1
        if d == "}" then return t end
        if d ~= "," then fail("expected ',' or '}'") end
      end
    elseif c == "[" then
      local t = { n = 0 }
      pos = pos + 1
      ws()
      if s:sub(pos, pos) == "]" then pos = pos + 1 return t end
      while true do
        t.n = t.n + 1
        t[t.n] = value()
        ws()
        local d = s:sub(pos, pos)
        pos = pos + 1
        if d == "]" then return t end
        if d ~= "," then fail("expected ',' or ']'") end
      end
    elseif c == '"' then
      return str()
    end
    for lit, v in pairs({ ["true"] = true, ["false"] = false, ["null"] = M.json_null }) do
      if s:sub(pos, pos + #lit - 1) == lit then
        pos = pos + #lit
        return v
      end
    end
    local num = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
    if num and num:match("^-?0%d") then fail("leading zero") end
    if not num or not tonumber(num) then fail("unexpected character") end
    pos = pos + #num
    return math.tointeger(tonumber(num)) or tonumber(num)
  end
  local v = value()
  ws()
  if pos <= #s then fail("trailing characters") end
  return v
end

return M
