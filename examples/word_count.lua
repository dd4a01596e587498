-- Word count over a socket, as in the tutorial's first example: every line
-- read from localhost:8888 is split on commas and the running count of each
-- word is printed. The counts accumulate because sum() keeps managed keyed
-- state per word.
--
-- Try it:  nc -lk 8888          (in one terminal; type "a,b,a")
--          cstream-lua examples/word_count.lua [host] [port]
local cstream = require("cstream")

local host = arg[1] or "localhost"
local port = math.tointeger(tonumber(arg[2] or "8888"))

local env = cstream.get_execution_environment()

env:socket_text_stream(host, port)
  :flat_map(function(line, out)
    for word in line:gmatch("[^,]+") do
      out:collect({ word, 1 })
    end
  end)
  :key_by(1)
  :sum(2)
  :print()

env:execute("WordCount")
