-- RocksDB with state larger than memory (bench/rocksdb_large.sh): writes
-- N keys with a value of VLEN pseudo-random bytes each (slices of a random
-- pool, so that they do not compress) into value state; once every value is
-- written, reports the process's peak resident memory (VmHWM) on stderr.
--   cstream-lua --state-backend rocksdb ... rocksdb_large_job.lua N [VLEN]
local cstream = require("cstream")
local env = cstream.get_execution_environment()
local n, vlen = tonumber(arg[1]), tonumber(arg[2] or 1024)
env:add_source({
  run = function(self, ctx)
    for i = 1, n do ctx:collect(i) end
  end,
}):uid("gen")
  :key_by(function(i) return i end)
  :process({
    open = function(self, ctx)
      self.v = ctx:get_state(cstream.value_state_descriptor("v"))
      -- a pool of pseudo-random bytes: values that do not compress
      local t, x = {}, 12345
      for i = 1, 65536 + vlen do
        x = (x * 1103515245 + 12345) % 2147483648
        t[i] = string.char(x >> 16 & 255)
      end
      self.pool = table.concat(t)
      self.n = 0
    end,
    process_element = function(self, i, ctx, out)
      local o = (i * 7919) % 65536 + 1
      self.v:update(self.pool:sub(o, o + vlen - 1))
      self.n = self.n + 1
    end,
    close = function(self)
      local f = io.open("/proc/self/status")
      local hwm = f:read("a"):match("VmHWM:%s*(%d+) kB")
      f:close()
      io.stderr:write(string.format("wrote %d values; VmHWM %s kB\n", self.n, hwm))
    end,
  }):uid("store")
  :add_sink({ invoke = function() end })
env:execute("large")
