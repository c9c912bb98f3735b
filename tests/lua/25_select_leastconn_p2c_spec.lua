-- leastconn and p2c: in-flight accounting through pick/feedback, tie-breaking, latency preference, and per-id
-- state (in-flight counts, EWMA) surviving update.

local select = require "scout.select"
local H = require "29_select_helpers"

describe("leastconn", function()
  it("spreads concurrent requests and returns to the freed endpoint", function()
    local sel = select.new("leastconn", H.ids(3))
    local a, b, c = sel:pick(), sel:pick(), sel:pick()
    assert.same({ "node1", "node2", "node3" }, { a.id, b.id, c.id })
    sel:feedback(b, true, 3)
    assert.equal("node2", sel:pick().id)
    assert.equal(1, sel:in_flight("node2"))
  end)

  it("weighs in-flight counts by weight", function()
    local sel = select.new("leastconn", H.eps({ "a", 2 }, { "b", 1 }))
    local counts = { a = 0, b = 0 }
    for _ = 1, 30 do
      local id = sel:pick().id
      counts[id] = counts[id] + 1
    end
    assert.same({ a = 20, b = 10 }, counts)
  end)

  it("breaks ties by weight, then round robin", function()
    local sel = select.new("leastconn", H.eps({ "a", 1 }, { "b", 3 }, { "c", 1 }))
    -- all idle: the heavier one wins
    local ep = sel:pick()
    assert.equal("b", ep.id)
    sel:feedback(ep)
    -- equal weights and loads: rotate
    local eq = select.new("leastconn", H.ids(4))
    local out = {}
    for i = 1, 8 do
      local e = eq:pick()
      out[i] = e.id
      eq:feedback(e, true, 1)
    end
    assert.equal("node1 node2 node3 node4 node1 node2 node3 node4", table.concat(out, " "))
  end)

  it("never lets a count go below zero", function()
    local sel = select.new("leastconn", H.ids(2))
    local ep = sel:pick()
    sel:feedback(ep)
    sel:feedback(ep)
    assert.equal(0, sel:in_flight(ep.id))
  end)

  it("keeps in-flight counts of surviving ids across update", function()
    local sel = select.new("leastconn", H.ids(3))
    local n1, n2 = sel:pick(), sel:pick()
    sel:pick()                                     -- node3, which goes away
    sel:update({ H.ep("node1"), H.ep("node2"), H.ep("node4") })
    assert.equal(1, sel:in_flight("node1"))
    assert.equal(1, sel:in_flight("node2"))
    assert.equal(0, sel:in_flight("node4"))
    assert.equal("node4", sel:pick().id)           -- the fresh one is least loaded
    sel:feedback(n1)                               -- a request picked before the update ends after it
    assert.equal(0, sel:in_flight("node1"))
    sel:feedback(H.ep("node3"))                    -- removed: ignored
    assert.equal("node1", sel:pick().id)
    sel:feedback(n2)
    assert.equal(0, sel:in_flight("node2"))
  end)

  it("raises when feedback gets no endpoint", function()
    local sel = select.new("leastconn", H.ids(2))
    assert.has_error(function() sel:feedback(nil) end, "feedback needs the picked endpoint")
  end)
end)

describe("p2c", function()
  local function run(sel, lat, n)
    local counts = {}
    for _ = 1, n do
      local ep = sel:pick()
      counts[ep.id] = (counts[ep.id] or 0) + 1
      sel:feedback(ep, true, lat[ep.id])
    end
    return counts
  end

  it("prefers low-latency endpoints", function()
    local sel = select.new("p2c", H.ids(4), { rng = select.rng(1) })
    local counts = run(sel, { node1 = 5, node2 = 50, node3 = 50, node4 = 500 }, 20000)
    assert.is_true(counts.node1 > 0.45 * 20000, "fast one got " .. tostring(counts.node1))
    assert.is_true((counts.node4 or 0) < 0.05 * 20000)
    -- p2c never starves: the slowest is still sampled now and then
    assert.is_true((counts.node4 or 0) > 0)
  end)

  it("penalises in-flight requests (latency x (in_flight + 1))", function()
    local sel = select.new("p2c", H.ids(2), { rng = select.rng(2) })
    local a, b = sel.eps[1], sel.eps[2]
    sel.inflight[1], sel.inflight[2] = 1, 0
    sel:feedback(a, true, 10)      -- a: ewma 10, in flight 0
    sel:feedback(b, true, 15)      -- b: ewma 15, in flight 0 (floored)
    sel.inflight[1] = 1            -- a: 10 * 2 = 20 > b: 15 * 1
    assert.equal("node2", sel:pick().id)
  end)

  it("tries unsampled endpoints once, then waits for their first answer", function()
    local sel = select.new("p2c", H.ids(2), { rng = select.rng(3) })
    sel:feedback(sel.eps[1], true, 5)
    local first = sel:pick()       -- node2 costs 0 while idle
    assert.equal("node2", first.id)
    for _ = 1, 20 do               -- node2 now has one in flight and no sample: penalty
      local ep = sel:pick()
      assert.equal("node1", ep.id)
      sel:feedback(ep, true, 5)
    end
  end)

  it("folds latency into an EWMA, failures count at least fail_latency", function()
    local sel = select.new("p2c", H.ids(2), { alpha = 0.5, fail_latency = 100 })
    local ep = sel.eps[1]
    sel:feedback(ep, true, 10)
    assert.same({ 0, 10 }, { sel:stats("node1") })
    sel:feedback(ep, true, 20)
    assert.same({ 0, 15 }, { sel:stats("node1") })
    sel:feedback(ep, false, 1)
    assert.same({ 0, 57.5 }, { sel:stats("node1") })
    sel:feedback(ep, true, nil)   -- count only
    assert.same({ 0, 57.5 }, { sel:stats("node1") })
  end)

  it("peak mode jumps up at once and decays", function()
    local sel = select.new("p2c", H.ids(2), { alpha = 0.5, peak = true })
    local ep = sel.eps[1]
    sel:feedback(ep, true, 10)
    sel:feedback(ep, true, 100)
    assert.same({ 0, 100 }, { sel:stats("node1") })
    sel:feedback(ep, true, 20)
    assert.same({ 0, 60 }, { sel:stats("node1") })
  end)

  it("keeps EWMA and in-flight counts of surviving ids across update", function()
    local sel = select.new("p2c", H.ids(3), { rng = select.rng(4) })
    sel:feedback(sel.eps[1], true, 7)
    sel:feedback(sel.eps[2], true, 9)
    sel.inflight[2] = 3
    sel:update({ H.ep("node2"), H.ep("node5"), H.ep("node1") })
    assert.same({ 0, 7 }, { sel:stats("node1") })
    assert.same({ 3, 9 }, { sel:stats("node2") })
    assert.same({ 0, 0 }, { sel:stats("node5") })
    assert.same({ 0, 0 }, { sel:stats("node3") })
  end)

  it("returns the only endpoint of a one-element list", function()
    local sel = select.new("p2c", H.ids(1))
    assert.equal("node1", sel:pick().id)
    assert.equal(1, (sel:stats("node1")))
  end)

  it("validates options", function()
    assert.has_error(function() select.new("p2c", {}, { alpha = 0 }) end, "opts.alpha must be in (0, 1]")
    assert.has_error(function() select.new("p2c", {}, { rng = 1 }) end, "opts.rng must be a function")
    assert.has_error(function() select.new("p2c", {}, { fail_latency = -1 }) end,
      "opts.fail_latency must be a number >= 0")
  end)
end)
