-- The Kafka specs' broker: librdkafka's mock cluster hosted by the test
-- tool cs_kafka_mock (spec/tools/cs_kafka_mock.c) on loopback. The tool
-- reads commands from a FIFO this module holds open; it exits when the FIFO
-- closes (stop(), or the spec process ending) and h.cleanup() kills it
-- too, so no broker outlives a spec.
local M = {}

-- Starts a cluster with the topics {name = partitions} and returns a mock
-- object: bootstrap (the address list), command, produce, dump, committed,
-- stop.
function M.start(h, topics, brokers)
  local dir = h.tmpdir()
  local fifo = dir .. "/ctl"
  assert(os.execute("mkfifo " .. h.quote(fifo)))
  local argv = { h.tool("cs_kafka_mock"), "serve", "--brokers", tostring(brokers or 1) }
  for name, parts in pairs(topics or {}) do
    argv[#argv + 1] = "--topic"
    argv[#argv + 1] = name .. ":" .. parts
  end
  local p = h.spawn(argv, { stdin = fifo })
  local ctl = assert(io.open(fifo, "w"))
  local mock = { proc = p, ctl = ctl, dir = dir }
  mock.bootstrap = h.wait_for(function()
    return (h.read_file(p.stdout) or ""):match("bootstrap (%S+)")
  end, 10)
  assert(mock.bootstrap, "the mock cluster did not start: " .. (h.read_file(p.stderr) or ""))

  -- Sends a server command ("create t 3", "down 1", "up 1", "errors 1 29 5")
  -- and waits for its answer; raises on an error answer.
  function mock:command(c)
    self.ctl:write(c .. "\n")
    self.ctl:flush()
    local answer = h.wait_for(function()
      local s = h.read_file(self.proc.stdout) or ""
      if s:find("ok " .. c, 1, true) then return "ok" end
      if s:find("error " .. c, 1, true) then return "error" end
    end, 10)
    assert(answer == "ok", "mock command failed: " .. c)
  end

  -- Produces records {partition, key, value, timestamp} (partition -1:
  -- any; key "" or nil: none).
  function mock:produce(topic, records)
    local lines = {}
    for i, r in ipairs(records) do
      lines[i] = string.format("%d\t%s\t%s\t%s", r[1] or -1, r[2] or "", r[3],
                               r[4] and tostring(r[4]) or "0")
    end
    local file = h.write_file(h.tmpdir() .. "/records", table.concat(lines, "\n") .. "\n")
    local r = h.run({}, { cmd = { h.tool("cs_kafka_mock"), "produce", self.bootstrap, topic },
                          stdin = file })
    assert(r.code == 0, "produce failed: " .. r.stderr)
  end

  -- Every record of topic: {partition, offset, key, value, timestamp,
  -- headers = {name = value}}.
  function mock:dump(topic)
    local r = h.run({}, { cmd = { h.tool("cs_kafka_mock"), "dump", self.bootstrap, topic } })
    assert(r.code == 0, "dump failed: " .. r.stderr)
    local out = {}
    for _, line in ipairs(h.lines(r.stdout)) do
      local p, o, k, v, ts, hd = line:match("^(%d+)\t(%d+)\t([^\t]*)\t([^\t]*)\t(%-?%d+)\t(.*)$")
      local headers = {}
      for name, val in (hd or ""):gmatch("([^=;]+)=([^;]*)") do headers[name] = val end
      out[#out + 1] = { partition = tonumber(p), offset = tonumber(o), key = k, value = v,
                        timestamp = tonumber(ts), headers = headers }
    end
    return out
  end

  -- The committed offsets of group on topic: {[partition] = offset}.
  function mock:committed(group, topic)
    local r = h.run({}, { cmd = { h.tool("cs_kafka_mock"), "committed", self.bootstrap,
                                  group, topic } })
    assert(r.code == 0, "committed failed: " .. r.stderr)
    local out = {}
    for p, o in r.stdout:gmatch("(%d+)\t(%-?%d+)") do out[tonumber(p)] = tonumber(o) end
    return out
  end

  function mock:stop()
    if self.ctl then self.ctl:close() end
    self.ctl = nil
    h.kill(self.proc)
  end
  return mock
end

return M
