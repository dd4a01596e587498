-- Configuration as a user sees it: cstream-conf.yaml (--conf, then
-- $CSTREAM_CONF_DIR, then the working directory), the job's own calls and
-- the command line, their precedence and origins in --print-config, and
-- the errors for unknown keys and bad values.
local h = require("helpers")

-- A job that sets some configuration itself: parallelism 3, checkpointing
-- every 250 ms, the filesystem backend with checkpoints under jobdir.
local function configured_job(jobdir)
  return h.write_job(string.format([[
local cstream = require("cstream")
local env = cstream.get_execution_environment()
env:set_parallelism(3)
env:enable_checkpointing(250)
env:set_state_backend(cstream.fs_state_backend("file://%s"))
env:from_elements(1, 2, 3):print()
env:execute("configured")
]], jobdir))
end

local PLAIN_JOB = [[
local cstream = require("cstream")
local env = cstream.get_execution_environment()
env:from_elements(1, 2, 3):print()
env:execute("plain")
]]

-- --print-config output as { key = { value = ..., origin = ... } }.
local function parse_config(out)
  local conf = {}
  for _, line in ipairs(h.lines(out)) do
    local key, value, origin = line:match("^([%w%.%-]+): (.-)%s+%((.*)%)$")
    assert(key, "not a configuration line: " .. line)
    conf[key] = { value = value, origin = origin }
  end
  return conf
end

local function print_config(args, opts)
  local r = h.run(args, opts)
  assert.are.equal(0, r.code, r.stderr)
  return parse_config(r.stdout), r
end

local function conf_file(dir, text, name)
  return h.write_file(dir .. "/" .. (name or "cstream-conf.yaml"), text)
end

local function escape(s) return (s:gsub("%p", "%%%0")) end

