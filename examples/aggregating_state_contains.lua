-- AggregatingState: concatenate the values seen for each key into a string.
-- Prints (1,Contains：3) (1,Contains：3 and 5) (1,Contains：3 and 5 and 7)
-- and the same for key 2.
local cstream = require("cstream")

-- the operators live in examples/operators/, where specs require them too
local dir = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = dir .. "/?.lua;" .. package.path
local ContainsValueFunction = require("operators.contains_value")

local env = cstream.get_execution_environment()
env:from_elements({ 1, 3 }, { 1, 5 }, { 1, 7 }, { 2, 4 }, { 2, 2 }, { 2, 5 })
  :key_by(1)
  :flat_map(ContainsValueFunction)
  :print()

env:execute("TestStatefulApi")
