-- What the windowed Nexmark jobs over bids share: the bids of an events
-- file as {bid[field], dateTime} records with event time and the
-- watermark 4 s behind, and a count as an incremental aggregate.
local cstream = require("cstream")
local parse = require("nexmark.tsv").parse

local M = {}

-- A stream of {bid[field], dateTime} for every bid of the events file.
function M.timed(env, path, field)
  return env:read_text_file(path)
    :flat_map(function(line, out)
      if line:byte(1) == 98 then -- a bid
        local b = parse(line).bid
        out:collect({ b[field], b.date_time })
      end
    end)
    :name("parse bids")
    :assign_timestamps_and_watermarks(cstream.watermark_strategy.for_bounded_out_of_orderness(
      4000, function(b) return b[2] end))
end

-- Counts records (merged when session windows merge).
M.COUNT = {
  create_accumulator = function() return 0 end,
  add = function(_, n) return n + 1 end,
  get_result = function(n) return n end,
  merge = function(a, b) return a + b end,
}

return M
