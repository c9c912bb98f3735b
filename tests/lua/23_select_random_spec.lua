-- random: weighted distribution (chi-square, fixed seed), determinism with a seeded rng, update.

local select = require "scout.select"
local H = require "29_select_helpers"

local function counts_of(sel, total)
  local counts = {}
  for _ = 1, total do
    local id = sel:pick().id
    counts[id] = (counts[id] or 0) + 1
  end
  return counts
end

describe("random", function()
  it("follows the weights (chi-square)", function()
    local list = H.eps({ "a", 1 }, { "b", 2 }, { "c", 3 }, { "d", 4 }, { "z", 0 }, { "e", 90 })
    local sel = select.new("random", list, { rng = select.rng(42) })
    local total = 200000
    local counts = counts_of(sel, total)
    assert.is_nil(counts.z)
    local probs = { a = 0.01, b = 0.02, c = 0.03, d = 0.04, e = 0.90 }
    local x = H.chi2(counts, probs, total)
    assert.is_true(x < H.chi2_crit(4), "chi2 " .. x)
  end)

  it("is uniform over equal weights with many endpoints", function()
    local list = H.ids(500, 100)
    local sel = select.new("random", list, { rng = select.rng(7) })
    local total = 250000
    local probs = {}
    for i = 1, 500 do probs["node" .. i] = 1 / 500 end
    assert.is_true(H.chi2(counts_of(sel, total), probs, total) < H.chi2_crit(499))
  end)

  it("is reproducible with the same seed", function()
    local a = select.new("random", H.ids(10), { rng = select.rng(9) })
    local b = select.new("random", H.ids(10), { rng = select.rng(9) })
    for _ = 1, 1000 do
      assert.equal(a:pick().id, b:pick().id)
    end
  end)

  it("uses the new weights after update", function()
    local sel = select.new("random", H.eps({ "a", 1 }, { "b", 1 }), { rng = select.rng(1) })
    sel:update(H.eps({ "a", 0 }, { "b", 1 }, { "c", 3 }))
    local total = 40000
    local counts = counts_of(sel, total)
    assert.is_nil(counts.a)
    assert.is_true(H.chi2(counts, { b = 0.25, c = 0.75 }, total) < H.chi2_crit(1))
  end)

  it("survives an rng that returns exactly 1", function()
    local sel = select.new("random", H.ids(3), { rng = function() return 1 end })
    assert.is_table(sel:pick())
  end)

  it("rejects a non-function rng", function()
    assert.has_error(function() select.new("random", H.ids(3), { rng = 5 }) end, "opts.rng must be a function")
  end)
end)
