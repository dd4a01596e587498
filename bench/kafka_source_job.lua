-- bench/kafka.sh: kafka_source alone, bounded, records dropped after the
-- source (a filter that keeps nothing, then print).
local cstream = require("cstream")
local env = cstream.get_execution_environment()
env:kafka_source{ bootstrap_servers = arg[1], topic = arg[2], bounded = true }
  :filter(function() return false end)
  :print()
env:execute("bench_kafka_source")
