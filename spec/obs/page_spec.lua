-- The web page at / in headless Chromium (Debian's chromium): it loads,
-- shows the running job's operators with their names, ids and
-- parallelism, and its figures change from one load to the next.
local h = require("helpers")
local o = require("obs_helpers")

local function chromium_dom(port)
  local profile = h.tmpdir()
  -- --virtual-time-budget lets the page's fetches finish before the DOM
  -- is dumped; --no-sandbox because CI runs as root.
  local r = h.run({}, { timeout = 90, cmd = { "chromium", "--headless", "--no-sandbox",
    "--disable-gpu", "--no-first-run", "--user-data-dir=" .. profile,
    "--virtual-time-budget=3000", "--dump-dom", "http://127.0.0.1:" .. port .. "/" } })
  assert.are.equal(0, r.code, r.stderr)
  return r.stdout
end

-- The text of the element of class cls inside the operator box with id.
local function field(dom, id, cls)
  local box = dom:match('<div class="op" data%-id="' .. id .. '".-<div class="bar busy"')
  assert(box, "no box for operator " .. id .. " in:\n" .. dom)
  return box:match('class="' .. cls:gsub("%-", "%%-") .. '">([^<]*)<')
end

describe("the web page", function()
  after_each(h.cleanup)

  it("shows the running job's graph and live figures in Chromium", function()
    assert.is_true(os.execute("command -v chromium > /dev/null") == true,
      "chromium is missing: scripts/deps.sh installs it")
    local release = h.tmpdir() .. "/release"
    -- a source whose rate keeps growing, for ever until released
    local p, port = o.start(o.job(100000000, release, { step = 5, ramp = 5 }))
    local code, html = o.get(port, "/")
    assert.are.equal(200, code)
    assert.matches("<!DOCTYPE html>", html)
    assert.is_nil(html:match('src="http'), "the page loads nothing from elsewhere")
    local first = chromium_dom(port)
    assert.matches('data%-loaded="1"', first)
    assert.matches('<span id="job">watched</span>', first)
    for _, id in ipairs({ "numbers", "evens", "sums", "nowhere" }) do
      assert.matches('class="name">' .. id .. '<', first)
      assert.matches("id " .. id .. " \xc2\xb7 [%w_]+ \xc2\xb7 parallelism %d", first)
    end
    assert.matches("parallelism 2", field(first, "sums", "meta") or first)
    assert.matches("hash", first) -- the key_by edge is labelled
    local second = chromium_dom(port)
    local n1 = tonumber(field(first, "numbers", "records-out"))
    local n2 = tonumber(field(second, "numbers", "records-out"))
    assert.is_true(n2 > n1, n1 .. " then " .. n2)
    local r1, r2 = field(first, "numbers", "out-rate"), field(second, "numbers", "out-rate")
    assert.are_not.equal(r1, r2)
    assert.are_not.equal("-", r2)
    assert.matches("COMPLETED", second) -- the checkpoint history
    h.write_file(release, "")
    h.kill(p)
  end)
end)
