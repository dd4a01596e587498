-- Word count from Kafka to Kafka: reads lines from the topic "lines",
-- counts words as keyed state, and writes "word,count" to the topic
-- "word_counts" keyed by word, exactly once (a Kafka transaction per
-- checkpoint, committed when the checkpoint completes).
--
--   cstream-lua -p 2 --checkpoint-dir /tmp/ckpt --state-backend filesystem \
--     examples/kafka_wordcount.lua localhost:9092
--
-- A third argument "bounded" stops at the end the topic had at the start.
local cstream = require("cstream")
local env = cstream.get_execution_environment()
local brokers = arg[1] or "localhost:9092"
env:enable_checkpointing(1000)

env:kafka_source{
    bootstrap_servers = brokers,
    topic = "lines",
    group_id = "wordcount",          -- committed offsets, for monitoring
    starting_offsets = "earliest",
    bounded = arg[2] == "bounded",
  }
  :flat_map(function(record, out)
    for word in record.value:lower():gmatch("%a+") do out:collect({ word, 1 }) end
  end)
  :key_by(1)
  :sum(2)                            -- running count per word, keyed state
  :kafka_sink{
    bootstrap_servers = brokers,
    topic = "word_counts",
    key = function(count) return count[1] end,
    value = function(count) return count[1] .. "," .. count[2] end,
    delivery = "exactly_once",
    transactional_id_prefix = "wordcount",
  }

env:execute("KafkaWordCount")
