-- examples/kafka_wordcount.lua runs as the README says, here against
-- librdkafka's mock cluster (spec/examples_spec.lua runs the examples that
-- need no broker).
local h = require("helpers")
local kmock = dofile(h.src("spec/kafka/mock.lua"))

describe("examples/kafka_wordcount.lua", function()
  after_each(h.cleanup)

  it("counts the words of a topic into another, exactly once", function()
    local mock = kmock.start(h, { lines = 2, word_counts = 2 })
    mock:produce("lines", { { 0, "", "To be or not to be" }, { 1, "", "be quick" } })
    local r = h.run({ "-p", "2", "--checkpoint-dir", h.tmpdir(), "--state-backend",
                      "filesystem", h.src("examples/kafka_wordcount.lua"), mock.bootstrap,
                      "bounded" }, { timeout = 60 })
    assert.are.equal(0, r.code, r.stderr)
    local last = {}
    for _, rec in ipairs(mock:dump("word_counts")) do
      local word, n = rec.value:match("^(%a+),(%d+)$")
      assert.are.equal(word, rec.key)
      last[word] = tonumber(n)
    end
    assert.are.same({ to = 2, be = 3, ["or"] = 1, ["not"] = 1, quick = 1 }, last)
  end)
end)
