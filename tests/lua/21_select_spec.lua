-- scout.select: the registry and contract shared by every selector — name/module/table resolution, validation
-- of user selectors, filled-in optional methods, weight rules, and empty lists.

local select = require "scout.select"
local H = require "29_select_helpers"

local NAMES = { "rr", "swrr", "random", "chash", "leastconn", "p2c" }

describe("scout.select", function()
  describe("resolve / new", function()
    it("resolves every built-in name", function()
      for _, name in ipairs(NAMES) do
        local mod = assert(select.resolve(name))
        assert.equal(require("scout.select." .. name), mod)
        local sel = select.new(name, H.ids(3))
        assert.is_table(sel:pick({ key = "k" }))
      end
      assert.same(NAMES, select.names)
    end)

    it("requires a module by name", function()
      package.preload["test.sel.first"] = function()
        return { new = function(eps) return { pick = function() return eps[1] end } end }
      end
      local sel = select.new("test.sel.first", H.ids(3))
      assert.equal("node1", sel:pick().id)
    end)

    it("accepts a table implementing the contract", function()
      local mod = { new = function(eps) return { pick = function() return eps[2] end } end }
      assert.equal("node2", select.new(mod, H.ids(3)):pick().id)
    end)

    it("reports bad specs with nil, err from resolve and raises from new", function()
      local cases = {
        { "no-such-selector", "unknown selector \"no-such-selector\"" },
        { 42, "selector must be a name or a table, got number" },
        { {}, "selector has no new() function" },
        { { new = 1 }, "selector has no new() function" },
      }
      for _, c in ipairs(cases) do
        local mod, err = select.resolve(c[1])
        assert.is_nil(mod)
        assert.truthy(err:find(c[2], 1, true), err)
        assert.has_error(function() select.new(c[1], {}) end)
      end
      package.preload["test.sel.notable"] = function() return 1 end
      local _, err = select.resolve("test.sel.notable")
      assert.truthy(err:find("did not return a table", 1, true))
    end)

    it("validates the object new() returns", function()
      local function try(obj)
        local ok, err = pcall(select.new, { new = function() return obj end }, {})
        assert.is_false(ok)
        return err
      end
      assert.truthy(try(nil):find("returned nil, not a table", 1, true))
      assert.truthy(try({}):find("no pick() method", 1, true))
      assert.truthy(try({ pick = function() end, feedback = 1 }):find("feedback is not a function", 1, true))
      assert.truthy(try({ pick = function() end, update = true }):find("update is not a function", 1, true))
    end)

    it("raises on a non-table endpoint list", function()
      assert.has_error(function() select.new("rr", "x") end, "endpoints must be an array")
    end)

    it("fills in feedback and an update that rebuilds in place", function()
      local built = 0
      local mod = {}
      local mt = { __index = { pick = function(self) return self.eps[1] end } }
      function mod.new(eps)
        built = built + 1
        return setmetatable({ eps = eps, gen = built }, mt)
      end
      local sel = select.new(mod, H.ids(2))
      assert.is_function(sel.feedback)
      sel:feedback(sel:pick(), true, 1)
      local same = sel
      sel:update({ H.ep("z") })
      assert.equal(same, sel)
      assert.equal(2, sel.gen)
      assert.equal("z", sel:pick().id)
      sel:update({ H.ep("y") })          -- the installed update survives its own rebuild
      assert.equal("y", sel:pick().id)
      assert.equal(3, sel.gen)
    end)
  end)

  describe("pool", function()
    it("keeps one selector per label and updates it when the label's array changes", function()
      local pool = select.pool("leastconn")
      local snap1 = H.ids(3)
      local sel = pool:get(snap1, "/1:tag=gray")
      assert.equal(sel, pool:get(snap1, "/1:tag=gray"))
      local other = pool:get(snap1)
      assert.are_not.equal(sel, other)
      assert.equal(other, pool:get(snap1, ""))
      local ep = sel:pick()                               -- node1 in flight
      local snap2 = { snap1[1], snap1[2], H.ep("node9") }
      assert.equal(sel, pool:get(snap2, "/1:tag=gray"))  -- same object, updated
      assert.equal(1, sel:in_flight(ep.id))
      assert.equal("node9", sel.eps[3].id)
    end)

    it("starts over past max labels", function()
      local pool = select.pool("rr", nil, 2)
      local list = H.ids(2)
      local a = pool:get(list, "a")
      pool:get(list, "b")
      pool:get(list, "c")
      assert.are_not.equal(a, pool:get(list, "a"))
    end)

    it("raises on a bad spec", function()
      assert.has_error(function() select.pool("nope") end)
    end)
  end)

  describe("prepare (weights)", function()
    it("drops weight 0 and keeps order", function()
      local eps, ws, n, total, index = select.prepare(H.eps({ "a", 2 }, { "b", 0 }, { "c", 3 }))
      assert.equal(2, n)
      assert.equal(5, total)
      assert.same({ "a", "c" }, { eps[1].id, eps[2].id })
      assert.same({ 2, 3 }, ws)
      assert.same({ a = 1, c = 2 }, index)
    end)

    it("treats an all-zero set as equal weights", function()
      local eps, ws, n, total = select.prepare(H.eps({ "a", 0 }, { "b", 0 }))
      assert.equal(2, n)
      assert.equal(2, total)
      assert.same({ 1, 1 }, ws)
      assert.equal("b", eps[2].id)
    end)

    it("defaults a missing weight to 1, floors fractions, keeps positive ones >= 1", function()
      local list = { { id = "a" }, { id = "b", weight = 2.7 }, { id = "c", weight = 0.2 }, { id = "d", weight = -1 } }
      local _, ws, n = select.prepare(list)
      assert.equal(3, n)
      assert.same({ 1, 2, 1 }, ws)
    end)
  end)

  describe("every built-in", function()
    for _, name in ipairs(NAMES) do
      it(name .. " returns nil, \"no endpoint\" on an empty list, also after update", function()
        local sel = select.new(name, {})
        local ep, err = sel:pick({ key = "k" })
        assert.is_nil(ep)
        assert.equal("no endpoint", err)
        sel:update(H.ids(2))
        assert.is_table(sel:pick({ key = "k" }))
        sel:update({})
        ep, err = sel:pick({ key = "k" })
        assert.is_nil(ep)
        assert.equal("no endpoint", err)
      end)

      it(name .. " never picks a weight-0 endpoint", function()
        local sel = select.new(name, H.eps({ "a", 1 }, { "zero", 0 }, { "b", 3 }), { rng = select.rng(3) })
        for i = 1, 2000 do
          local ep = sel:pick({ key = "k" .. i })
          assert.are_not.equal("zero", ep.id)
          sel:feedback(ep, true, 1)
        end
      end)

      it(name .. " picks among an all-zero set", function()
        local sel = select.new(name, H.eps({ "a", 0 }, { "b", 0 }), { rng = select.rng(3) })
        local seen = {}
        for i = 1, 200 do
          local ep = sel:pick({ key = "k" .. i })
          seen[ep.id] = true
          sel:feedback(ep, true, 1)
        end
        assert.is_true(seen.a and seen.b)
      end)

      it(name .. " returns the caller's endpoint tables and accepts a nil ctx", function()
        local list = H.ids(3)
        local sel = select.new(name, list)
        local ep = sel:pick(nil)
        assert.truthy(ep == list[1] or ep == list[2] or ep == list[3])
      end)
    end
  end)
end)
