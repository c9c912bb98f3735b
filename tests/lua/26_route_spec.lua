-- scout.route: compile errors name the rule and the reason; tag routing, dubbo condition rules (wildcards,
-- lists, negation, $references, empty sides), weighted splits, fallbacks, evaluation order, and that apply()
-- hands back cached arrays.

local route = require "scout.route"
local select = require "scout.select"
local H = require "29_select_helpers"

local function ep(id, host, meta, port)
  return { id = id, host = host, port = port or 20880, weight = 100, meta = meta or {}, status = "up", zxid = 1 }
end

local function ids(list)
  local out = {}
  for i = 1, #list do out[i] = list[i].id end
  return table.concat(out, ",")
end

local LIST = {
  ep("a", "10.20.1.1", { tag = "gray", zone = "x", version = "1" }),
  ep("b", "10.20.1.2", { zone = "y", version = "2" }),
  ep("c", "10.30.1.1", { tag = "stable", zone = "x", version = "1" }, 8080),
  ep("d", "10.30.1.2", { tag = "gray", zone = "y", version = "2" }),
  ep("e", "192.168.0.9", { zone = "x", version = "1", ["dubbo.tag"] = "blue" }),
}

local function compile(rules, opts)
  local r, err = route.compile(rules, opts)
  assert.is_nil(err)
  return r
end

