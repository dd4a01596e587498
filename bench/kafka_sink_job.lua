-- bench/kafka.sh: kafka_sink alone: the lines of a file written to a topic,
-- at least once, or exactly once with a checkpoint every second.
local cstream = require("cstream")
local env = cstream.get_execution_environment()
if arg[4] == "exactly_once" then env:enable_checkpointing(1000) end
env:read_text_file(arg[3])
  :kafka_sink{ bootstrap_servers = arg[1], topic = arg[2], delivery = arg[4],
               transactional_id_prefix = "bench" }
env:execute("bench_kafka_sink")
