-- Nexmark q2 (selection) as an engine job: the auction and price of the
-- bids on auctions whose id is a multiple of 123, as comma-separated lines
-- (ref.lua's q2 rows).
--
--   cstream-lua [-p N] bench/nexmark/q2.lua EVENTS_FILE [OUTPUT]
-- Without OUTPUT the rows are printed; with it they are written there (a
-- directory of files 1..N when parallel).
local cstream = require("cstream")
local dir = arg[0]:match("^(.*)/nexmark/[^/]*$") or ".."
package.path = dir .. "/?.lua;" .. package.path
local parse = require("nexmark.tsv").parse

local env = cstream.get_execution_environment()
local rows = env:read_text_file(arg[1])
  :filter(function(line) return line:byte(1) == 98 end) -- bids
  :map(function(line) return parse(line).bid end)
  :filter(function(b) return b.auction % 123 == 0 end)
  :map(function(b) return b.auction .. "," .. b.price end)
  :name("q2")
if arg[2] then rows:write_as_text(arg[2]) else rows:print() end
env:execute("NexmarkQ2")
