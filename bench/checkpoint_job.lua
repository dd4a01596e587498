-- Benchmark job for bench/checkpoint.sh: a keyed running sum per key in a
-- value state, no output. Input lines are "KEY,VALUE"; VALUE 2 marks the
-- second phase of the generated input (updates to 1% of the keys), and the
-- first such line each source subtask reads is reported on stderr so the
-- harness knows which checkpoints hold every key.
--   cstream-lua -p 2 bench/checkpoint_job.lua INPUT
-- Probe mode, to time a restore: one record LINE from a collection instead
-- of the file, and the key's new sum printed (so a restored run shows the
-- restored state); run it with --restore CHK --allow-non-restored-state
-- (the file source's position is not needed).
--   cstream-lua -p 2 bench/checkpoint_job.lua --probe LINE
local cstream = require("cstream")
local env = cstream.get_execution_environment()
local probe = arg[1] == "--probe"

local Parse = {
  map = function(self, line)
    local c = line:find(",", 1, true)
    local v = math.tointeger(tonumber(line:sub(c + 1)))
    if v == 2 and not self.phase2 then
      self.phase2 = true
      io.stderr:write("cstream-bench: phase 2 reached\n")
    end
    return { line:sub(1, c - 1), v }
  end,
}

local Sum = {
  open = function(self, ctx)
    self.state = ctx:get_state(cstream.value_state_descriptor("sum"))
  end,
  process_element = function(self, v, ctx, out)
    local s = self.state
    s:update((s:value() or 0) + v[2])
  end,
}
if probe then
  Sum.process_element = function(self, v, ctx, out)
    local s = self.state
    local n = (s:value() or 0) + v[2]
    s:update(n)
    out:collect({ v[1], n })
  end
end

local lines
if probe then
  lines = env:from_elements(arg[2]):uid("probe")
else
  lines = env:read_text_file(arg[1]):uid("source")
end
local sums = lines:map(Parse):uid("parse"):key_by(1):process(Sum):uid("sum")
if probe then
  sums:print()
else
  sums:add_sink(function() end):uid("sink")
end
env:execute("BenchCheckpoint")
