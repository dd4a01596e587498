-- Benchmark job for bench_latency (bench/latency.c): lines "key,time" from
-- a loopback socket, keyed by key, a value-state count per key updated for
-- every record, and the record's time printed back on stdout.
--   cstream-lua bench/latency_job.lua HOST PORT
local cstream = require("cstream")

local function parse(line)
  local c = line:find(",", 1, true)
  return { line:sub(1, c - 1), line:sub(c + 1) }
end

local Count = {
  open = function(self, ctx)
    self.count = ctx:get_state(cstream.value_state_descriptor("count"))
  end,
  process_element = function(self, v, ctx, out)
    self.count:update((self.count:value() or 0) + 1)
    out:collect(v[2])
  end,
}

local env = cstream.get_execution_environment()
env:socket_text_stream(arg[1], math.tointeger(tonumber(arg[2])))
  :map(parse)
  :key_by(1)
  :process(Count)
  :print()
env:execute("BenchLatency")
