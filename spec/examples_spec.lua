-- Every example prints what the tutorial says it prints, at -p 1 and -p 2.
local h = require("helpers")

-- Examples whose output order is fixed at -p 1 (one source, one key
-- partitioning, one printing subtask); the others are compared sorted.
local EXAMPLES = {
  { name = "value_state_average", ordered = true },
  { name = "list_state_average", ordered = true },
  { name = "map_state_average", ordered = true },
  { name = "reducing_state_sum", ordered = true },
  { name = "aggregating_state_contains", ordered = true },
  { name = "operator_state_sink", ordered = true },
  { name = "order_enrichment", ordered = false },
  { name = "fraud_detection", ordered = true },
  { name = "http_status_per_minute", ordered = false },
  { name = "click_sessions", ordered = false },
  { name = "dedup_ttl", ordered = true },
}

local function strip_prefix(line) return (line:gsub("^%d+> ", "")) end

describe("examples", function()
  after_each(h.cleanup)

  for _, ex in ipairs(EXAMPLES) do
    local script = h.src("examples/" .. ex.name .. ".lua")
    local expected = h.lines(h.read_file(h.src("examples/expected/" .. ex.name .. ".txt")))

    it(ex.name .. " prints the tutorial's output at -p 1", function()
      local r = h.run({ "-p", "1", script })
      assert.are.equal(0, r.code, r.stderr)
      local got = h.lines(r.stdout)
      if ex.ordered then
        assert.are.same(expected, got)
      else
        assert.are.same(h.sorted(expected), h.sorted(got))
      end
    end)

    it(ex.name .. " prints the same records at -p 2", function()
      local r = h.run({ "-p", "2", script })
      assert.are.equal(0, r.code, r.stderr)
      local got, per_key = {}, {}
      for _, line in ipairs(h.lines(r.stdout)) do
        local rec = strip_prefix(line)
        got[#got + 1] = rec
        local key = rec:match("^%((%d+),")
        if key then
          per_key[key] = per_key[key] or {}
          table.insert(per_key[key], rec)
        end
      end
      assert.are.same(h.sorted(expected), h.sorted(got))
      -- within one key the order is the tutorial's
      for key, recs in pairs(per_key) do
        local want = {}
        for _, e in ipairs(expected) do
          if e:match("^%(" .. key .. ",") then want[#want + 1] = e end
        end
        if ex.ordered then assert.are.same(want, recs) end
      end
    end)
  end
end)
