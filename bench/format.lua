-- What the plain Lua baselines share: rendering a float as the engine's
-- text sinks do (Java's Double.toString: the shortest digits that read back
-- as the same double, always with a fraction, "5.0"), for the plain range
-- the benchmarks produce (1e-3 <= |d| < 1e7).
local M = {}
local format, tonumber = string.format, tonumber

function M.double(d)
  local s = format("%.15g", d)
  if tonumber(s) ~= d then
    s = format("%.16g", d)
    if tonumber(s) ~= d then s = format("%.17g", d) end
  end
  if not s:find(".", 1, true) then s = s .. ".0" end
  return s
end

return M
