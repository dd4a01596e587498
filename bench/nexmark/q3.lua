-- Nexmark q3 (local item suggestion) as an engine job: the name, city and
-- state of every seller in Oregon, Idaho or California with the id of each
-- of their category 10 auctions, as comma-separated lines (ref.lua's q3
-- rows).
--
--   cstream-lua [-p N] bench/nexmark/q3.lua EVENTS_FILE [OUTPUT]
-- Without OUTPUT the rows are printed; with it they are written there (a
-- directory of files 1..N when parallel).
--
-- The SQL's regular inner join, done as Flink's DataStream API does one:
-- the people and the auctions as two streams keyed by the person's id and
-- the auction's seller, connected, each side kept in keyed state and joined
-- to what the other side holds when a record comes. Whichever of a person
-- and an auction comes first, the pair is emitted once, when the second
-- arrives. The join has no time in it, so the job assigns no timestamps.
local cstream = require("cstream")
local dir = arg[0]:match("^(.*)/nexmark/[^/]*$") or ".."
package.path = dir .. "/?.lua;" .. package.path
local parse = require("nexmark.tsv").parse

local WANTED = { OR = true, ID = true, CA = true }

-- Keyed by the seller: the people of that id ({id, name, city, state})
-- and the ids of their auctions seen so far.
local JoinSellers = {
  open = function(self, ctx)
    self.people = ctx:get_list_state(cstream.list_state_descriptor("people"))
    self.auctions = ctx:get_list_state(cstream.list_state_descriptor("auctions"))
  end,
  flat_map1 = function(self, p, out) -- a person
    self.people:add(p)
    for _, id in ipairs(self.auctions:get()) do
      out:collect(p[2] .. "," .. p[3] .. "," .. p[4] .. "," .. id)
    end
  end,
  flat_map2 = function(self, a, out) -- an auction {id, seller}
    self.auctions:add(a[1])
    for _, p in ipairs(self.people:get()) do
      out:collect(p[2] .. "," .. p[3] .. "," .. p[4] .. "," .. a[1])
    end
  end,
}

local env = cstream.get_execution_environment()
-- Bids are nine lines in ten; only people and auctions are parsed.
local events = env:read_text_file(arg[1])
  :flat_map(function(line, out)
    if line:byte(1) ~= 98 then out:collect(parse(line)) end
  end)
  :name("parse")
local people = events
  :flat_map(function(ev, out)
    local p = ev.person
    if p and WANTED[p.state] then out:collect({ p.id, p.name, p.city, p.state }) end
  end)
  :name("people in OR, ID, CA")
local auctions = events
  :flat_map(function(ev, out)
    local a = ev.auction
    if a and a.category == 10 then out:collect({ a.id, a.seller }) end
  end)
  :name("auctions of category 10")
local rows = people:key_by(1):connect(auctions:key_by(2))
  :flat_map(JoinSellers)
  :name("q3")
if arg[2] then rows:write_as_text(arg[2]) else rows:print() end
env:execute("NexmarkQ3")
