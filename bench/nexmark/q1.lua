-- Nexmark q1 (currency conversion) as an engine job: every bid with its
-- price turned into euros (0.908 * price, a float printed as Flink prints a
-- double), as comma-separated lines (ref.lua's q1 rows).
--
--   cstream-lua [-p N] bench/nexmark/q1.lua EVENTS_FILE [OUTPUT]
-- Without OUTPUT the rows are printed; with it they are written there (a
-- directory of files 1..N when parallel).
local cstream = require("cstream")
local dir = arg[0]:match("^(.*)/nexmark/[^/]*$") or ".."
package.path = dir .. "/?.lua;" .. package.path
local parse = require("nexmark.tsv").parse
local format = cstream.format

local env = cstream.get_execution_environment()
local rows = env:read_text_file(arg[1])
  :flat_map(function(line, out)
    if line:byte(1) == 98 then -- a bid
      local b = parse(line).bid
      out:collect(b.auction .. "," .. b.bidder .. "," .. format(0.908 * b.price) .. ","
        .. b.date_time .. "," .. b.extra)
    end
  end)
  :name("q1")
if arg[2] then rows:write_as_text(arg[2]) else rows:print() end
env:execute("NexmarkQ1")
