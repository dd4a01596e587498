-- The command line: help, version, flags, exit statuses, the arg table.
local h = require("helpers")

describe("cstream-lua command line", function()
  after_each(h.cleanup)

  it("prints help and exits 0", function()
    local r = h.run({ "--help" })
    assert.are.equal(0, r.code)
    assert.matches("usage: cstream%-lua %[options%] job.lua", r.stdout)
    assert.matches("%-%-parallelism", r.stdout)
  end)

  it("prints its version", function()
    local r = h.run({ "--version" })
    assert.are.equal(0, r.code)
    assert.matches("^cstream%-lua %d+%.%d+%.%d+", r.stdout)
  end)

  it("rejects an unknown flag with status 2", function()
    local r = h.run({ "--bogus", "job.lua" })
    assert.are.equal(2, r.code)
    assert.matches("unknown option '%-%-bogus'", r.stderr)
    assert.matches("Try 'cstream%-lua %-%-help'", r.stderr)
  end)

  it("rejects a bad parallelism with status 2", function()
    for _, v in ipairs({ "0", "x", "-3", "99999" }) do
      local r = h.run({ "-p", v, "job.lua" })
      assert.are.equal(2, r.code, v)
      assert.matches("%-p: invalid value '" .. v:gsub("%-", "%%-") .. "' for 'parallelism.default'", r.stderr)
    end
    local r = h.run({ "-p" })
    assert.are.equal(2, r.code)
  end)

  it("needs a job script", function()
    local r = h.run({})
    assert.are.equal(2, r.code)
    assert.matches("no job script given", r.stderr)
  end)

  it("names a missing job file", function()
    local r = h.run({ "/nonexistent/job.lua" })
    assert.are.equal(2, r.code)
    assert.matches("cannot open job script '/nonexistent/job.lua': No such file", r.stderr)
  end)

  it("passes the remaining arguments to the script as arg", function()
    local job = h.write_job([[
      local cstream = require("cstream")
      local env = cstream.get_execution_environment()
      env:from_elements(arg[1], arg[2], #arg):print()
      env:execute("args")
    ]])
    local r = h.run({ "-p", "1", job, "alpha", "-p" })
    assert.are.equal(0, r.code, r.stderr)
    assert.are.same({ "alpha", "-p", "2" }, h.lines(r.stdout))
  end)
end)
