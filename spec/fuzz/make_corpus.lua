-- make_corpus.lua - writes the seed corpora of spec/fuzz/corpus/ from files
-- the engine really writes: it runs a small keyed job with checkpoints on
-- the filesystem and RocksDB backends (full and incremental) and keeps the
-- _metadata, the RocksDB manifests and whole checkpoint directories (in the
-- framing of fuzz_statetool.c); the codec and channel seeds are the bytes
-- the encoder and cs_batch_add write for typical records, the config seeds
-- cstream-conf.yaml files and -D flags of the kinds the specs use.
--   lua5.4 spec/fuzz/make_corpus.lua BUILD_DIR    (from the project root)
local build = assert(arg[1], "usage: make_corpus.lua BUILD_DIR")
local bin = build .. "/cstream-lua"
local out = "spec/fuzz/corpus"

local function sh(cmd)
  local ok = os.execute(cmd)
  assert(ok, "failed: " .. cmd)
end
local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end
local function write(path, s)
  local f = assert(io.open(path, "wb"))
  f:write(s)
  f:close()
end
local function lines_of(cmd)
  local p = io.popen(cmd)
  local t = {}
  for l in p:lines() do t[#t + 1] = l end
  p:close()
  return t
end
for _, t in ipairs({ "codec", "manifest", "metadata", "config", "statetool", "channel" }) do
  sh("mkdir -p " .. out .. "/" .. t)
end

local tmp = lines_of("mktemp -d /tmp/cstream-corpus.XXXXXX")[1]
local job = tmp .. "/job.lua"
write(job, [[
local cstream = require("cstream")
local env = cstream.get_execution_environment()
local records = {}
for i = 1, 12 do records[#records + 1] = { "k" .. (i % 3), i, i / 4 } end
env:add_source({
  run = function(self, ctx)
    for _, r in ipairs(records) do ctx:collect(r) end
    self.emitted = true
    while (self.after or 0) < 2 do cstream.sleep(5) end
  end,
  snapshot_state = function(self)
    if self.emitted then self.after = (self.after or 0) + 1 end
  end,
}):uid("gen")
  :key_by(1)
  :process({
    open = function(self, ctx)
      self.sum = ctx:get_state(cstream.value_state_descriptor("sum"))
      self.all = ctx:get_list_state(cstream.list_state_descriptor("all"))
      self.parity = ctx:get_map_state(cstream.map_state_descriptor("parity"))
    end,
    process_element = function(self, v)
      self.sum:update((self.sum:value() or 0) + v[2])
      self.all:add(v[3])
      local p = v[2] % 2 == 0 and "even" or "odd"
      self.parity:put(p, (self.parity:get(p) or 0) + 1)
    end,
  }):uid("agg")
  :add_sink({ invoke = function() end })
env:execute("seed")
]])

-- "\0\1FILE <path>\n<bytes>" per file (fuzz_statetool.c).
local function frame(files)
  local parts = { "\0" } -- flag byte: checksums as written
  for _, f in ipairs(files) do parts[#parts + 1] = "\0\1FILE " .. f[1] .. "\n" .. f[2] end
  return table.concat(parts)
end

for _, b in ipairs({ { "filesystem", "filesystem", false }, { "rocksdb", "rocksdb", false },
                     { "rocksdb-incremental", "rocksdb", true } }) do
  local name, backend, incr = b[1], b[2], b[3]
  local dir = tmp .. "/" .. name
  sh("mkdir -p " .. dir .. "/work")
  sh(string.format("%s -p 1 --state-backend %s --checkpoint-dir %s/chk " ..
                   "-D state.backend.rocksdb.localdir=%s/work -D state.backend.incremental=%s " ..
                   "--checkpoint-interval 50ms %s >/dev/null", bin, backend, dir, dir,
                   tostring(incr), job))
  local jobdir = dir .. "/chk/seed"
  local chk = lines_of("ls -d " .. jobdir .. "/chk-* | sort -t- -k2 -n | tail -n 1")[1]
  write(out .. "/metadata/" .. name, "\0" .. read(chk .. "/_metadata"))
  local files = {}
  for _, rel in ipairs(lines_of("cd " .. chk .. " && find . -type f | sort")) do
    rel = rel:gsub("^%./", "")
    files[#files + 1] = { "chk-1/" .. rel, read(chk .. "/" .. rel) }
    if rel:match("cs%-manifest$") then write(out .. "/manifest/" .. name, read(chk .. "/" .. rel)) end
  end
  for _, rel in ipairs(lines_of("cd " .. jobdir .. " && find shared -type f 2>/dev/null | sort")) do
    files[#files + 1] = { rel, read(jobdir .. "/" .. rel) }
  end
  write(out .. "/statetool/" .. name, frame(files))
end
sh("rm -rf " .. tmp)

-- ------------------------------------------------------------ config
local yaml = {
  flat = "state.backend: rocksdb\nparallelism.default: 2\nexecution.checkpointing.interval: 10 s\n",
  nested = "state:\n  backend: filesystem\n  checkpoints:\n    dir: file:///tmp/ckpt\n" ..
           "execution:\n  checkpointing:\n    interval: 100ms\n",
  sizes = "state.backend.rocksdb.block.cache-size: 64 mb\nstate.backend.incremental: true\n",
  comments = "# only a comment\n",
  quoted = "state.backend: 'hashmap'\n\"parallelism.default\": \"4\"\n",
}
for n, s in pairs(yaml) do write(out .. "/config/yaml-" .. n, "\0" .. s) end
write(out .. "/config/flags", "\1state.backend=rocksdb\nparallelism.default=3\n" ..
      "execution.checkpointing.interval=1min\nstate.checkpoints.dir=file:///tmp/a%20b\n" ..
      "state.backend.rocksdb.block.cache-size=1 gib\npipeline.max-parallelism=128\n")

-- ------------------------------------------------------- codec, channel
-- The bytes cs_codec_encode writes (state/cs_codec.h): integers in their
-- shortest form, floats as float64, strings as str, tables as array/map.
local function mp(v)
  local t = math.type(v) or type(v)
  if v == nil then return "\xc0"
  elseif v == true then return "\xc3" elseif v == false then return "\xc2"
  elseif t == "integer" then
    if v >= 0 and v < 128 then return string.char(v)
    elseif v < 0 and v >= -32 then return string.char(v + 256)
    elseif v >= 0 and v < 65536 then return "\xcd" .. string.pack(">I2", v)
    else return "\xd3" .. string.pack(">i8", v) end
  elseif t == "float" then return "\xcb" .. string.pack(">d", v)
  elseif t == "string" then
    if #v < 32 then return string.char(0xa0 + #v) .. v end
    return "\xd9" .. string.char(#v) .. v
  end
  local n = #v
  local parts = {}
  if n > 0 then
    for i = 1, n do parts[#parts + 1] = mp(v[i]) end
    return string.char(0x90 + n) .. table.concat(parts)
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  for _, k in ipairs(keys) do parts[#parts + 1] = mp(k) .. mp(v[k]) end
  return string.char(0x80 + #keys) .. table.concat(parts)
end
local values = {
  word = { "hello", 1 }, order = { id = 42, user = "u7", amount = 12.5, tags = { "a", "b" } },
  nested = { { 1, { 2, { 3 } } }, { x = false, y = true } }, neg = { -1, -33, -70000, 0.0, -0.5 },
  str = "a string of more than thirty-two bytes, as str8",
}
for n, v in pairs(values) do write(out .. "/codec/" .. n, mp(v)) end

-- A batch: u16 key group (top bit: a timestamp follows) [| i64 ts] | u32
-- key length | key | u32 value length | value, native byte order.
local function rec(kg, ts, key, val)
  local k = ts and (kg | 0x8000) or kg
  return string.pack("=I2", k) .. (ts and string.pack("=i8", ts) or "") ..
         string.pack("=I4", #key) .. key .. string.pack("=I4", #val) .. val
end
write(out .. "/channel/records", rec(17, nil, mp("hello"), mp({ "hello", 1 })) ..
      rec(90, nil, mp("world"), mp({ "world", 3 })))
write(out .. "/channel/timestamps", rec(5, 1700000000000, mp(42), mp(values.order)) ..
      rec(127, -1, "", mp("forward")))
print("corpus written to " .. out)
