-- cstream/group.lua - the job graph of one process of a group
-- (--group NAME, cluster.group; docs/scale-out.md). Not public API:
-- env:execute() calls rewrite() in the planning state and in every worker,
-- so all of them see the same nodes.
--
-- Every key_by exchange becomes a repartition topic "<group>-<id>-repartition"
-- (id: the keyed operator's) with cluster.partitions = R partitions:
--
--   upstream -> key_by -> keyed          becomes
--   upstream -> map {key, record} -> sink_repartition        (topic)
--   source_repartition -> key_by -> keyed                      (topic)
--
-- and every operator runs at parallelism R: logical subtask r of the
-- repartition source reads partition r, whose records all belong to the
-- key groups of subtask r of the keyed operator. The map computes the key
-- once, so the sink can pick the partition of the record's key group.
local M = {}

local function key_fn(key)
  if type(key) == "function" then return key end
  return function(v)
    if type(v) ~= "table" then
      error(string.format("key_by(%q): the record is a %s, not a table", key, type(v)), 0)
    end
    return v[key]
  end
end

function M.rewrite(env, group, R)
  local nodes = env._nodes
  local n0 = #nodes
  for i = 1, n0 do
    local k = nodes[i].kind
    if k == "source_kafka" then nodes[i].path = table.concat(nodes[i].kafka.topics, ",") end
    if k:match("^source_") and k ~= "source_kafka" then
      error(string.format("--group %s: the job's %s (operator %d) cannot run in a group: "
                          .. "in a group every source is a kafka_source (docs/scale-out.md)",
                          group, k:gsub("^source_", "") .. " source", i), 0)
    end
  end
  local before = {} -- the nodes to put before original node i
  local function add(node, i)
    node.index = #nodes + 1
    node.parallelism = R
    nodes[#nodes + 1] = node
    before[i] = before[i] or {}
    table.insert(before[i], node)
    return node
  end
  for i = 1, n0 do
    local node = nodes[i]
    for j, inp in ipairs(node.inputs) do
      if inp.partition == "hash" then
        local id = node.uid or (node.kind .. "_" .. i)
        local topic = group .. "-" .. id .. "-repartition"
        local sel = key_fn(inp.key)
        local m = add({ kind = "map", name = "Repartition key " .. id, uid = id .. "-repartition-key",
                        fn = function(v)
                          local k = sel(v)
                          if k == nil then error("key_by: the key of the record is nil", 0) end
                          return { k, v }
                        end,
                        inputs = { { node = inp.node, partition = "forward", side = inp.side } } }, i)
        add({ kind = "sink_repartition", name = "Sink: repartition " .. topic, path = topic,
              uid = id .. "-repartition-out", repartition = { topic = topic, partitions = R },
              inputs = { { node = m.index, partition = "forward" } } }, i)
        local q = add({ kind = "source_repartition", name = "Source: repartition " .. topic,
                        path = topic,
                        uid = id .. "-repartition", repartition = { topic = topic, partitions = R },
                        inputs = {} }, i)
        node.inputs[j] = { node = q.index, partition = "hash", key = inp.key }
      end
    end
  end
  for i = 1, n0 do nodes[i].parallelism = R end
  -- the planner wants every input before its consumer: the new nodes go
  -- before the operator whose key_by they carry, and the indexes follow
  local order = {}
  for i = 1, n0 do
    for _, extra in ipairs(before[i] or {}) do order[#order + 1] = extra end
    order[#order + 1] = nodes[i]
  end
  local new_index = {}
  for k, node in ipairs(order) do new_index[node.index] = k end
  for k, node in ipairs(order) do
    node.index = k
    for _, inp in ipairs(node.inputs) do inp.node = new_index[inp.node] end
    nodes[k] = node
  end
end

return M
