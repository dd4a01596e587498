-- The one-line progress on a terminal: drawn on a pseudo-terminal (script
-- from bsdutils gives the job one), never when stderr is not a terminal,
-- forced by --progress, stopped by --quiet.
local h = require("helpers")
local o = require("obs_helpers")

-- Runs the job on a pseudo-terminal; returns what the terminal showed.
local function on_pty(flags, job)
  local cmd = h.quote(h.bin()) .. " " .. flags .. " " .. h.quote(job)
  local r = h.run({}, { timeout = 90, cmd = { "script", "-qfec", cmd, "/dev/null" } })
  assert.are.equal(0, r.code, r.stdout .. r.stderr)
  return r.stdout
end

-- A job that emits 400 records over about 1.6 s and ends.
local function job()
  return o.job(400, "", { step = 5 })
end

describe("the progress line", function()
  after_each(h.cleanup)

  it("is redrawn in place on a terminal, with rates and the last checkpoint", function()
    local shown = on_pty("", job())
    local lines = 0
    for _ in shown:gmatch("\r\27%[Kcstream%-lua: watched | [%d%.kM]+ rec/s in, [%d%.kM]+ rec/s out") do
      lines = lines + 1
    end
    assert.is_true(lines >= 2, "redrawn " .. lines .. " time(s):\n" .. shown)
    assert.matches("%([1-9]%d* read%)", shown)
    assert.matches("| checkpoint %d+ %d+s ago %(%d+ ms%)", shown)
    assert.matches("[1-9]%d* rec/s in", shown) -- a rate, not only zeros
    -- cleared at the end: the terminal's last bytes erase the line
    assert.matches("\r\27%[K[\r\n]*$", shown)
  end)

  it("never shows when stderr is not a terminal, unless --progress", function()
    local j = job()
    local r = h.run({ j })
    assert.are.equal(0, r.code)
    assert.is_nil(r.stderr:match("rec/s"), r.stderr)
    r = h.run({ "--progress", j })
    assert.are.equal(0, r.code)
    assert.matches("\r\27%[Kcstream%-lua: watched | ", r.stderr)
  end)

  it("shows the watermark and how far event time lags the clock", function()
    -- Records stamped 30 s before the wall clock for about 2.5 s: the
    -- watermark trails the clock by 30 s and a little more.
    local j = h.write_job([[
local cstream = require("cstream")
local env = cstream.get_execution_environment()
env:set_parallelism(1)
env:add_source({
  run = function(self, ctx)
    for i = 1, 125 do
      ctx:collect({ "k" .. (i % 3), os.time() * 1000 - 30000 })
      cstream.sleep(20)
    end
  end,
}):name("behind"):uid("behind")
  :assign_timestamps_and_watermarks(
    cstream.watermark_strategy.for_monotonous_timestamps(function(v) return v[2] end))
  :key_by(1):sum(2)
  :add_sink(function(v) end)
env:execute("lagging")
]])
    local r = h.run({ "--progress", j })
    assert.are.equal(0, r.code, r.stderr)
    local lags = {}
    for clock, lag in r.stderr:gmatch(
        "\r\27%[Kcstream%-lua: lagging | [^\r]- | watermark %d%d%d%d%-%d%d%-%d%dT"
        .. "(%d%d:%d%d:%d%d%.%d%d%d)Z %(lag (%d+%.%d) s%)") do
      lags[#lags + 1] = tonumber(lag)
      -- stamped on whole seconds, less a millisecond
      assert.matches("%.999$", clock)
    end
    assert.is_true(#lags >= 1, "no lag shown:\n" .. r.stderr)
    for _, lag in ipairs(lags) do
      assert.is_true(lag >= 30 and lag < 40, "lag " .. lag)
    end
  end)

  it("stops with --quiet", function()
    local shown = on_pty("--quiet", job())
    assert.is_nil(shown:match("rec/s"), shown)
  end)
end)