describe("scout.route", function()
  describe("compile errors", function()
    local cases = {
      { { "=> host = 1.2.3.4", "host =~ 10.* => host = 1.2.3.4" }, "rule 2: unknown operator \"=~\"" },
      { { "host == 1 => host = 2" }, "rule 1: unknown operator \"==\"" },
      { { "host = 1.2.3.4" }, "rule 1: missing \"=>\"" },
      { { "a = 1 => b = 2 => c = 3" }, "rule 1: more than one \"=>\"" },
      { { "host = => port = 1" }, "rule 1: empty value for \"host\"" },
      { { "host = a,,b => port = 1" }, "rule 1: empty value in list for \"host\"" },
      { { "= 1 => port = 1" }, "rule 1: missing key" },
      { { "host 1 => port = 1" }, "rule 1: missing operator after \"host\"" },
      { { "host = 1 & => port = 1" }, "rule 1: empty condition" },
      { { "host = $host => port = 1" }, "rule 1: $ reference on the left side" },
      { { "=> host = $" }, "rule 1: bad reference" },
      { { "args. = 1 => port = 1" }, "rule 1: bad key \"args.\"" },
      { { 42 }, "rule 1: must be a string or a table" },
      { { { tag = true, condition = "=>" } }, "rule 1: needs exactly one of tag, condition, split" },
      { { {} }, "rule 1: needs exactly one of tag, condition, split" },
      { { { tag = true, fallbak = "all" } }, "rule 1: unknown field \"fallbak\"" },
      { { { tag = 5 } }, "rule 1: tag must be true or a meta key" },
      { { { tag = true, fallback = 1 } }, "rule 1: fallback must be" },
      { { { condition = 7 } }, "rule 1: condition must be a string" },
      { { { split = {} } }, "rule 1: split must be a non-empty array of buckets" },
      { { { split = { { weight = 0 } } } }, "rule 1: split weights add up to 0" },
      { { { split = { { weight = -1 } } } }, "rule 1: bucket 1: weight must be a number >= 0" },
      { { { split = { { weight = 1 }, "x" } } }, "rule 1: bucket 2 is not a table" },
      { { { split = { { weight = 1, mtch = {} } } } }, "rule 1: bucket 1: unknown field \"mtch\"" },
      { { { split = { { weight = 1, match = { colour = "red" } } } } }, "rule 1: bucket 1: unknown match field" },
      { { { split = { { weight = 1, match = { meta = 1 } } } } }, "rule 1: bucket 1: meta must be a table" },
      { { { split = { { weight = 1, match = "version = $v" } } } }, "rule 1: bucket 1: $ references are not allowed" },
      { { { split = { { weight = 1, match = 5 } } } }, "rule 1: bucket 1: match must be a table or a condition" },
      { "x", "rules must be an array" },
      { { [1] = "=> a = 1", [3] = "=> b = 2" }, "rules must be an array" },
    }
    for i, c in ipairs(cases) do
      it("case " .. i .. ": " .. c[2], function()
        local r, err = route.compile(c[1])
        assert.is_nil(r)
        assert.truthy(err:find(c[2], 1, true), err)
      end)
    end

    it("an empty or missing rule list routes nothing", function()
      for _, rules in ipairs({ {}, false }) do
        local r = compile(rules or nil)
        assert.equal(LIST, r:apply(LIST, { tag = "gray" }))
      end
    end)
  end)

  describe("tag rule", function()
    local r = compile({ { tag = true } })

    it("keeps the endpoints with the request's tag, as the same cached array", function()
      local out = r:apply(LIST, { tag = "gray" })
      assert.equal("a,d", ids(out))
      assert.equal(out, r:apply(LIST, { tag = "gray" }))
    end)

    it("sends untagged requests to untagged endpoints", function()
      assert.equal("b,e", ids(r:apply(LIST, {})))
      assert.equal("b,e", ids(r:apply(LIST, nil)))
      assert.equal("b,e", ids(r:apply(LIST, { tag = "" })))
    end)

    it("falls back to all by default", function()
      assert.equal(LIST, r:apply(LIST, { tag = "nope" }))
      local tagged = { LIST[1], LIST[3] }
      assert.equal(tagged, r:apply(tagged, {}))
    end)

    it("falls back to none or another tag when told", function()
      local none = compile({ { tag = true, fallback = "none" } })
      local out = none:apply(LIST, { tag = "nope" })
      assert.equal(0, #out)
      assert.has_error(function() out[1] = LIST[1] end, "routed arrays are read-only")
      local stable = compile({ { tag = true, fallback = "stable" } })
      assert.equal("c", ids(stable:apply(LIST, { tag = "nope" })))
      local ghost = compile({ { tag = true, fallback = "ghost" } })
      assert.equal(LIST, ghost:apply(LIST, { tag = "nope" }))   -- the fallback tag is empty too: all
    end)

    it("reads another meta key when given one", function()
      local blue = compile({ { tag = "dubbo.tag" } })
      assert.equal("e", ids(blue:apply(LIST, { tag = "blue" })))
      assert.equal("a,b,c,d", ids(blue:apply(LIST, {})))
    end)

    it("recomputes for a new snapshot array", function()
      local snap2 = { LIST[1], LIST[2] }
      assert.equal("a", ids(r:apply(snap2, { tag = "gray" })))
      assert.equal("a,d", ids(r:apply(LIST, { tag = "gray" })))
    end)
  end)

  describe("condition rule", function()
    it("routes matching requests and passes others through", function()
      local r = compile({ "host = 10.20.* & method = get* => host = 10.20.*" })
      local out = r:apply(LIST, { host = "10.20.9.9", method = "getUser" })
      assert.equal("a,b", ids(out))
      assert.equal(out, r:apply(LIST, { host = "10.20.7.7", method = "getOrder" }))
      assert.equal(LIST, r:apply(LIST, { host = "10.20.9.9", method = "setUser" }))
      assert.equal(LIST, r:apply(LIST, { host = "10.99.9.9", method = "getUser" }))
      assert.equal(LIST, r:apply(LIST, { method = "getUser" }))   -- no host: "host = ..." is false
    end)

    it("supports !=, lists, and every wildcard shape", function()
      local function run(rule, ctx)
        return ids(compile({ rule }):apply(LIST, ctx or {}))
      end
      assert.equal("c,d,e", run("=> host != 10.20.*"))
      assert.equal("a,e", run("=> host = 10.20.1.1,192.168.*"))
      assert.equal("a,c", run("=> host = *.1.1"))
      assert.equal("c,d", run("=> host = *30.1*"))
      assert.equal("a,b", run("=> host = 10.*.1.?,10.2*.1.*"))
      assert.equal("a,b,c,d,e", run("=> host = *"))
      assert.equal("c", run("=> port = 8080"))
      assert.equal("c", run("=> address = 10.30.1.1:8080"))
      assert.equal("a,c,e", run("=> zone = x"))
      assert.equal("a,c,e", run("=> meta.zone = x"))
      assert.equal("b,d", run("=> zone = y & version = 2"))
      assert.equal("a,b,c,d,e", run("=> zone = x & version != 1"))   -- matches nothing: fallback all
      assert.equal("b,e", run("=> tag != *"))           -- absent meta: != matches
      assert.equal("a", run("=> id = a"))
      assert.equal("a,b,c,d,e", run("=> status = up"))
      assert.equal("d", run("=> host = 10.30.* & zone = y"))
    end)

    it("reads args, headers (case-insensitively) and any ctx field on the left", function()
      local r = compile({ "args.user = vip* => zone = y", "headers.X-Canary = 1 => version = 2",
                          "region = eu => id = e" })
      assert.equal("b,d", ids(r:apply(LIST, { args = { user = "vip42" } })))
      assert.equal("b,d", ids(r:apply(LIST, { headers = { ["x-canary"] = "1" } })))
      assert.equal("b,d", ids(r:apply(LIST, { headers = { ["X-Canary"] = { "1", "0" } } })))
      assert.equal("e", ids(r:apply(LIST, { region = "eu" })))
      assert.equal(LIST, r:apply(LIST, { args = "notatable", headers = {} }))
    end)

    it("an empty left side always applies", function()
      local r = compile({ "=> zone = y" })
      assert.equal("b,d", ids(r:apply(LIST, {})))
    end)

    it("resolves $references per request and caches per value", function()
      local r = compile({ "=> host = $host" })
      local same = r:apply(LIST, { host = "10.30.1.2" })
      assert.equal("d", ids(same))
      assert.equal(same, r:apply(LIST, { host = "10.30.1.2" }))
      assert.equal("a", ids(r:apply(LIST, { host = "10.20.1.1" })))
      assert.equal(LIST, r:apply(LIST, { host = "1.1.1.1" }))       -- nothing matches: fallback all
      assert.equal(LIST, r:apply(LIST, {}))                         -- no value: nothing matches
      local two = compile({ "=> zone = $args.zone & version = $args.v,1" })
      assert.equal("a,c,e", ids(two:apply(LIST, { args = { zone = "x", v = "1" } })))
      assert.equal("b,d", ids(two:apply(LIST, { args = { zone = "y", v = "2" } })))
      assert.equal("a,c,e", ids(two:apply(LIST, { args = { zone = "x", v = "9" } })))
    end)

    it("keeps the $reference memo bounded", function()
      local r = compile({ "=> host = $host" })
      for i = 1, 3000 do r:apply(LIST, { host = "10.0." .. i }) end
      local st = r.rules[1].cache[LIST]
      assert.is_true(st.memo_n <= 1024)
      assert.equal("a", ids(r:apply(LIST, { host = "10.20.1.1" })))
    end)

    it("an empty right side is a blacklist (fallback none unless told)", function()
      local r = compile({ "host = 1.2.3.4 =>" })
      assert.equal(0, #r:apply(LIST, { host = "1.2.3.4" }))
      assert.equal(LIST, r:apply(LIST, { host = "1.2.3.5" }))
      local soft = compile({ { condition = "host = 1.2.3.4 =>", fallback = "stable" } })
      assert.equal("c", ids(soft:apply(LIST, { host = "1.2.3.4" })))
    end)

    it("falls back when the right side matches nothing", function()
      assert.equal(LIST, compile({ "=> zone = z" }):apply(LIST, {}))
      assert.equal(0, #compile({ { condition = "=> zone = z", fallback = "none" } }):apply(LIST, {}))
      assert.equal("a,d", ids(compile({ { condition = "=> zone = z", fallback = "gray" } }):apply(LIST, {})))
    end)
  end)

  describe("split rule", function()
    local rules = { { split = { { match = { meta = { version = "2" } }, weight = 5 }, { weight = 95 } } } }

    it("keeps a key in one bucket and splits keys by weight", function()
      local r = compile(rules)
      local counts = { canary = 0, rest = 0 }
      for i = 1, 20000 do
        local out = r:apply(LIST, { key = "user" .. i })
        assert.equal(out, r:apply(LIST, { key = "user" .. i }))
        if ids(out) == "b,d" then
          counts.canary = counts.canary + 1
        else
          assert.equal("a,c,e", ids(out))   -- the bucket without match: everyone not claimed
          counts.rest = counts.rest + 1
        end
      end
      assert.is_true(H.chi2(counts, { canary = 0.05, rest = 0.95 }, 20000) < H.chi2_crit(1))
    end)

    it("splits keyless requests at random (seedable)", function()
      local r = compile(rules, { rng = select.rng(8) })
      local canary = 0
      for _ = 1, 20000 do
        if ids(r:apply(LIST, {})) == "b,d" then canary = canary + 1 end
      end
      assert.is_true(H.chi2({ c = canary, r = 20000 - canary }, { c = 0.05, r = 0.95 }, 20000) < H.chi2_crit(1))
    end)

    it("falls back when the chosen bucket is empty", function()
      local r = compile({ { split = { { match = "version = 9", weight = 1 },
                                      { match = { host = "10.20.*" }, weight = 0 } } } })
      assert.equal(LIST, r:apply(LIST, { key = "k" }))
      local none = compile({ { split = { { match = "version = 9", weight = 1 } }, fallback = "none" } })
      assert.equal(0, #none:apply(LIST, { key = "k" }))
    end)

    it("matches on endpoint fields, lists and wildcards", function()
      local r = compile({ { split = { { match = { host = "10.30.*,192.*", port = 20880 }, weight = 1 } } } })
      assert.equal("d,e", ids(r:apply(LIST, {})))
    end)
  end)

  describe("several rules", function()
    it("apply in order, each narrowing the previous result", function()
      local r = compile({ { tag = true }, "method = get* => zone = x" })
      assert.equal("a", ids(r:apply(LIST, { tag = "gray", method = "getA" })))
      assert.equal("a,d", ids(r:apply(LIST, { tag = "gray", method = "setA" })))
      assert.equal("e", ids(r:apply(LIST, { method = "getA" })))
      assert.equal("b,e", ids(r:apply(LIST, {})))
      -- the second rule finds nothing in the first one's output: it falls back to that output, not to all
      local r1 = compile({ { tag = true }, "method = get* => zone = y" })
      assert.equal("c", ids(r1:apply(LIST, { tag = "stable", method = "getA" })))
      local r2 = compile({ "=> zone = y", { tag = true } })
      assert.equal("b", ids(r2:apply(LIST, {})))
      assert.equal("d", ids(r2:apply(LIST, { tag = "gray" })))
    end)

    it("returns the same array for the same snapshot and request shape", function()
      local r = compile({ { tag = true }, "=> zone = x", { split = { { weight = 1 } } } })
      local first = r:apply(LIST, { tag = "gray" })
      for _ = 1, 10 do
        assert.equal(first, r:apply(LIST, { tag = "gray" }))
      end
    end)

    it("never returns an empty list from non-empty input when fallbacks are configured", function()
      local r = compile({ { tag = true }, "=> zone = none", "method = x => host = 0.0.0.0",
                          { split = { { match = "version = 42", weight = 1 } } } })
      for _, ctx in ipairs({ {}, { tag = "gray" }, { tag = "zzz", method = "x" }, { key = "k" } }) do
        assert.is_true(#r:apply(LIST, ctx) > 0)
      end
      assert.equal(0, #r:apply({}, {}))
    end)

    it("labels each subset by the route that made it, the same across snapshots", function()
      local r = compile({ { tag = true }, "=> host = $host", { split = { { match = "version = 2", weight = 1 },
                                                                          { weight = 0 } } } })
      local _, label = r:apply(LIST, { tag = "gray", host = "10.30.1.2", key = "k1" })
      assert.equal("/1:tag=gray/2:then$10.30.1.2/3:bucket=1", label)
      local out
      out, label = r:apply(LIST, { host = "10.20.1.2", key = "k1" })
      assert.equal("b", ids(out))
      assert.equal("/1:untagged/2:then$10.20.1.2/3:bucket=1", label)
      out, label = r:apply(LIST, { tag = "none", host = "9.9.9.9", key = "k1" })   -- fallbacks keep the input's label
      assert.equal("/3:bucket=1", label)
      assert.equal("b,d", ids(out))
      local snap2 = { LIST[1], LIST[2], LIST[4] }
      out, label = r:apply(snap2, { tag = "gray", host = "10.30.1.2", key = "k1" })
      assert.equal("/1:tag=gray/2:then$10.30.1.2/3:bucket=1", label)
      assert.equal("d", ids(out))
      _, label = compile({}):apply(LIST, {})
      assert.equal("", label)
      _, label = compile({ { condition = "=> zone = q", fallback = "none" } }):apply(LIST, {})
      assert.equal("none", label)
    end)

    it("raises when apply gets no endpoint array", function()
      local r = compile({ { tag = true } })
      assert.has_error(function() r:apply(nil, {}) end, "endpoints must be an array")
    end)
  end)
end)

describe("route tag rule with force (dubbo's tag router)", function()
  local eps = {
    ep("a", "10.0.0.1", { ["dubbo.tag"] = "gray" }),
    ep("b", "10.0.0.2", {}),
    ep("c", "10.0.0.3", { ["dubbo.tag"] = "" }),
  }

  it("sends a tagged request to its tag, else to the untagged endpoints, never to all", function()
    local soft = compile({ { tag = "dubbo.tag", force = false } })
    assert.equal("a", ids((soft:apply(eps, { tag = "gray" }))))
    assert.equal("b,c", ids((soft:apply(eps, { tag = "red" }))))
    assert.equal("b,c", ids((soft:apply(eps, {}))))
    local _, label = soft:apply({ eps[1] }, {})
    assert.equal("none", label)  -- every endpoint tagged: an untagged request reaches none (dubbo does the same)
    assert.equal(0, #(soft:apply({ eps[1] }, { tag = "red" })))
  end)

  it("sends a tagged request nowhere when forced and its tag has no endpoint", function()
    local hard = compile({ { tag = "dubbo.tag", force = true } })
    assert.equal("a", ids((hard:apply(eps, { tag = "gray" }))))
    local out, label = hard:apply(eps, { tag = "red" })
    assert.equal(0, #out)
    assert.equal("none", label)
    assert.equal("b,c", ids((hard:apply(eps, {}))))
  end)

  it("with names, lets an untagged request reach endpoints whose tag is not one of them", function()
    local list = { eps[1], eps[2], ep("d", "10.0.0.4", { ["dubbo.tag"] = "blue" }) }
    local r = compile({ { tag = "dubbo.tag", force = false, names = { "gray" } } })
    assert.equal("b,d", ids((r:apply(list, {}))))
    assert.equal("d", ids((r:apply(list, { tag = "blue" }))))
    assert.equal("b", ids((r:apply(list, { tag = "red" }))))  -- a tag with no endpoint: the untagged ones only
    local _, err = route.compile({ { tag = true, names = { "x" } } })
    assert.equal("rule 1: names needs force (dubbo's tag router)", err)
    _, err = route.compile({ { tag = true, force = true, names = { x = 1 } } })
    assert.equal("rule 1: names must be an array of tags", err)
  end)

  it("keeps force to tag rules, boolean, and apart from fallback", function()
    local _, err = route.compile({ { condition = "=> host = a", force = true } })
    assert.equal("rule 1: force is only for a tag rule", err)
    _, err = route.compile({ { tag = true, force = true, fallback = "all" } })
    assert.equal("rule 1: a tag rule takes force or fallback, not both", err)
    _, err = route.compile({ { tag = true, force = "yes" } })
    assert.equal("rule 1: force must be true or false", err)
  end)
end)
