-- Word count over a text file: the socket example with a bounded source.
-- Each line is split on commas and spaces; the running count of each word is
-- printed as (word,count). With parallelism above 1 the lines are prefixed
-- with the printing subtask ("2> (flink,3)"), as Flink does.
--
--   cstream-lua examples/file_word_count.lua [input] [-p N before the script]
local cstream = require("cstream")

local dir = arg[0]:match("^(.*)/[^/]*$") or "."
local input = arg[1] or (dir .. "/data/words.txt")

local env = cstream.get_execution_environment()

env:read_text_file(input)
  :flat_map(function(line, out)
    for word in line:gmatch("[^,%s]+") do
      out:collect({ word, 1 })
    end
  end)
  :key_by(1)
  :sum(2)
  :print()

env:execute("FileWordCount")
