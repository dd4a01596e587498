-- What the specs of spec/obs share: a job that emits a known number of
-- records and then waits for a release file, starting it with its REST
-- endpoint on a free port, and fetching from that endpoint with curl.
local h = require("helpers")

local M = {}

-- A job: a source emitting n records {"k<i % 5>", i}, a batch of `step`
-- records per 20 ms (step grows by `ramp` each batch), then waiting until
-- the file `release` exists (which also ends the emitting; release ""
-- ends after the n records); a filter keeping even i; a keyed sum; a sink
-- writing nothing. Checkpoints every 100 ms (memory backend).
function M.job(n, release, opts)
  opts = opts or {}
  return h.write_job(string.format([[
local cstream = require("cstream")
local env = cstream.get_execution_environment()
env:set_parallelism(2)
env:enable_checkpointing(100)
local n, release, step, ramp = %d, %q, %d, %d
local function released()
  if release == "" then return false end -- ends on its own
  local f = io.open(release)
  if f then f:close() end
  return f ~= nil
end
env:add_source({
  run = function(self, ctx)
    local i = 0
    while i < n and not released() do
      for _ = 1, step do
        if i >= n then break end
        i = i + 1
        ctx:collect({"k" .. (i %% 5), i})
      end
      step = step + ramp
      cstream.sleep(20)
    end
    while release ~= "" and not released() do cstream.sleep(20) end
  end,
}):name("numbers"):uid("numbers")
  :filter(function(v) return v[2] %% 2 == 0 end):name("evens"):uid("evens")
  :key_by(1):sum(2):name("sums"):uid("sums")
  :add_sink(function(v) end):name("nowhere"):uid("nowhere")
env:execute("watched")
]], n, release, opts.step or 50, opts.ramp or 0))
end

-- Starts the job with --rest-port 0 (and extra flags); returns the process
-- and the port it logged.
function M.start(job, flags)
  local argv = { h.bin(), "--rest-port", "0" }
  for _, f in ipairs(flags or {}) do argv[#argv + 1] = f end
  argv[#argv + 1] = job
  local p = h.spawn(argv)
  local port = h.wait_for(function()
    local s = h.read_file(p.stderr)
    return s and s:match("REST endpoint on http://127%.0%.0%.1:(%d+)/")
  end, 60)
  assert(port, "no REST endpoint logged:\n" .. (h.read_file(p.stderr) or ""))
  return p, tonumber(port)
end

-- GET path: returns the status code and the body.
function M.get(port, path, timeout)
  local out = h.tmpdir() .. "/body"
  local r = h.run({}, { cmd = { "curl", "-s", "-m", tostring(timeout or 10), "-o", out,
    "-w", "%{http_code}", "http://127.0.0.1:" .. port .. path } })
  return tonumber(r.stdout), h.read_file(out) or ""
end

-- Parses Prometheus' text format strictly enough to catch a malformed
-- line: returns {[name] = {type=, help=, samples = {{labels = {}, value =}}}}.
function M.parse_prometheus(text)
  local fams, byname = {}, {}
  for line in text:gmatch("([^\n]*)\n") do
    local kind, name, rest = line:match("^# (%u+) ([%w_:]+) (.*)$")
    if kind == "HELP" or kind == "TYPE" then
      fams[name] = fams[name] or { samples = {} }
      fams[name][kind:lower()] = rest
    elseif line ~= "" then
      local mname, labels, value = line:match("^([%a_:][%w_:]*)(%b{}) (%S+)$")
      assert(mname, "malformed sample line: " .. line)
      local f = assert(fams[mname], "a sample before its # TYPE: " .. line)
      local l = {}
      local inner = labels:sub(2, -2)
      local pos = 1
      while pos <= #inner do
        local k, v, e = inner:match('^([%a_][%w_]*)="(.-)"()', pos)
        assert(k, "malformed labels: " .. labels)
        l[k] = v
        pos = e
        if inner:sub(pos, pos) == "," then pos = pos + 1 end
      end
      local num = tonumber(value) or (value == "+Inf" and math.huge) or (value == "NaN" and 0 / 0)
      assert(num, "malformed value: " .. line)
      f.samples[#f.samples + 1] = { labels = l, value = num }
      byname[mname] = f
    end
  end
  return fams
end

-- The value of a family's sample whose labels include want, summed over
-- the samples that match.
function M.value(fams, name, want)
  local f = assert(fams[name], "no metric " .. name)
  local sum, found = 0, false
  for _, s in ipairs(f.samples) do
    local ok = true
    for k, v in pairs(want or {}) do if s.labels[k] ~= v then ok = false end end
    if ok then sum, found = sum + s.value, true end
  end
  return found and sum or nil
end

return M
