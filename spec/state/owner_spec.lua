-- One owner per job's checkpoint directory: a second process running the
-- same job on the same checkpoint directory would remove and overwrite the
-- first one's checkpoints, so it is refused with a message naming the
-- running process; `state dump` still reads the checkpoints meanwhile.
local h = require("helpers")

local JOB = [[
local cstream = require("cstream")
local env = cstream.get_execution_environment()
env:add_source({ run = function(self, ctx)
  local f
  repeat
    ctx:collect(1)
    cstream.sleep(20)
    f = io.open(arg[1])
  until f
  f:close()
end }):key_by(function(v) return v end):sum():print()
env:execute("owned")
]]

describe("a checkpoint directory", function()
  after_each(h.cleanup)

  it("has one owner: a second run of the job is refused, naming the first", function()
    local dir = h.tmpdir()
    local job = h.write_job(JOB)
    local stop = dir .. "/stop"
    local args = { h.bin(), "--state-backend", "filesystem", "--checkpoint-dir", dir .. "/ckpt",
                   "--checkpoint-interval", "50ms",
                   -- keep every checkpoint, so the one state dump reads stays
                   "-D", "state.checkpoints.num-retained=1000", job, stop }
    local first = h.spawn(args)
    local metadata = h.wait_for_checkpoint(dir .. "/ckpt/owned", 30)
    assert.is_truthy(metadata, "no checkpoint completed")
    local r = h.run({ table.unpack(args, 2) })
    assert.are.equal(1, r.code)
    assert.matches("job 'owned' is already running with checkpoint directory", r.stderr, 1, true)
    assert.matches("(process " .. first.pid .. " holds", r.stderr, 1, true)
    -- the refused run touched nothing: the first goes on checkpointing
    local dump = h.run({ "state", "dump", (metadata:gsub("/_metadata$", "")) })
    assert.are.equal(0, dump.code, dump.stderr)
    h.write_file(stop, "")
    assert.are.equal(0, h.wait(first, 30), h.read_file(first.stderr))
    -- once the owner is gone, the job runs again on the same directory
    local again = h.run({ table.unpack(args, 2) }, { timeout = 60 })
    assert.are.equal(0, again.code, again.stderr)
  end)

  it("of another job name is no conflict", function()
    local dir = h.tmpdir()
    local stop = dir .. "/stop"
    local first = h.spawn({ h.bin(), "--state-backend", "filesystem", "--checkpoint-dir",
                            dir .. "/ckpt", h.write_job(JOB), stop })
    h.wait_for(function() return h.read_file(first.stdout) ~= "" end, 20)
    local other = h.write_job((JOB:gsub('"owned"', '"other"')))
    local p = h.spawn({ h.bin(), "--state-backend", "filesystem", "--checkpoint-dir",
                        dir .. "/ckpt", other, stop })
    h.wait_for(function() return h.read_file(p.stdout) ~= "" end, 20)
    h.write_file(stop, "")
    assert.are.equal(0, h.wait(first, 30), h.read_file(first.stderr))
    assert.are.equal(0, h.wait(p, 30), h.read_file(p.stderr))
  end)
end)
