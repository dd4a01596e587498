-- The REST endpoint's /metrics and JSON against a job whose counts are
-- known: scraped live while the job waits, exact once every record went
-- through; an unknown path, a port in use, a half-open client.
local h = require("helpers")
local o = require("obs_helpers")

local N = 600 -- records from the source; the filter keeps N / 2

local function have(cmd)
  return os.execute("command -v " .. cmd .. " > /dev/null 2>&1") == true
end

describe("the REST endpoint", function()
  after_each(h.cleanup)

  it("counts every operator's records exactly, with the job's other metrics", function()
    local release = h.tmpdir() .. "/release"
    local p, port = o.start(o.job(N, release))
    -- Every record reached the sink while the source still waits.
    local fams = h.wait_for(function()
      local code, body = o.get(port, "/metrics")
      if code ~= 200 then return nil end
      local f = o.parse_prometheus(body)
      local sunk = o.value(f, "cstream_operator_records_in_total", { operator_id = "nowhere" })
      return sunk == N / 2 and f
    end, 60)
    assert.truthy(fams, "the sink never counted " .. N / 2 .. " records")
    local function v(name, id) return o.value(fams, name, { operator_id = id, job = "watched" }) end
    assert.are.equal(0, v("cstream_operator_records_in_total", "numbers"))
    assert.are.equal(N, v("cstream_operator_records_out_total", "numbers"))
    assert.are.equal(N, v("cstream_operator_records_in_total", "evens"))
    assert.are.equal(N / 2, v("cstream_operator_records_out_total", "evens"))
    assert.are.equal(N / 2, v("cstream_operator_records_in_total", "sums"))
    assert.are.equal(N / 2, v("cstream_operator_records_out_total", "sums"))
    assert.are.equal(0, v("cstream_operator_records_out_total", "nowhere"))
    -- one subtask line per subtask: the sum runs at parallelism 2
    assert.are.equal(2, #(function()
      local t = {}
      for _, s in ipairs(fams.cstream_operator_records_in_total.samples) do
        if s.labels.operator_id == "sums" then t[#t + 1] = s end
      end
      return t
    end)())
    -- keys k1, k2, k3, k4, k0 each have an even i: five keys of state
    assert.are.equal(5, o.value(fams, "cstream_operator_state_entries",
      { operator_id = "sums", backend = "heap" }))
    assert.is_true(v("cstream_operator_state_bytes", "sums") > 0)
    assert.are.equal("counter", fams.cstream_operator_records_in_total.type)
    assert.are.equal("gauge", fams.cstream_operator_busy_ratio.type)
    for _, name in ipairs({ "cstream_operator_busy_ratio", "cstream_operator_backpressured_ratio",
                            "cstream_operator_idle_ratio" }) do
      for _, s in ipairs(fams[name].samples) do
        assert.is_true(s.value >= 0 and s.value <= 1, name)
      end
    end
    assert.truthy(fams.cstream_channel_queue_fill_ratio.samples[1])
    assert.are.equal(0, o.value(fams, "cstream_job_restarts_total"))
    -- checkpoints every 100 ms complete while the job waits
    local ck = h.wait_for(function()
      local _, body = o.get(port, "/metrics")
      local f = o.parse_prometheus(body)
      return (o.value(f, "cstream_job_checkpoints_total", { result = "completed" }) or 0) >= 2 and f
    end, 30)
    assert.truthy(ck)
    assert.are.equal(0, o.value(ck, "cstream_job_checkpoints_total", { result = "failed" }))
    assert.is_true(o.value(ck, "cstream_job_last_checkpoint_duration_seconds") >= 0)
    assert.is_true(o.value(ck, "cstream_job_last_checkpoint_size_bytes") > 0)
    -- Prometheus' own checker accepts the text
    if have("promtool") then
      local _, body = o.get(port, "/metrics")
      local file = h.write_file(h.tmpdir() .. "/metrics.txt", body)
      local r = h.run({}, { cmd = { "promtool", "check", "metrics" }, stdin = file })
      assert.are.equal(0, r.code, r.stdout .. r.stderr)
    end
    h.write_file(release, "")
    assert.are.equal(0, h.wait(p, 60))
  end)

  it("reports records per second while records flow, and none after", function()
    -- 10 records each 20 ms (at most 500 a second) for 4000 records, then
    -- the source waits: the filter passes half of what it gets.
    local release = h.tmpdir() .. "/release"
    local p, port = o.start(o.job(4000, release, { step = 10 }))
    local function scrape()
      local code, body = o.get(port, "/metrics")
      return code == 200 and o.parse_prometheus(body)
    end
    local function rate(f, dir, id)
      return o.value(f, "cstream_operator_records_" .. dir .. "_per_second", { operator_id = id })
    end
    assert.are.equal("gauge", scrape().cstream_operator_records_in_per_second.type)
    local f = h.wait_for(function()
      local t = scrape()
      local n = t and o.value(t, "cstream_operator_records_out_total", { operator_id = "numbers" })
      -- a second into the flow, with records still to come
      return t and n > 500 and n < 3000 and rate(t, "out", "numbers") > 50 and t
    end, 60)
    assert.truthy(f, "no rate seen while records flowed")
    assert.are.equal(0, rate(f, "in", "numbers")) -- a source receives nothing
    assert.are.equal(0, rate(f, "out", "nowhere")) -- a sink emits nothing
    for _, r in ipairs({ rate(f, "out", "numbers"), rate(f, "in", "evens"), rate(f, "out", "evens"),
                         rate(f, "in", "sums"), rate(f, "in", "nowhere") }) do
      -- records a second, not a count nor per tick: never past the source's pace
      assert.is_true(r > 0 and r < 2 * 500, "rate " .. r)
    end
    -- the filter keeps half: its rate out is about half its rate in
    local share = rate(f, "out", "evens") / rate(f, "in", "evens")
    assert.is_true(share > 0.3 and share < 0.7, "share " .. share)
    -- once the source waits, every rate falls to nothing
    local still = h.wait_for(function()
      local t = scrape()
      return t and o.value(t, "cstream_operator_records_out_total", { operator_id = "numbers" }) == 4000
        and rate(t, "out", "numbers") < 1 and rate(t, "in", "nowhere") < 1 and t
    end, 60)
    assert.truthy(still, "the rates stayed up after the records stopped")
    h.write_file(release, "")
    assert.are.equal(0, h.wait(p, 60))
  end)

  it("reports each operator's watermark and the checkpoints' sync pause", function()
    -- Ten records stamped 1 s .. 10 s, 500 ms out of order allowed: the
    -- watermark is 10000 - 500 - 1. One more at 20 s once `more` exists.
    local dir = h.tmpdir()
    local more, release = dir .. "/more", dir .. "/release"
    local job = h.write_job(string.format([[
local cstream = require("cstream")
local env = cstream.get_execution_environment()
env:set_parallelism(1)
env:enable_checkpointing(100)
local more, release = %q, %q
local function exists(path)
  local f = io.open(path)
  if f then f:close() end
  return f ~= nil
end
env:add_source({
  run = function(self, ctx)
    for i = 1, 10 do ctx:collect({ "k" .. (i %% 2), i * 1000 }) end
    while not exists(more) do cstream.sleep(20) end
    ctx:collect({ "k0", 20000 })
    while not exists(release) do cstream.sleep(20) end
  end,
}):name("stamped"):uid("stamped")
  :assign_timestamps_and_watermarks(
    cstream.watermark_strategy.for_bounded_out_of_orderness(500, function(v) return v[2] end))
  :name("stamps"):uid("stamps")
  :key_by(1):sum(2):name("sums"):uid("sums")
  :add_sink(function(v) end):name("nowhere"):uid("nowhere")
env:execute("timed")
]], more, release))
    local p, port = o.start(job)
    local function watermarks(want)
      return h.wait_for(function()
        local code, body = o.get(port, "/metrics")
        local f = code == 200 and o.parse_prometheus(body)
        return f and o.value(f, "cstream_operator_watermark_milliseconds",
          { operator_id = "nowhere" }) == want and f
      end, 60)
    end
    local f = watermarks(9499)
    assert.truthy(f, "the sink's watermark never reached 9499")
    assert.are.equal("gauge", f.cstream_operator_watermark_milliseconds.type)
    local function wm(id) return o.value(f, "cstream_operator_watermark_milliseconds", { operator_id = id }) end
    assert.is_nil(wm("stamped")) -- before the strategy there is no event time
    assert.are.equal(9499, wm("stamps"))
    assert.are.equal(9499, wm("sums"))
    assert.are.equal(3, #f.cstream_operator_watermark_milliseconds.samples)
    local _, body = o.get(port, "/jobs/overview")
    local j = h.json_decode(body)
    assert.are.equal(h.json_null, j.vertices[1].watermark)
    assert.are.equal(9499, j.vertices[3].watermark)
    -- it moves with event time
    h.write_file(more, "")
    f = watermarks(19499)
    assert.truthy(f, "the sink's watermark never reached 19499")
    assert.are.equal(19499, wm("stamps"))
    -- the checkpoints every 100 ms report their synchronous pause
    local ck = h.wait_for(function()
      local code, b = o.get(port, "/metrics")
      local t = code == 200 and o.parse_prometheus(b)
      return t and t.cstream_job_last_checkpoint_sync_pause_seconds and t
    end, 30)
    assert.truthy(ck, "no sync pause after a checkpoint")
    assert.are.equal("gauge", ck.cstream_job_last_checkpoint_sync_pause_seconds.type)
    assert.are.equal(1, #ck.cstream_job_last_checkpoint_sync_pause_seconds.samples)
    local pause = o.value(ck, "cstream_job_last_checkpoint_sync_pause_seconds", { job = "timed" })
    assert.is_true(pause >= 0 and pause < 5, "pause " .. pause)
    assert.is_true(o.value(ck, "cstream_job_checkpoints_total", { result = "completed" }) >= 1)
    h.write_file(release, "")
    assert.are.equal(0, h.wait(p, 60))
  end)

  it("reports RocksDB's own estimates of the state's size", function()
    local dir = h.tmpdir()
    local release = dir .. "/release"
    local p, port = o.start(o.job(N, release), { "--state-backend", "rocksdb",
      "--checkpoint-dir", dir .. "/ckpt", "-D", "state.backend.rocksdb.localdir=" .. dir })
    -- the value cache writes the sums into RocksDB at each checkpoint
    local f = h.wait_for(function()
      local code, body = o.get(port, "/metrics")
      local t = code == 200 and o.parse_prometheus(body)
      return t and (o.value(t, "cstream_operator_state_entries",
        { operator_id = "sums", backend = "rocksdb" }) or 0) >= 5 and t
    end, 60)
    assert.truthy(f, "no RocksDB estimate")
    assert.is_true(o.value(f, "cstream_operator_state_bytes",
      { operator_id = "sums", backend = "rocksdb" }) > 0)
    assert.is_nil(o.value(f, "cstream_operator_state_entries", { backend = "heap" }))
    h.write_file(release, "")
    assert.are.equal(0, h.wait(p, 60))
  end)

  it("describes the job graph and the checkpoints as JSON", function()
    local release = h.tmpdir() .. "/release"
    local p, port = o.start(o.job(N, release))
    local j = h.wait_for(function()
      local code, body = o.get(port, "/jobs/overview")
      if code ~= 200 then return nil end
      local t = h.json_decode(body)
      return t.vertices[4].records_in == N / 2 and t
    end, 60)
    assert.truthy(j)
    assert.are.equal("watched", j.job)
    assert.are.equal("RUNNING", j.state)
    assert.are.equal(2, j.parallelism)
    assert.are.equal(4, j.vertices.n)
    local names, ids = {}, {}
    for i = 1, j.vertices.n do
      names[i], ids[i] = j.vertices[i].name, j.vertices[i].id
    end
    assert.are.same({ "numbers", "evens", "sums", "nowhere" }, names)
    assert.are.same({ "numbers", "evens", "sums", "nowhere" }, ids)
    assert.are.equal(1, j.vertices[1].parallelism) -- a Lua source runs once
    assert.is_true(j.vertices[1].source)
    assert.are.equal(2, j.vertices[3].parallelism)
    assert.are.equal(N, j.vertices[1].records_out)
    assert.are.equal(N / 2, j.vertices[3].records_out)
    assert.are.equal(2, j.vertices[3].subtasks.n)
    assert.are.equal(h.json_null, j.vertices[1].input_queue_fill) -- a source has none
    assert.is_true(j.vertices[3].input_queue_fill >= 0 and j.vertices[3].input_queue_fill <= 1)
    assert.are.equal(3, j.edges.n)
    local parts = {}
    for i = 1, j.edges.n do
      local e = j.edges[i]
      parts[#parts + 1] = string.format("%d->%d %s", e.from, e.to, e.partitioning)
    end
    -- the source runs once, the filter twice: a rebalance, as in Flink
    assert.are.same({ "0->1 rebalance", "1->2 hash", "2->3 forward" }, parts)
    assert.are.equal(0, j.reloads.committed)
    local c = h.wait_for(function()
      local _, body = o.get(port, "/checkpoints")
      local t = h.json_decode(body)
      return t.completed >= 1 and t
    end, 30)
    assert.truthy(c)
    assert.are.equal(100, c.interval_ms)
    assert.are.equal("COMPLETED", c.history[1].status)
    assert.are.equal(c.latest.id, c.history[1].id)
    assert.is_true(c.history[1].duration_ms >= 0)
    h.write_file(release, "")
    assert.are.equal(0, h.wait(p, 60))
  end)

  it("shows backpressure behind a slow sink", function()
    -- The source (one subtask) feeds two sink subtasks; the second works
    -- 0.2 ms a record, so its input channel fills and the source waits.
    local job = h.write_job([[
local cstream = require("cstream")
local env = cstream.get_execution_environment()
env:set_parallelism(2)
env:from_collection((function() local t = {} for i = 1, 200000 do t[i] = i end return t end)())
  :name("many"):uid("many")
  :key_by(function(v) return v % 7 end)
  :add_sink({
    open = function(self, ctx) self.slow = ctx:index_of_this_subtask() == 1 end,
    invoke = function(self, v)
      if not self.slow then return end
      local t = os.clock() + 0.0002
      while os.clock() < t do end
    end,
  }):name("slow"):uid("slow")
env:execute("pressed")
]])
    local p, port = o.start(job)
    local j = h.wait_for(function()
      local code, body = o.get(port, "/jobs/overview")
      local t = code == 200 and h.json_decode(body)
      return t and t.vertices[1].backpressured > 0.5 and t.vertices[2].busy > 0.5 and t
    end, 60)
    assert.truthy(j, "no backpressure seen")
    assert.is_true(j.vertices[2].input_queue_fill > 0.5)
    local _, m = o.get(port, "/metrics")
    local f = o.parse_prometheus(m)
    assert.is_true(o.value(f, "cstream_operator_backpressured_ratio", { operator_id = "many" }) > 0.5)
    assert.is_true(o.value(f, "cstream_channel_queue_fill_ratio", { operator_id = "slow" }) > 0.5)
    h.kill(p)
  end)

  it("answers 404 for a path it does not serve", function()
    local release = h.tmpdir() .. "/release"
    local p, port = o.start(o.job(10, release))
    local code, body = o.get(port, "/jobs/nope")
    assert.are.equal(404, code)
    assert.matches("no such path: /jobs/nope", body)
    code = o.get(port, "/metrics?x=1") -- a query string is not part of the path
    assert.are.equal(200, code)
    h.write_file(release, "")
    assert.are.equal(0, h.wait(p, 60))
  end)

  it("refuses a port in use: the job does not start", function()
    local release = h.tmpdir() .. "/release"
    local p, port = o.start(o.job(10, release))
    local job = h.write_job([[
local cstream = require("cstream")
local env = cstream.get_execution_environment()
env:from_elements(1, 2, 3):print()
env:execute("second")
]])
    local r = h.run({ "--rest-port", tostring(port), job }, { timeout = 60 })
    assert.are_not.equal(0, r.code)
    assert.matches("cannot listen on 127%.0%.0%.1:" .. port ..
      " for the REST endpoint %(%-%-rest%-port, rest%.port%): the port is already in use", r.stderr)
    assert.are.equal("", r.stdout) -- nothing ran
    r = h.run({ "-D", "rest.address=localhost", "--rest-port", "0", job })
    assert.are.equal(2, r.code)
    assert.matches("invalid value 'localhost' for 'rest.address'", r.stderr)
    h.write_file(release, "")
    assert.are.equal(0, h.wait(p, 60))
  end)

  it("keeps serving and running while clients hold half-open requests", function()
    local release = h.tmpdir() .. "/release"
    local p, port = o.start(o.job(100000000, release, { step = 5 })) -- runs until released
    -- clients that send part of a request, and one that sends nothing
    local held = {}
    for i = 1, 4 do
      held[i] = h.spawn({ "bash", "-c", string.format(
        "exec 3<>/dev/tcp/127.0.0.1/%d; printf '%s' >&3; sleep 60", port,
        i == 1 and "" or "GET /metr") })
    end
    h.sleep(0.5)
    local t0 = os.time()
    local code, body = o.get(port, "/metrics", 5)
    assert.are.equal(200, code)
    local first = o.value(o.parse_prometheus(body), "cstream_operator_records_out_total",
      { operator_id = "numbers" })
    -- the workers are not held either: the source goes on emitting
    local later = h.wait_for(function()
      local c, b = o.get(port, "/metrics", 5)
      local n = c == 200 and o.value(o.parse_prometheus(b), "cstream_operator_records_out_total",
        { operator_id = "numbers" })
      return n and n > first and n
    end, 30)
    assert.truthy(later)
    assert.is_true(os.time() - t0 < 30)
    for _, c in ipairs(held) do assert.is_true(h.alive(c)) end
    h.write_file(release, "")
    assert.are.equal(0, h.wait(p, 60))
  end)

  it("keeps serving and running while clients never read what they asked for", function()
    -- A job of a hundred maps at parallelism 2: /metrics runs to some
    -- 150 kB, far more than a receive buffer of 1 kB holds.
    local dir = h.tmpdir()
    local release = dir .. "/release"
    local job = h.write_job(string.format([[
local cstream = require("cstream")
local env = cstream.get_execution_environment()
env:set_parallelism(2)
local release = %q
local s = env:add_source({
  run = function(self, ctx)
    local i = 0
    while true do
      local f = io.open(release)
      if f then f:close() break end
      i = i + 1
      ctx:collect(i)
      cstream.sleep(5)
    end
  end,
}):name("ticks"):uid("ticks")
for k = 1, 100 do s = s:map(function(v) return v end):name("m" .. k):uid("m" .. k) end
s:add_sink(function(v) end):name("nowhere"):uid("nowhere")
env:execute("unread")
]], release))
    -- A client with a 1 kB receive buffer that pipelines 200 requests on
    -- one connection and reads nothing until the file `go` exists; then it
    -- reads to the end and writes what it got on stdout.
    local client = h.write_file(dir .. "/stuck.pl", [[
use strict; use Socket;
my ($port, $path, $go) = @ARGV;
socket(my $s, PF_INET, SOCK_STREAM, 0) or die "socket: $!";
setsockopt($s, SOL_SOCKET, SO_RCVBUF, 1024) or die "SO_RCVBUF: $!";
connect($s, sockaddr_in($port, inet_aton("127.0.0.1"))) or die "connect: $!";
my $req = "GET $path HTTP/1.1\r\nHost: spec\r\n\r\n" x 200;
defined(send($s, $req, 0)) or die "send: $!";
print STDERR "sent\n";
sleep 1 until -e $go;
binmode STDOUT;
my $buf;
while (1) {
  my $n = sysread($s, $buf, 65536);
  die "read: $!" unless defined $n;
  last if $n == 0;
  print $buf;
}
]])
    local go = dir .. "/go"
    local p, port = o.start(job)
    local stuck = {}
    for i, path in ipairs({ "/metrics", "/metrics", "/metrics", "/" }) do
      stuck[i] = h.spawn({ "perl", client, tostring(port), path, go })
    end
    for _, c in ipairs(stuck) do
      assert.truthy(h.wait_for(function() return h.read_file(c.stderr):match("sent") end, 30),
        h.read_file(c.stderr))
    end
    local function sunk()
      local code, body = o.get(port, "/metrics", 5)
      assert.are.equal(200, code) -- another client, answered whole within 5 s
      local f = o.parse_prometheus(body)
      -- the source runs once, the others twice: every line, none cut off
      assert.are.equal(1 + 101 * 2, #f.cstream_operator_records_in_total.samples)
      return o.value(f, "cstream_operator_records_in_total", { operator_id = "nowhere" })
    end
    local first = sunk()
    -- the records go on flowing to the sink, and new clients are answered
    local later = h.wait_for(function()
      local n = sunk()
      return n > first + 100 and n
    end, 30)
    assert.truthy(later, "the sink stayed at " .. first)
    for _ = 1, 5 do
      local code, body = o.get(port, "/jobs/overview", 5)
      assert.are.equal(200, code)
      assert.are.equal(102, h.json_decode(body).vertices.n)
    end
    -- The server holds none of the unread connections open: each is
    -- answered once and closed (or closed at the request timeout), its
    -- unsent bytes left to the kernel, while the clients hold on.
    local held = h.wait_for(function()
      local l = io.popen("ss -Htn state established '( sport = :" .. port .. " )'")
      local s = l:read("a")
      l:close()
      return s == "" and "none"
    end, 30)
    assert.are.equal("none", held)
    for _, c in ipairs(stuck) do assert.is_true(h.alive(c)) end
    h.write_file(release, "")
    assert.are.equal(0, h.wait(p, 60))
    for _, c in ipairs(stuck) do assert.is_true(h.alive(c)) end
    -- Reading at last, each client gets exactly one whole response, then
    -- the end of the connection: the 199 requests after the first are not
    -- answered, nor queued.
    h.write_file(go, "")
    for i, c in ipairs(stuck) do
      assert.are.equal(0, h.wait(c, 60), h.read_file(c.stderr))
      local got = h.read_file(c.stdout)
      local head, body = got:match("^(.-\r\n)\r\n(.*)$")
      assert.truthy(head, "no response head")
      assert.matches("^HTTP/1%.1 200 OK\r\n", head)
      assert.matches("\r\nConnection: close\r\n", head)
      assert.are.equal(tonumber(head:match("\r\nContent%-Length: (%d+)\r\n")), #body)
      assert.is_nil(body:find("HTTP/1.1 ", 1, true))
      if i < 4 then
        assert.is_true(#body > 100000, "a small /metrics: " .. #body)
        local f = o.parse_prometheus(body)
        assert.truthy(o.value(f, "cstream_operator_records_in_total", { operator_id = "m100" }))
      else
        assert.matches("^<!DOCTYPE html>", body)
      end
    end
  end)
end)
