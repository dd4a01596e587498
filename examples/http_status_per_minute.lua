-- Event-time tumbling windows: how many requests got each HTTP status code
-- in every minute of a JSON access log.
--
--   cstream-lua examples/http_status_per_minute.lua [access_log.jsonl]
--
-- Each line is a JSON object with the request's time in epoch milliseconds
-- ("ts") and its "status". Lines are written up to 5 s out of order, so
-- the watermark trails the largest timestamp seen by 5 s; a minute's
-- counts are printed once the watermark passes its end (and at the end of
-- the file for the last ones). A line that is not valid JSON is skipped.
local cstream = require("cstream")
local cjson = require("cjson")

local dir = arg[0]:match("^(.*)/[^/]*$") or "."
local input = arg[1] or (dir .. "/data/access_log.jsonl")

local env = cstream.get_execution_environment()

-- Counting needs only a number per window and status, not the requests.
local count = {
  create_accumulator = function() return 0 end,
  add = function(_, n) return n + 1 end,
  get_result = function(n) return n end,
  merge = function(a, b) return a + b end,
}

env:read_text_file(input)
  :flat_map(function(line, out)
    local ok, req = pcall(cjson.decode, line)
    if ok and type(req) == "table" and req.ts and req.status then
      -- cjson decodes every number as a float
      out:collect({ ts = math.tointeger(req.ts), status = math.tointeger(req.status) })
    end
  end)
  :assign_timestamps_and_watermarks(cstream.watermark_strategy.for_bounded_out_of_orderness(
    5000, function(req) return req.ts end))
  :key_by("status")
  :window(cstream.tumbling_event_time_windows(60 * 1000))
  :aggregate(count, function(status, ctx, counts, out)
    -- the window's start, as the minute it covers (UTC)
    local minute = os.date("!%Y-%m-%d %H:%M", ctx:window().start // 1000)
    out:collect({ minute, status, counts[1] })
  end)
  :print()

env:execute("HTTP status codes per minute")
