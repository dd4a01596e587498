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

  it("stops with --quiet", function()
    local shown = on_pty("--quiet", job())
    assert.is_nil(shown:match("rec/s"), shown)
  end)
end)
