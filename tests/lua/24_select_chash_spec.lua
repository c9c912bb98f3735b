-- chash (Maglev table): bounded memory, balance by weight, ~1/N remapped on removal and addition with other keys
-- staying put, independence from input order, key types and the no-key fallback.

local select = require "scout.select"
local H = require "29_select_helpers"

local NKEYS = 10000

local function mapping(sel)
  local m = {}
  for k = 1, NKEYS do m[k] = sel:pick({ key = "key:" .. k }).id end
  return m
end

local function slots(sel)
  local c = {}
  for i = 1, sel.size do
    local id = sel.tab[i].id
    c[id] = (c[id] or 0) + 1
  end
  return c
end

describe("chash", function()
  it("has a fixed-size table whatever the weights", function()
    local light = select.new("chash", H.ids(10, 1))
    local heavy = select.new("chash", H.ids(10, 100000))
    assert.equal(65537, #light.tab)
    assert.equal(65537, #heavy.tab)
    local small = select.new("chash", H.ids(10, 100), { size = 1009 })
    assert.equal(1009, #small.tab)
  end)

  it("gives each endpoint a share of slots proportional to its weight (to one slot)", function()
    local list = H.eps({ "a", 1 }, { "b", 2 }, { "c", 3 }, { "d", 0 }, { "e", 4 })
    local sel = select.new("chash", list)
    local c = slots(sel)
    assert.is_nil(c.d)
    local total = 10
    for id, w in pairs({ a = 1, b = 2, c = 3, e = 4 }) do
      assert.is_true(math.abs(c[id] - 65537 * w / total) <= 1, id .. " " .. c[id])
    end
  end)

  it("spreads keys by weight (chi-square)", function()
    local list = H.eps({ "a", 1 }, { "b", 1 }, { "c", 2 }, { "d", 4 })
    local sel = select.new("chash", list)
    local counts = {}
    local m = mapping(sel)
    for k = 1, NKEYS do counts[m[k]] = (counts[m[k]] or 0) + 1 end
    local x = H.chi2(counts, { a = 0.125, b = 0.125, c = 0.25, d = 0.5 }, NKEYS)
    assert.is_true(x < H.chi2_crit(3), "chi2 " .. x)
  end)

  it("maps the same key to the same endpoint, and is independent of input order", function()
    local list = H.ids(20, 100)
    local a = select.new("chash", list)
    local shuffled = {}
    for i = 1, 20 do shuffled[i] = list[(i * 7) % 20 + 1] end
    local b = select.new("chash", shuffled)
    assert.same(mapping(a), mapping(b))
    assert.same(mapping(a), mapping(a))
  end)

  it("removing 1 of 10 endpoints remaps ~1/10 of keys and leaves the others put", function()
    local list = H.ids(10, 100)
    local sel = select.new("chash", list)
    local before = mapping(sel)
    local rest = {}
    for i = 1, 10 do if i ~= 4 then rest[#rest + 1] = list[i] end end
    sel:update(rest)
    local after = mapping(sel)
    local moved, collateral, gone = 0, 0, 0
    for k = 1, NKEYS do
      if before[k] == "node4" then gone = gone + 1 end
      if after[k] ~= before[k] then
        moved = moved + 1
        if before[k] ~= "node4" then collateral = collateral + 1 end
      end
      assert.are_not.equal("node4", after[k])
    end
    local frac = moved / NKEYS
    assert.is_true(frac > 0.05 and frac < 0.15, "remapped " .. frac)
    assert.is_true(math.abs(gone / NKEYS - 0.1) < 0.02)
    -- every key of node4 moved (of course); of the rest, Maglev moves only a few
    assert.is_true(collateral / (NKEYS - gone) < 0.02, "collateral " .. collateral)
  end)

  it("adding an 11th endpoint moves ~1/11 of keys, all of them to the new one (almost)", function()
    local list = H.ids(10, 100)
    local sel = select.new("chash", list)
    local before = mapping(sel)
    local more = H.ids(11, 100)
    sel:update(more)
    local after = mapping(sel)
    local moved, to_new = 0, 0
    for k = 1, NKEYS do
      if after[k] ~= before[k] then
        moved = moved + 1
        if after[k] == "node11" then to_new = to_new + 1 end
      end
    end
    assert.is_true(math.abs(moved / NKEYS - 1 / 11) < 0.04, "moved " .. moved)
    assert.is_true(to_new / moved > 0.95)
  end)

  it("hashes number keys by value", function()
    local sel = select.new("chash", H.ids(10))
    assert.equal(sel:pick({ key = 12345 }), sel:pick({ key = 12345.0 }))
    local seen = {}
    for k = 1, 1000 do seen[sel:pick({ key = k }).id] = true end
    local n = 0
    for _ in pairs(seen) do n = n + 1 end
    assert.equal(10, n)
  end)

  it("walks the table when a request has no key", function()
    local sel = select.new("chash", H.eps({ "a", 1 }, { "b", 3 }))
    local counts = {}
    for _ = 1, 65537 do
      local id = sel:pick({}).id
      counts[id] = (counts[id] or 0) + 1
    end
    assert.is_true(math.abs(counts.a - 65537 / 4) <= 1)
    assert.is_table(sel:pick(nil))
  end)

  it("raises on a key of the wrong type and a bad size", function()
    local sel = select.new("chash", H.ids(3))
    assert.has_error(function() sel:pick({ key = {} }) end, "ctx.key must be a string or a number")
    assert.has_error(function() select.new("chash", H.ids(3), { size = 1000 }) end, "opts.size must be a prime >= 3")
  end)

  it("works with more endpoints than a small table has slots", function()
    local sel = select.new("chash", H.ids(20), { size = 7 })
    for k = 1, 100 do assert.is_table(sel:pick({ key = "k" .. k })) end
  end)
end)
