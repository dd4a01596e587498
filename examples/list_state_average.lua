-- ListState: keep every element of a key; after three, print their average
-- and clear. Prints (1,5.0) and (2,3.6666666666666665).
local cstream = require("cstream")

-- the operators live in examples/operators/, where specs require them too
local dir = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = dir .. "/?.lua;" .. package.path
local CountWindowAverageWithListState = require("operators.list_average")

local env = cstream.get_execution_environment()
env:from_elements({ 1, 3 }, { 1, 5 }, { 1, 7 }, { 2, 4 }, { 2, 2 }, { 2, 5 })
  :key_by(1)
  :flat_map(CountWindowAverageWithListState)
  :print()

env:execute("TestStatefulApi")
