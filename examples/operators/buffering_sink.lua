-- The sink of operator_state_sink.lua: buffers elements and prints them
-- `threshold` at a time. The buffer is copied into operator list state at
-- every checkpoint (snapshot_state) and read back after a restore
-- (initialize_state), so no buffered element is lost when the job fails.
local cstream = require("cstream")

return function(threshold)
  return {
    threshold = threshold,
    buffer = {},

    invoke = function(self, value)
      self.buffer[#self.buffer + 1] = value
      if #self.buffer == self.threshold then
        local shown = {}
        for i, e in ipairs(self.buffer) do shown[i] = cstream.format(e) end
        print("自定义格式：[" .. table.concat(shown, ", ") .. "]")
        self.buffer = {}
      end
    end,

    snapshot_state = function(self, ctx)
      self.checkpoint_state:update(self.buffer)
    end,

    initialize_state = function(self, ctx)
      self.checkpoint_state = ctx:get_operator_state_store()
        :get_list_state(cstream.list_state_descriptor("buffered-elements"))
      if ctx:is_restored() then
        for _, e in ipairs(self.checkpoint_state:get()) do
          self.buffer[#self.buffer + 1] = e
        end
      end
    end,
  }
end
