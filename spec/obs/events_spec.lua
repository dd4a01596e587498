-- The job's events as the endpoint reports them: a restart after a
-- failure (the same port serves the new attempt, and the counts start
-- again) and a hot reload (--watch) committed and one rolled back.
local h = require("helpers")
local o = require("obs_helpers")

local function overview(port)
  local code, body = o.get(port, "/jobs/overview")
  return code == 200 and h.json_decode(body) or nil
end

describe("the REST endpoint's job events", function()
  after_each(h.cleanup)

  it("counts a restart and serves the next attempt on the same port", function()
    local dir = h.tmpdir()
    local job = h.write_job(string.format([[
local cstream = require("cstream")
local env = cstream.get_execution_environment()
env:set_parallelism(1)
local marker, release = %q, %q
env:add_source({
  run = function(self, ctx)
    for i = 1, 100 do ctx:collect(i) end
    if not io.open(marker) then
      io.open(marker, "w"):close()
      error("the first attempt fails")
    end
    while not io.open(release) do cstream.sleep(20) end
  end,
}):name("numbers"):uid("numbers"):add_sink(function(v) end):name("nowhere"):uid("nowhere")
env:execute("restarted")
]], dir .. "/marker", dir .. "/release"))
    local p, port = o.start(job, { "-D", "restart-strategy=fixed-delay",
      "-D", "restart-strategy.fixed-delay.delay=10ms" })
    local j = h.wait_for(function()
      local t = overview(port)
      return t and t.restarts == 1 and t.vertices[2].records_in == 100 and t
    end, 60)
    assert.truthy(j, "no restart seen:\n" .. (h.read_file(p.stderr) or ""))
    local _, m = o.get(port, "/metrics")
    assert.are.equal(1, o.value(o.parse_prometheus(m), "cstream_job_restarts_total"))
    assert.matches("restarting %(attempt 1 of", h.read_file(p.stderr))
    h.write_file(dir .. "/release", "")
    assert.are.equal(0, h.wait(p, 60))
  end)

  it("lists reloads, committed and rolled back", function()
    local dir = h.tmpdir()
    local function version(n, bad)
      return string.format([[
local cstream = require("cstream")
local env = cstream.get_execution_environment()
env:set_parallelism(1)
local release = %q
env:add_source({
  run = function(self, ctx)
    local i = 0
    while not io.open(release) do i = i + 1; ctx:collect(i); cstream.sleep(20) end
  end,
}):name("numbers"):uid("numbers")
  :map({ open = function() %s end, map = function(self, v) return v * %d end })
  :name("times"):uid("times")
  :add_sink(function(v) end):name("nowhere"):uid("nowhere")
env:execute("reloaded")
]], dir .. "/release", bad and 'error("no open")' or "", n)
    end
    local job = h.write_file(dir .. "/job.lua", version(1))
    local p, port = o.start(job, { "--watch" })
    assert.truthy(h.wait_for(function()
      return (h.read_file(p.stderr) or ""):match("watching")
    end, 30))
    h.sleep(1.1) -- reloads come at most once a second
    h.write_file(job, version(2))
    local j = h.wait_for(function()
      local t = overview(port)
      return t and t.reloads.committed == 1 and t
    end, 60)
    assert.truthy(j, h.read_file(p.stderr))
    assert.are.equal(true, j.reloads.events[1].ok)
    assert.matches("times", j.reloads.events[1].what)
    h.sleep(1.1)
    h.write_file(job, version(3, true))
    j = h.wait_for(function()
      local t = overview(port)
      return t and t.reloads.failed == 1 and t
    end, 60)
    assert.truthy(j, h.read_file(p.stderr))
    assert.are.equal(false, j.reloads.events[1].ok) -- newest first
    assert.matches("no open", j.reloads.events[1].what)
    local _, m = o.get(port, "/metrics")
    local f = o.parse_prometheus(m)
    assert.are.equal(1, o.value(f, "cstream_job_reloads_total", { result = "committed" }))
    assert.are.equal(1, o.value(f, "cstream_job_reloads_total", { result = "failed" }))
    h.write_file(dir .. "/release", "")
    assert.are.equal(0, h.wait(p, 60))
  end)
end)
