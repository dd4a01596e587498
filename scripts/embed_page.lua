-- Writes host/rest/cs_rest_page.c from host/rest/page.html: the page the
-- REST endpoint serves, as one C string. Run from the project root:
--   lua5.4 scripts/embed_page.lua
local src = assert(io.open("host/rest/page.html", "rb")):read("a")
local out = {
  "/*\n * cs_rest_page.c - the page the endpoint serves at /: one self-contained\n",
  " * HTML file (no external resource) whose script polls /jobs/overview and\n",
  " * /checkpoints every second. Generated from page.html by\n",
  " * scripts/embed_page.lua; edit page.html and run it again.\n */\n",
  "#include \"host/rest/cs_rest_int.h\"\n\nconst char cs__rest_page[] =\n",
}
for line in src:gmatch("[^\n]*\n?") do
  if line ~= "" then
    local e = line:gsub("\\", "\\\\"):gsub("\"", "\\\""):gsub("\n", "\\n")
    out[#out + 1] = "    \"" .. e .. "\"\n"
  end
end
out[#out + 1] = "    ;\n"
local f = assert(io.open("host/rest/cs_rest_page.c", "wb"))
f:write(table.concat(out))
f:close()
