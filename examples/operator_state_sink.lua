-- Operator ListState: a sink that buffers elements and prints them two at a
-- time. The buffer is copied into operator state at every checkpoint
-- (snapshot_state) and read back after a restore (initialize_state), so no
-- buffered element is lost when the job fails.
-- Prints 自定义格式：[(Spark,3), (Hadoop,5)] and 自定义格式：[(Hadoop,7), (Spark,4)].
local cstream = require("cstream")

-- the operators live in examples/operators/, where specs require them too
local dir = arg[0]:match("^(.*)/[^/]*$") or "."
package.path = dir .. "/?.lua;" .. package.path
local CustomSink = require("operators.buffering_sink")

local env = cstream.get_execution_environment()
env:from_elements({ "Spark", 3 }, { "Hadoop", 5 }, { "Hadoop", 7 }, { "Spark", 4 })
  :add_sink(CustomSink(2)):set_parallelism(1)

env:execute("TestStatefulApi")
