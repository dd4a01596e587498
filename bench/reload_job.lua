-- Job of bench/reload.sh: a keyed count over lines read from a socket
-- (value state per key), so that its state holds one entry per distinct
-- line. Output costs little: it prints the count of one key (arg[3], the
-- last key of the load, so its first count tells that the load is done) and
-- of every 200th record of a subtask. The benchmark rewrites the "V0" tag
-- below for every reload, which changes the process function's code.
--
--   cstream-lua --watch -p 2 reload_job.lua HOST PORT LAST_KEY
local cstream = require("cstream")

local host, port = arg[1], math.tointeger(tonumber(arg[2]))
local last = arg[3]

local env = cstream.get_execution_environment()
env:socket_text_stream(host, port)
  :key_by(function(line) return line end)
  :process({
    open = function(self, ctx)
      self.count = ctx:get_state(cstream.value_state_descriptor("count"))
    end,
    process_element = function(self, key, ctx, out)
      local n = (self.count:value() or 0) + 1
      self.count:update(n)
      self.seen = (self.seen or 0) + 1
      if key == last or self.seen % 200 == 0 then out:collect("V0 " .. key .. " " .. n) end
    end,
  }):uid("counter")
  :print()

env:execute("reload-bench")
