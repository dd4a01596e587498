-- cstream/time.lua - event time in the API: watermark strategies,
-- assign_timestamps_and_watermarks, output tags and side outputs.
-- Installed into the cstream module by cstream.lua; its names are the
-- public API (DESIGN section 10):
--
--   local strategy = cstream.watermark_strategy
--     .for_bounded_out_of_orderness(5000, function(v) return v.ts end)
--     :with_idleness(60000)
--   s:assign_timestamps_and_watermarks(strategy)
--   local late = cstream.output_tag("late")   -- ctx:output(late, v)
--   s:get_side_output(late)                   -- a DataStream

local M = {}

local WatermarkStrategy = {}
WatermarkStrategy.__index = WatermarkStrategy

local OutputTag = {}
OutputTag.__index = OutputTag
OutputTag.__tostring = function(t) return "OutputTag(" .. t.name .. ")" end

function M.install(cstream)
  local I = cstream._internal
  local DataStream = cstream.DataStream

  local function check_extractor(what, fn, level)
    if fn ~= nil and type(fn) ~= "function" then
      I.kind_error(what, "a timestamp extractor function(v, previous_ts)", fn, level + 1)
    end
    return fn
  end

  local function check_ms(what, ms, min, level)
    if math.type(ms) ~= "integer" or ms < min then
      error(string.format("%s: expected %s number of milliseconds, got %s", what,
                          min > 0 and "a positive" or "a non-negative", tostring(ms)),
            level + 1)
    end
    return ms
  end

  local function strategy(t) return setmetatable(t, WatermarkStrategy) end

  cstream.watermark_strategy = {
    -- watermark = largest timestamp seen - bound - 1 ms
    for_bounded_out_of_orderness = function(ms, extractor)
      check_ms("for_bounded_out_of_orderness", ms, 0, 2)
      return strategy({ watermarks = "bounded", bound = ms,
                        extractor = check_extractor("for_bounded_out_of_orderness",
                                                    extractor, 2) })
    end,
    -- timestamps never go down: watermark = largest timestamp seen - 1 ms
    for_monotonous_timestamps = function(extractor)
      return strategy({ watermarks = "bounded", bound = 0,
                        extractor = check_extractor("for_monotonous_timestamps",
                                                    extractor, 2) })
    end,
    -- timestamps only, no watermarks (event time advances at the end)
    no_watermarks = function(extractor)
      return strategy({ watermarks = "none", bound = 0,
                        extractor = check_extractor("no_watermarks", extractor, 2) })
    end,
  }

  -- A copy of the strategy that gives timestamps with extractor.
  function WatermarkStrategy:with_timestamp_assigner(extractor)
    check_extractor("with_timestamp_assigner", extractor, 2)
    if extractor == nil then I.kind_error("with_timestamp_assigner", "a function", nil, 2) end
    local t = {}
    for k, v in pairs(self) do t[k] = v end
    t.extractor = extractor
    return strategy(t)
  end

  -- A copy of the strategy whose generator declares itself idle after ms
  -- without records, so downstream operators do not wait for it.
  function WatermarkStrategy:with_idleness(ms)
    check_ms("with_idleness", ms, 1, 2)
    local t = {}
    for k, v in pairs(self) do t[k] = v end
    t.idleness = ms
    return strategy(t)
  end

  function I.is_watermark_strategy(s) return getmetatable(s) == WatermarkStrategy end

  function DataStream:assign_timestamps_and_watermarks(s)
    if getmetatable(s) ~= WatermarkStrategy then
      I.kind_error("assign_timestamps_and_watermarks",
                   "a strategy from cstream.watermark_strategy", s, 2)
    end
    -- Without an extractor the record keeps the timestamp it came with.
    local extractor = s.extractor or function(_, ts) return ts end
    return I.one_input(self, "timestamps", "Timestamps/Watermarks", extractor,
                       { watermarks = s.watermarks, bound = s.bound,
                         idleness = s.idleness })
  end

  function cstream.output_tag(name)
    if type(name) ~= "string" or name == "" then
      I.kind_error("output_tag", "a tag name (non-empty string)", name, 2)
    end
    return setmetatable({ name = name }, OutputTag)
  end

  -- The stream of what this operator sent to tag (ctx:output(tag, v),
  -- out:collect_to(tag, v), or a window's late data).
  function DataStream:get_side_output(tag)
    if getmetatable(tag) ~= OutputTag then
      I.kind_error("get_side_output", "a tag from cstream.output_tag(name)", tag, 2)
    end
    if self.partition ~= nil then
      error("get_side_output: call it on the operator's stream, before key_by,"
            .. " rebalance or broadcast", 2)
    end
    return setmetatable({ env = self.env, node = self.node, side = tag.name },
                        DataStream)
  end
end

return M
