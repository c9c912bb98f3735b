-- rr and swrr: exact sequences, equivalence with nginx's loop (including across snapshot updates, where swrr
-- must carry current weights by id), and the recorded-period fast path.

local select = require "scout.select"
local H = require "29_select_helpers"

-- nginx's ngx_http_upstream_get_peer, state kept by id across updates: the reference swrr must match.
local function reference(list)
  local self = { cw = {} }
  function self.set(eps)
    local cw = {}
    for _, ep in ipairs(eps) do cw[ep.id] = self.cw[ep.id] or 0 end
    self.cw, self.eps = cw, {}
    for _, ep in ipairs(eps) do
      if ep.weight > 0 then self.eps[#self.eps + 1] = ep end
    end
  end
  function self.pick()
    local best, total = nil, 0
    for _, ep in ipairs(self.eps) do
      self.cw[ep.id] = self.cw[ep.id] + ep.weight
      total = total + ep.weight
      if not best or self.cw[ep.id] > self.cw[best.id] then best = ep end
    end
    self.cw[best.id] = self.cw[best.id] - total
    return best
  end
  self.set(list)
  return self
end

local function seq(sel, n)
  local out = {}
  for i = 1, n do out[i] = sel:pick().id end
  return table.concat(out, " ")
end

describe("rr", function()
  it("cycles in order, skipping weight 0, ignoring other weights", function()
    local sel = select.new("rr", H.eps({ "a", 5 }, { "b", 0 }, { "c", 1 }, { "d", 100 }))
    assert.equal("a c d a c d a", seq(sel, 7))
  end)

  it("continues after the last picked endpoint across update", function()
    local sel = select.new("rr", H.eps({ "a", 1 }, { "b", 1 }, { "c", 1 }))
    assert.equal("a b", seq(sel, 2))
    sel:update(H.eps({ "x", 1 }, { "b", 1 }, { "c", 1 }, { "d", 1 }))
    assert.equal("c d x b", seq(sel, 4))
    -- last picked (b) removed: position is kept modulo the new size
    sel:update(H.eps({ "p", 1 }, { "q", 1 }, { "r", 1 }))
    assert.equal("r p q", seq(sel, 3))
  end)

  it("starts at a random position with opts.rng", function()
    local starts = {}
    for seed = 1, 20 do
      starts[select.new("rr", H.ids(5), { rng = select.rng(seed) }):pick().id] = true
    end
    local distinct = 0
    for _ in pairs(starts) do distinct = distinct + 1 end
    assert.is_true(distinct >= 3)
  end)
end)

describe("swrr", function()
  it("weights a=5,b=1,c=1 give a a b a c a a, repeatedly", function()
    local sel = select.new("swrr", H.eps({ "a", 5 }, { "b", 1 }, { "c", 1 }))
    assert.equal("a a b a c a a", seq(sel, 7))
    for _ = 1, 5 do
      assert.equal("a a b a c a a", seq(sel, 7))   -- replayed from the recorded period
    end
  end)

  it("scaled weights give the same sequence (gcd)", function()
    local a = select.new("swrr", H.eps({ "a", 500 }, { "b", 100 }, { "c", 100 }))
    assert.equal("a a b a c a a a a b a c a a", seq(a, 14))
    assert.equal(7, a.total)
  end)

  it("matches nginx's loop for random weight sets", function()
    local rng = select.rng(11)
    for _ = 1, 30 do
      local list = {}
      for i = 1, math.floor(rng() * 12) + 1 do
        list[i] = H.ep("e" .. i, math.floor(rng() * 7))
      end
      local sel, ref = select.new("swrr", list), reference(list)
      if #ref.eps == 0 then
        -- all zero: equal weights
        for _, ep in ipairs(list) do ep.weight = 1 end
        ref = reference(list)
      end
      for _ = 1, 300 do
        assert.equal(ref.pick().id, sel:pick().id)
      end
    end
  end)

  it("carries current weights by id across updates (live, recording and replay phases)", function()
    local rng = select.rng(5)
    for trial = 1, 40 do
      local list = {}
      for i = 1, 8 do list[i] = H.ep("e" .. i, math.floor(rng() * 5) + 1) end
      local sel, ref = select.new("swrr", list), reference(list)
      for round = 1, 6 do
        local picks = math.floor(rng() * 60)
        for _ = 1, picks do
          assert.equal(ref.pick().id, sel:pick().id)
        end
        assert.same(ref.cw, sel:current_weights())
        -- new snapshot: drop one, add one, change a weight
        local nxt = {}
        for _, ep in ipairs(ref.eps) do
          if rng() > 0.2 then nxt[#nxt + 1] = H.ep(ep.id, ep.weight) end
        end
        nxt[#nxt + 1] = H.ep("t" .. trial .. "r" .. round, math.floor(rng() * 4) + 1)
        nxt[1].weight = nxt[1].weight + 1
        sel:update(nxt)
        ref.set(nxt)
        local cw = sel:current_weights()
        for _, ep in ipairs(nxt) do
          assert.equal(ref.cw[ep.id], cw[ep.id])
        end
      end
      for _ = 1, 200 do
        assert.equal(ref.pick().id, sel:pick().id)
      end
    end
  end)

  it("keeps the in-progress position of a recorded period across update", function()
    local list = H.eps({ "a", 5 }, { "b", 1 }, { "c", 1 })
    local sel = select.new("swrr", list)
    seq(sel, 7)                       -- period recorded
    assert.equal("a a b", seq(sel, 3)) -- replaying, position 3
    assert.same({ a = 1, b = -4, c = 3 }, sel:current_weights())
    sel:update(H.eps({ "a", 5 }, { "b", 1 }, { "c", 1 }))
    assert.equal("a c a a", seq(sel, 4))  -- the rest of the period, as nginx would continue
  end)

  it("falls back to nginx's loop when the period is too long to record", function()
    local list = H.eps({ "a", 65521 }, { "b", 65519 }, { "c", 3 })
    local sel, ref = select.new("swrr", list), reference(list)
    assert.is_false(sel.record)
    for _ = 1, 1000 do
      assert.equal(ref.pick().id, sel:pick().id)
    end
    assert.same(ref.cw, sel:current_weights())
  end)

  it("distributes exactly by weight over a period", function()
    local list = H.eps({ "a", 3 }, { "b", 2 }, { "c", 0 }, { "d", 5 })
    local sel = select.new("swrr", list)
    local counts = {}
    for _ = 1, 10 * 7 do
      local id = sel:pick().id
      counts[id] = (counts[id] or 0) + 1
    end
    assert.same({ a = 21, b = 14, d = 35 }, counts)
  end)
end)
