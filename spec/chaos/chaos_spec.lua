-- Chaos, short mode (scripts/chaos.lua is the long one): a keyed sum over
-- a file source SIGKILLed at random moments many times in a row, each run
-- restored with --restore latest at a random parallelism in 1..4 and a
-- random checkpoint interval in 50..200 ms, on the filesystem backend and
-- on RocksDB incremental; then the same with the checkpoint disk (a small
-- tmpfs, root only) filling up at random moments. After every kill the
-- newest checkpoint is checked against the input, key by key, and after
-- the last run the final sums are exact. The seed is printed; CHAOS_SEED
-- runs a sequence again (lua5.4 scripts/chaos.lua --seed S runs it long).
local h = require("helpers")
local chaos = dofile(h.src("scripts/chaos.lua"))

-- Fewer kills under the sanitizers (every run is 3-5x slower there).
local SANITIZED = h.sanitized()
local KILLS = SANITIZED and 5 or 20
local FULL_KILLS = SANITIZED and 3 or 6
local RECORDS = 500000
local SEED = tonumber(os.getenv("CHAOS_SEED")) or os.time()

local function run(backend, kills, disk_full, seed)
  local res = chaos.run({ backend = backend, kills = kills, records = RECORDS, seed = seed,
                          disk_full = disk_full, log = function() end })
  print(string.format("chaos (seed %d): %s%s: %d kills survived in %d runs, %d checkpoints " ..
                      "checked, totals exact, %.1f s", seed, backend, disk_full and ", full disk" or "",
                      res.kills, res.runs, res.checked, res.seconds))
  assert.are.equal(kills, res.kills)
  return res
end

describe("chaos", function()
  after_each(h.cleanup)

  for i, backend in ipairs({ "filesystem", "rocksdb" }) do
    it(backend .. ": " .. KILLS .. " SIGKILLs in a row at random moments, restored at random " ..
       "parallelism; every checkpoint consistent, final sums exact", function()
      run(backend, KILLS, false, SEED + i)
    end)
  end

  for i, backend in ipairs({ "filesystem", "rocksdb" }) do
    it(backend .. ": SIGKILLs with the checkpoint disk filling up at random moments: no complete " ..
       "checkpoint damaged, failures tolerated, restarted or reported, final sums exact", function()
      if not chaos.can_mount() then
        pending("mounting a tmpfs needs root: the full-disk chaos is skipped")
        return
      end
      local res = run(backend, FULL_KILLS, true, SEED + 10 + i)
      assert(res.runs > FULL_KILLS)
    end)
  end
end)
