-- The baseline of bench/nexmark.sh: a plain Lua 5.4 loop that reads an
-- events file and parses every line with nexmark.tsv, and does nothing
-- else, so that the queries' figures can be read against what parsing
-- alone costs. Prints the number of events.
--
--   lua5.4 bench/nexmark/parse_baseline.lua EVENTS_FILE
local dir = (debug.getinfo(1, "S").source:match("^@(.*)/nexmark/[^/]*$")) or "bench"
package.path = dir .. "/?.lua;" .. package.path
local parse = require("nexmark.tsv").parse

local n = 0
for line in io.lines(arg[1]) do
  parse(line)
  n = n + 1
end
print(n)
