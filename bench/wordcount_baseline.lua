-- The plain Lua 5.4 baseline for the word count: one thread, the same
-- splitting, the running count in a Lua table, each (word,count) rendered
-- and written as the engine's sink does.
--   lua5.4 bench/wordcount_baseline.lua INPUT OUTPUT|null
local input, output = arg[1], arg[2]
local counts = {}
local sink = output ~= "null" and assert(io.open(output, "w")) or nil
local fmt = string.format
for line in io.lines(input) do
  for word in line:gmatch("[^,]+") do
    local c = (counts[word] or 0) + 1
    counts[word] = c
    if sink then sink:write(fmt("(%s,%d)\n", word, c)) end
  end
end
if sink then sink:close() end
