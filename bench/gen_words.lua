-- Deterministic word-file generator for the benchmarks.
--   lua5.4 bench/gen_words.lua OUT LINES [DISTINCT]
-- Writes LINES lines of 1..8 comma-separated words drawn from DISTINCT
-- distinct words (default 10000) with a skewed distribution, using a fixed
-- linear congruential generator so every run writes the same bytes.
local out, nlines, distinct = arg[1], tonumber(arg[2]), tonumber(arg[3] or "10000")
assert(out and nlines, "usage: gen_words.lua OUT LINES [DISTINCT]")

local seed = 42
local function rand(n)
  seed = (seed * 6364136223846793005 + 1442695040888963407) & 0x7fffffffffffffff
  return (seed >> 17) % n
end

local words = {}
for i = 1, distinct do words[i] = string.format("w%x", i * 2654435761 % 4294967291) end

local f = assert(io.open(out, "w"))
local buf = {}
for i = 1, nlines do
  local n = 1 + rand(8)
  local parts = {}
  for j = 1, n do
    -- skew: half of the draws come from the first 1% of the words
    local k = rand(2) == 0 and 1 + rand(math.max(1, distinct // 100)) or 1 + rand(distinct)
    parts[j] = words[k]
  end
  buf[#buf + 1] = table.concat(parts, ",")
  if #buf == 4096 then f:write(table.concat(buf, "\n"), "\n") buf = {} end
end
if #buf > 0 then f:write(table.concat(buf, "\n"), "\n") end
f:close()