describe("configuration precedence", function()
  after_each(h.cleanup)

  it("--print-config lists every key with its default and exits without running the job", function()
    local job = h.write_job(PLAIN_JOB)
    local conf, r = print_config({ "--print-config", job })
    assert.is_nil(r.stdout:match("\n1\n"), "the job ran")
    local keys = {}
    for k in pairs(conf) do keys[#keys + 1] = k end
    local help = h.run({ "--help-config" })
    assert.are.equal(0, help.code)
    for _, k in ipairs(keys) do assert.matches("\n?" .. escape(k), help.stdout) end
    assert.are.same({ value = "memory", origin = "default" }, conf["state.backend"])
    assert.are.same({ value = "1", origin = "default" }, conf["state.checkpoints.num-retained"])
    assert.are.same({ value = "128", origin = "default" }, conf["pipeline.max-parallelism"])
    assert.are.same({ value = "3", origin = "default" }, conf["restart-strategy.fixed-delay.attempts"])
    assert.are.same({ value = "0", origin = "default" },
                    conf["execution.checkpointing.tolerable-failed-checkpoints"])
    assert.are.equal("(unset)", conf["execution.checkpointing.interval"].value)
    assert.matches("^default", conf["execution.checkpointing.interval"].origin)
  end)

  it("shows flag > job > file > default, with the origin of every value", function()
    local dir = h.tmpdir()
    local file = conf_file(dir, table.concat({
      "# the file sets everything the job and the flags also set",
      "state.backend: rocksdb",
      "state.checkpoints.dir: " .. dir .. "/file-chk",
      "execution.checkpointing.interval: 5s",
      "parallelism.default: 4",
      "state.checkpoints.num-retained: 3",
      "pipeline.max-parallelism: 64",
      "restart-strategy.fixed-delay.attempts: 7",
    }, "\n") .. "\n")
    local job = configured_job(dir .. "/job-chk")
    local conf = print_config({ "--conf", file, "-p", "2", "-D", "restart-strategy.fixed-delay.attempts=9",
                                "--print-config", job })
    local where = "file " .. file .. ":"
    -- flag over job over file
    assert.are.same({ value = "2", origin = "flag -p" }, conf["parallelism.default"])
    assert.are.same({ value = "9", origin = "flag -D" }, conf["restart-strategy.fixed-delay.attempts"])
    -- job over file
    assert.are.same({ value = "filesystem", origin = "job " .. job }, conf["state.backend"])
    assert.are.same({ value = dir .. "/job-chk", origin = "job " .. job }, conf["state.checkpoints.dir"])
    assert.are.same({ value = "250 ms", origin = "job " .. job }, conf["execution.checkpointing.interval"])
    -- file over default, naming file and line
    assert.are.same({ value = "3", origin = where .. "6" }, conf["state.checkpoints.num-retained"])
    assert.are.same({ value = "64", origin = where .. "7" }, conf["pipeline.max-parallelism"])
    -- default
    assert.are.same({ value = "10 min", origin = "default" }, conf["execution.checkpointing.timeout"])

    -- without the flag the job's value wins, without the job's call the file's
    conf = print_config({ "--conf", file, "--print-config", job })
    assert.are.same({ value = "3", origin = "job " .. job }, conf["parallelism.default"])
    assert.are.same({ value = "7", origin = where .. "8" }, conf["restart-strategy.fixed-delay.attempts"])
    local plain = h.write_job(PLAIN_JOB)
    conf = print_config({ "--conf", file, "--print-config", plain })
    assert.are.same({ value = "4", origin = where .. "5" }, conf["parallelism.default"])
    assert.are.same({ value = "rocksdb", origin = where .. "2" }, conf["state.backend"])
    assert.are.same({ value = "5 s", origin = where .. "4" }, conf["execution.checkpointing.interval"])
    -- the flags that set keys show as such
    conf = print_config({ "--conf", file, "--state-backend", "memory", "--checkpoint-dir", dir .. "/flag-chk",
                          "--checkpoint-interval", "1 s", "--print-config", job })
    assert.are.same({ value = "memory", origin = "flag --state-backend" }, conf["state.backend"])
    assert.are.same({ value = dir .. "/flag-chk", origin = "flag --checkpoint-dir" }, conf["state.checkpoints.dir"])
    assert.are.same({ value = "1 s", origin = "flag --checkpoint-interval" }, conf["execution.checkpointing.interval"])
  end)

  it("reads cstream-conf.yaml from $CSTREAM_CONF_DIR, and --conf wins over it", function()
    local dir, other = h.tmpdir(), h.tmpdir()
    conf_file(dir, "parallelism.default: 5\nstate.backend: hashmap\n")
    local file = conf_file(other, "parallelism.default: 6\n", "mine.yaml")
    local job = h.write_job(PLAIN_JOB)
    local conf = print_config({ "--print-config", job }, { env = "CSTREAM_CONF_DIR=" .. h.quote(dir) })
    assert.are.same({ value = "5", origin = "file " .. dir .. "/cstream-conf.yaml:1" }, conf["parallelism.default"])
    assert.are.same({ value = "filesystem", origin = "file " .. dir .. "/cstream-conf.yaml:2" }, conf["state.backend"])
    conf = print_config({ "--conf", file, "--print-config", job }, { env = "CSTREAM_CONF_DIR=" .. h.quote(dir) })
    assert.are.same({ value = "6", origin = "file " .. file .. ":1" }, conf["parallelism.default"])
    assert.are.same({ value = "memory", origin = "default" }, conf["state.backend"])
  end)

  it("reads cstream-conf.yaml from the working directory when nothing else names one", function()
    local dir = h.tmpdir()
    conf_file(dir, "parallelism.default: 7\n")
    local job = h.write_job(PLAIN_JOB)
    local r = h.run({}, { cmd = { "sh", "-c", "cd " .. h.quote(dir) .. " && exec " .. h.quote(h.bin()) ..
                                  " --print-config " .. h.quote(job) } })
    assert.are.equal(0, r.code, r.stderr)
    local conf = parse_config(r.stdout)
    assert.are.equal("7", conf["parallelism.default"].value)
    assert.matches("^file .*cstream%-conf%.yaml:1$", conf["parallelism.default"].origin)
  end)

  it("accepts Flink's nested YAML form, file:// URIs and units", function()
    local dir = h.tmpdir()
    local file = conf_file(dir, table.concat({
      "state:",
      "  backend: rocksdb",
      "  checkpoints:",
      "    dir: file://" .. dir .. "/nested",
      "    num-retained: 2",
      "execution.checkpointing.interval: 1min",
      "state.backend.memory.max-state-size: 10mb",
    }, "\n") .. "\n")
    local conf = print_config({ "--conf", file, "--print-config", h.write_job(PLAIN_JOB) })
    assert.are.same({ value = "rocksdb", origin = "file " .. file .. ":2" }, conf["state.backend"])
    assert.are.same({ value = dir .. "/nested", origin = "file " .. file .. ":4" }, conf["state.checkpoints.dir"])
    assert.are.same({ value = "2", origin = "file " .. file .. ":5" }, conf["state.checkpoints.num-retained"])
    assert.are.equal("1 min", conf["execution.checkpointing.interval"].value)
    assert.are.equal("10 mb", conf["state.backend.memory.max-state-size"].value)
  end)

  it("runs a job with the checkpointing the file configures", function()
    local dir = h.tmpdir()
    local file = conf_file(dir, table.concat({
      "state.backend: filesystem",
      "state.checkpoints.dir: " .. dir .. "/chk",
      "execution.checkpointing.interval: 50ms",
    }, "\n") .. "\n")
    -- a source that lasts until two checkpoints have been taken
    local job = h.write_job([[
local cstream = require("cstream")
local env = cstream.get_execution_environment()
env:add_source({
  run = function(self, ctx)
    ctx:collect(1)
    while (self.snapshots or 0) < 2 do cstream.sleep(5) end
  end,
  snapshot_state = function(self) self.snapshots = (self.snapshots or 0) + 1 end,
}):print()
env:execute("from-file")
]])
    local r = h.run({ "--conf", file, job }, { env = "CSTREAM_VERBOSE=1", timeout = 60 })
    assert.are.equal(0, r.code, r.stderr)
    assert.matches("checkpoint 1 completed in [^\n]*: " .. escape(dir .. "/chk/from-file/chk-1") .. "\n", r.stderr)
  end)
end)

describe("configuration errors", function()
  after_each(h.cleanup)

  it("an unknown key in the file names the file, the line and the key, with a suggestion", function()
    local dir = h.tmpdir()
    local file = conf_file(dir, "state.backend: filesystem\n\nstate.checkpoint.dir: /tmp/x\n")
    local job = h.write_job(PLAIN_JOB)
    for _, args in ipairs({ { "--conf", file, job }, { "--conf", file, "--print-config", job } }) do
      local r = h.run(args)
      assert.are_not.equal(0, r.code)
      assert.matches(escape(file) .. ":3: unknown key 'state%.checkpoint%.dir' %(did you mean " ..
                     "'state%.checkpoints%.dir'%?%)", r.stderr)
      assert.are.equal("", r.stdout)
    end
    -- also in the nested form
    file = conf_file(dir, "state:\n  backend: filesystem\n  bakend: x\n", "nested.yaml")
    local r = h.run({ "--conf", file, job })
    assert.are_not.equal(0, r.code)
    assert.matches(escape(file) .. ":3: unknown key 'state%.bakend'", r.stderr)
  end)

  it("a bad value in the file names the file, the line and the key", function()
    local dir = h.tmpdir()
    local job = h.write_job(PLAIN_JOB)
    for _, case in ipairs({
      { "state.checkpoints.num-retained: zero", "state%.checkpoints%.num%-retained" },
      { "execution.checkpointing.interval: 5 parsecs", "execution%.checkpointing%.interval" },
      { "state.backend: cassandra", "state%.backend" },
      { "state.backend.incremental: maybe", "state%.backend%.incremental" },
      { "state.backend.memory.max-state-size: lots", "state%.backend%.memory%.max%-state%-size" },
      { "pipeline.max-parallelism: 0", "pipeline%.max%-parallelism" },
      { "state.backend: [memory, rocksdb]", "state%.backend" },
    }) do
      local file = conf_file(dir, "# a comment\nparallelism.default: 2\n" .. case[1] .. "\n")
      local r = h.run({ "--conf", file, job })
      assert.are_not.equal(0, r.code, case[1])
      assert.matches(escape(file) .. ":3: ", r.stderr, nil, case[1])
      assert.matches("'" .. case[2] .. "'", r.stderr, nil, case[1])
      assert.are.equal("", r.stdout)
    end
  end)

  it("a YAML syntax error, a duplicate key and a missing file name the file", function()
    local dir = h.tmpdir()
    local job = h.write_job(PLAIN_JOB)
    local file = conf_file(dir, "parallelism.default: 2\nstate.backend: a: b\n")
    local r = h.run({ "--conf", file, job })
    assert.are_not.equal(0, r.code)
    assert.matches(escape(file) .. ":2: ", r.stderr)
    file = conf_file(dir, "state.backend: memory\nparallelism.default: 2\nstate.backend: rocksdb\n")
    r = h.run({ "--conf", file, job })
    assert.are_not.equal(0, r.code)
    assert.matches(escape(file) .. ":3: duplicate key 'state%.backend'", r.stderr)
    r = h.run({ "--conf", dir .. "/missing.yaml", job })
    assert.are_not.equal(0, r.code)
    assert.matches(escape(dir .. "/missing.yaml"), r.stderr)
  end)

  it("a bad flag value exits 2 naming the flag and the key", function()
    local job = h.write_job(PLAIN_JOB)
    for _, case in ipairs({
      { { "--checkpoint-interval", "soon" }, "%-%-checkpoint%-interval: invalid value 'soon' for " ..
                                              "'execution%.checkpointing%.interval'" },
      { { "--state-backend", "cassandra" }, "%-%-state%-backend: invalid value 'cassandra' for 'state%.backend'" },
      { { "-D", "state.checkpoints.num-retained=0" }, "%-D: invalid value '0' for 'state%.checkpoints%.num%-retained'" },
      { { "-D", "pipeline.max-parallelism=x" }, "invalid value 'x' for 'pipeline%.max%-parallelism'" },
      { { "-D", "restart-strategy=sometimes" }, "invalid value 'sometimes' for 'restart%-strategy'" },
      { { "-D", "state.checkpoint.dir=/tmp/x" }, "unknown key 'state%.checkpoint%.dir'" },
      { { "-D", "no-equals-sign" }, "%-D expects KEY=VALUE" },
      { { "--conf" }, "%-%-conf needs a value" },
    }) do
      local args = {}
      for _, a in ipairs(case[1]) do args[#args + 1] = a end
      if #case[1] > 1 then args[#args + 1] = job end
      local r = h.run(args)
      assert.are.equal(2, r.code, table.concat(case[1], " ") .. ": " .. r.stderr)
      assert.matches(case[2], r.stderr)
      assert.matches("Try 'cstream%-lua %-%-help'", r.stderr)
      assert.are.equal("", r.stdout)
    end
  end)
end)
