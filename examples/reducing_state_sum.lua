-- ReducingState: a running sum of the values of each key.
-- Prints (1,3) (1,8) (1,15) (2,4) (2,6) (2,11).
local cstream = require("cstream")

-- the operators live in examples/operators/, where specs require them too
local dir = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = dir .. "/?.lua;" .. package.path
local SumFunction = require("operators.sum_function")

local env = cstream.get_execution_environment()
env:from_elements({ 1, 3 }, { 1, 5 }, { 1, 7 }, { 2, 4 }, { 2, 2 }, { 2, 5 })
  :key_by(1)
  :flat_map(SumFunction)
  :print()

env:execute("TestStatefulApi")
