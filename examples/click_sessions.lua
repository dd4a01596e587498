-- Event-time session windows: a user's clicks belong to one session until
-- the user is idle for 10 minutes; print each session's start, end, number
-- of clicks and the pages in the order they were visited.
--
--   cstream-lua examples/click_sessions.lua [clicks.csv]
--
-- Each line is "user,epoch milliseconds,page", up to 5 s out of order. A
-- click opens a window [ts, ts + 10 min); windows of one user that overlap
-- merge into one session, which ends 10 minutes after its last click and
-- is printed when the watermark passes that end.
local cstream = require("cstream")

local dir = arg[0]:match("^(.*)/[^/]*$") or "."
local input = arg[1] or (dir .. "/data/clicks.csv")

local env = cstream.get_execution_environment()

local function clock(ms) return os.date("!%H:%M:%S", ms // 1000) end

env:read_text_file(input)
  :map(function(line)
    local user, ts, page = line:match("^([^,]+),(%d+),(.+)$")
    return { user = user, ts = math.tointeger(tonumber(ts)), page = page }
  end)
  :assign_timestamps_and_watermarks(cstream.watermark_strategy.for_bounded_out_of_orderness(
    5000, function(click) return click.ts end))
  :key_by("user")
  :window(cstream.event_time_session_windows(10 * 60 * 1000))
  :process(function(user, ctx, clicks, out)
    -- a window's elements come in arrival order; sort them by time
    table.sort(clicks, function(a, b) return a.ts < b.ts end)
    local pages = {}
    for i, c in ipairs(clicks) do pages[i] = c.page end
    local w = ctx:window()
    out:collect({ user, clock(w.start), clock(w.finish), #clicks, table.concat(pages, ">") })
  end)
  :print()

env:execute("Click sessions")
