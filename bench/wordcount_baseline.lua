-- The plain Lua 5.4 baseline for the word count: one thread, the same
-- splitting, the running count in a Lua table. OUTPUT (bench/all.sh's three
-- yardsticks): "null" only counts (the work alone); "sink" hands each
-- running { word, count } to a Lua sink function (the job's semantics);
-- a path renders each (word,count) and writes it as the engine's sink does.
--   lua5.4 bench/wordcount_baseline.lua INPUT OUTPUT|null|sink
local input, output = arg[1], arg[2]
local counts = {}
if output == "null" then
  for line in io.lines(input) do
    for word in line:gmatch("[^,]+") do counts[word] = (counts[word] or 0) + 1 end
  end
elseif output == "sink" then
  local sink = function(_) end
  for line in io.lines(input) do
    for word in line:gmatch("[^,]+") do
      local c = (counts[word] or 0) + 1
      counts[word] = c
      sink({ word, c })
    end
  end
else
  local out = assert(io.open(output, "w"))
  local fmt = string.format
  for line in io.lines(input) do
    for word in line:gmatch("[^,]+") do
      local c = (counts[word] or 0) + 1
      counts[word] = c
      out:write(fmt("(%s,%d)\n", word, c))
    end
  end
  out:close()
end
