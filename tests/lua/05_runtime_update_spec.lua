-- scout.runtime's incremental update: adds, removes, re-reads, decode errors (and the quiet verdicts that are not
-- errors), the filter run only on what the batch touched, a raising filter committing nothing so the re-delivered
-- batch gives the right diff, on_change's sorted diff and lazily built svc.endpoints, and a raising on_change not
-- stopping the update. Split from 01_runtime_spec.lua; the policy both load is in runtime_helper.lua.

local runtime = require "scout.runtime"
local H = require "policy_helper"
local R = require "runtime_helper"

local st = H.state

local S, BARE, DUBBO, SS, USER = R.S, R.BARE, R.DUBBO, R.SS, R.USER
local ids, json, update, warns, debugs = R.ids, R.json, R.update, R.warns, R.debugs

describe("scout.runtime", function()
  before_each(R.begin)

  teardown(R.finish)

  describe("update", function()
    it("adds endpoints with id, zxid and the codec's fields", function()
      local r = update(S, {}, {
        { "10.0.0.2:80", nil, 11 },
        { "n1", json("10.0.0.1", 81, ',"weight":5,"meta":{"zone":"a"}'), 12 },
      })
      assert.is_true(r.ok)
      assert.same({
        { id = "10.0.0.2:80", host = "10.0.0.2", port = 80, weight = 1, status = "up", meta = {}, zxid = 11 },
        { id = "n1", host = "10.0.0.1", port = 81, weight = 5, status = "up", meta = { zone = "a" }, zxid = 12 },
      }, r.up)
      assert.same({}, r.gone)
      assert.equals(0, r.nerr)
      assert.equals(0, r.nhook)
      assert.is_nil(r.retry)
      assert.equals(1, #st.changes)
      assert.equals("10.0.0.2:80,n1", st.changes[1].added)
      assert.same({ "service \"s\": +2 -0 ~0" }, debugs())
    end)

    -- An update makes only the verdict lists a name goes into; the others are one shared empty table. A hook's
    -- diff must still be lists of its own: what a hook adds to one (table.insert is a raw set) would otherwise be
    -- in every later update's empty lists, published as endpoints and seen by later hooks.
    it("hands on_change lists of its own: what a hook adds to its diff is in no later diff nor publish", function()
      local path = H.write([=[
local st = require("policy_helper").state
service "k" {
  path = "/k", protect = false,
  on_change = function(svc, diff)
    st.seen[#st.seen + 1] = #diff.added .. "/" .. #diff.removed .. "/" .. #diff.changed
    table.insert(diff.added, { id = "intruder", host = "10.9.9.9", port = 1 })
    table.insert(diff.removed, { id = "intruder", host = "10.9.9.9", port = 1 })
    table.insert(diff.changed, { id = "intruder", host = "10.9.9.9", port = 1 })
  end,
}
]=])
      assert(runtime.load(path))
      st.seen = {}
      local a = update(1, {}, { { "a", json("10.0.0.1", 80), 1 } })
      local b = update(1, {}, { { "b", json("10.0.0.2", 80), 2 } })
      local c = update(1, { "a" }, {})
      local d = update(1, {}, { { "b", json("10.0.0.3", 80), 3 } })
      assert.same({ "1/0/0", "1/0/0", "0/1/0", "0/0/1" }, st.seen)
      assert.same({ "a", "b", "", "b" }, { a.ids, b.ids, c.ids, d.ids })
      assert.same({ "", "", "a", "" }, { a.gone_ids, b.gone_ids, c.gone_ids, d.gone_ids })
      assert.same({ 0, 0, 0, 0 }, { a.nhook, b.nhook, c.nhook, d.nhook })
    end)

    it("removes published endpoints and ignores names it never published", function()
      update(S, {}, { { "a", json("10.0.0.1", 80), 1 }, { "b", json("10.0.0.2", 80), 2 } })
      local r = update(S, { "a", "zzz" }, {})
      assert.same({}, r.up)
      assert.same({ "a" }, r.gone)
      assert.equals(0, r.nerr)
      assert.equals("a", st.changes[2].removed)
      assert.equals("", st.changes[2].added)
      -- removing it again is nothing
      r = update(S, { "a" }, {})
      assert.same({}, r.gone)
      assert.equals(2, #st.changes)
    end)

    it("publishes nothing for an identical re-read (a restart, a reload), and calls no hook for it", function()
      update(S, {}, { { "a", json("10.0.0.1", 80), 1 } })
      local first = update(S, {}, {}).up
      assert.same({}, first)
      local r = update(S, {}, { { "a", json("10.0.0.1", 80), 2 } })
      assert.equals("", r.ids)                -- nothing for the C side to publish
      assert.same({}, r.gone)
      assert.equals(1, #st.changes)          -- no diff, no on_change
      assert.same({ 'service "s": +1 -0 ~0' }, debugs())
      -- in a batch with a real change it is still not reported as changed
      r = update(S, {}, { { "a", json("10.0.0.1", 80), 3 }, { "b", json("10.0.0.2", 80), 4 } })
      assert.equals("b", r.ids)
      assert.equals(2, #st.changes)
      assert.equals("b", st.changes[2].added)
      assert.equals("", st.changes[2].changed)
    end)

    it("publishes the new zxid of a same-bytes rewrite whose data was read, not of a name-only re-listing", function()
      update(S, {}, { { "a", json("10.0.0.1", 80), 1, true }, { "b", json("10.0.0.2", 80), 2, true } })
      -- b's data read again with the same bytes: a new version (its mzxid), published without a diff
      local r = update(S, {}, { { "a", json("10.0.0.1", 80), 3, false }, { "b", json("10.0.0.2", 80), 4, true } })
      assert.equals("b", r.ids)
      assert.equals(4, r.up[1].zxid)
      assert.equals(1, #st.changes)          -- the content did not change: no on_change
    end)

    it("reports changed content as a change, and svc.endpoints shows the new version", function()
      st.peek = true
      update(S, {}, { { "a", json("10.0.0.1", 80), 1 }, { "b", json("10.0.0.2", 80), 2 } })
      -- each step changes one thing: a meta key added, a meta value, the weight, a meta key removed
      for _, extra in ipairs({ ',"meta":{"k":"v"}', ',"meta":{"k":"w"}', ',"meta":{"k":"w"},"weight":3',
                               ',"weight":3' }) do
        local before = #st.changes
        local r = update(S, {}, { { "a", json("10.0.0.1", 80, extra), 3 } })
        assert.equals("a", r.ids)
        assert.equals(before + 1, #st.changes)
        local c = st.changes[#st.changes]
        assert.equals("a", c.changed)
        assert.equals("", c.added)
        assert.equals("", c.removed)
        assert.equals(r.up[1], c.diff.changed[1])
        assert.equals("a,b", ids(c.endpoints))
        assert.equals(r.up[1], c.endpoints[1])
      end
      -- host and port changes too
      local r = update(S, {}, { { "a", json("10.0.0.9", 80), 4 }, { "b", json("10.0.0.2", 8080), 5 } })
      assert.equals("a,b", r.ids)
      assert.equals("a,b", st.changes[#st.changes].changed)
      assert.same({ 'service "s": +2 -0 ~0', 'service "s": +0 -0 ~1', 'service "s": +0 -0 ~1',
                    'service "s": +0 -0 ~1', 'service "s": +0 -0 ~1', 'service "s": +0 -0 ~2' }, debugs())
    end)

    it("counts and logs decode errors, and keeps an endpoint whose data went bad at its last good state", function()
      update(S, {}, { { "a", json("10.0.0.1", 80), 1 } })
      local r = update(S, {}, { { "a", "{oops", 2 }, { "b", "not an address", 3 }, { "c", nil, 4 } })
      assert.same({}, r.up)
      assert.same({}, r.gone)
      assert.equals("1 child not as ZooKeeper has it (a: its data does not decode: bad json)", r.degraded)
      assert.equals(3, r.nerr)
      assert.same({
        'service "s": skipping child a: bad json',
        'service "s": skipping child b: bad address',
        'service "s": skipping child c: no data',
      }, warns())
      assert.equals(1, #st.changes)
    end)

    it("moves a dubbo warm-up ramp on without any event, and stops asking once the weight is final", function()
      local t = os.time() * 1000
      runtime.set_wall_clock(function() return t end)
      finally(function() runtime.set_wall_clock(function() return os.time() * 1000 end) end)
      local name = "dubbo%3A%2F%2F10.0.0.9%3A20880%2Fcom.example.Foo%3Fside%3Dprovider%26timestamp%3D"
                   .. string.format("%d", t - 30000) .. "%26warmup%3D60000%26weight%3D100"
      local r = update(DUBBO, {}, { { name, nil, 1 } })
      local w = r.up[1].weight
      assert.is_true(w > 1 and w < 100, tostring(w))         -- half-way up the ramp when decoded
      assert.is_true(r.reweigh > 0 and r.reweigh <= 10000, tostring(r.reweigh))
      t = t + 15000
      r = update(DUBBO, {}, {})                               -- no event: the C side's timer calling back
      assert.equals(1, #r.up)
      assert.is_true(r.up[1].weight > w and r.up[1].weight < 100, tostring(r.up[1].weight))
      t = t + 60000
      r = update(DUBBO, {}, {})
      assert.equals(100, r.up[1].weight)
      assert.is_nil(r.reweigh)                                -- final: no more calls
      assert.equals(0, #update(DUBBO, {}, {}).up)
    end)

    it("does not count or log the quiet verdicts: dubbo empty:// and non-providers, serverset non-members", function()
      local r = update(DUBBO, {}, {
        { "empty%3A%2F%2F10.0.0.1%3A20880%2Fcom.example.Foo%3Fcategory%3Dproviders", nil, 1 },
        { "consumer%3A%2F%2F10.0.0.2%2Fcom.example.Foo%3Fcategory%3Dconsumers", nil, 2 },
        { "dubbo%3A%2F%2F10.0.0.3%3A20880%2Fcom.example.Foo%3Fweight%3D7", nil, 3 },
      })
      assert.equals(0, r.nerr)
      assert.same({}, warns())
      assert.equals(1, #r.up)
      assert.equals("10.0.0.3", r.up[1].host)
      assert.equals(20880, r.up[1].port)
      assert.equals(7, r.up[1].weight)

      r = update(SS, {}, {
        { "lock_0001", "anything", 4 },
        { "member_0001", '{"serviceEndpoint":{"host":"10.0.0.4","port":9000},"status":"ALIVE"}', 5 },
      })
      assert.equals(0, r.nerr)
      assert.same({}, warns())
      assert.equals("member_0001", r.ids)
    end)

    it("still counts real errors in codecs that have quiet verdicts", function()
      local r = update(SS, {}, { { "member_0002", "{", 1 } })
      assert.equals(1, r.nerr)
      assert.same({ 'service "ss": skipping child member_0002: bad json' }, warns())
      r = update(DUBBO, {}, { { "dubbo%3A%2F%2F10.0.0.1%3Axx%2Fcom.example.Foo", nil, 2 } })
      assert.equals(1, r.nerr)
    end)

    it("publishes only endpoints whose status is up, and withdraws one that stops being up", function()
      local r = update(S, {}, { { "a", json("10.0.0.1", 80), 1 },
                                { "b", json("10.0.0.2", 80, ',"status":"down"'), 2 } })
      assert.equals("a", r.ids)
      assert.equals(0, r.nerr)
      assert.equals(1, st.filter_calls)      -- the status is judged before the filter
      r = update(S, {}, { { "a", json("10.0.0.1", 80, ',"status":"draining"'), 3 } })
      assert.same({}, r.up)
      assert.same({ "a" }, r.gone)
      assert.equals("a", st.changes[2].removed)
      r = update(S, {}, { { "b", json("10.0.0.2", 80), 4 } })
      assert.equals("b", r.ids)
      assert.equals("b", st.changes[3].added)
    end)

    it("runs the filter only on new and changed endpoints", function()
      update(S, {}, { { "a", json("10.0.0.1", 80), 1 }, { "b", json("10.0.0.2", 80), 2 },
                      { "c", json("10.0.0.3", 80), 3 } })
      assert.equals(3, st.filter_calls)
      update(S, {}, { { "d", json("10.0.0.4", 80), 4 } })
      assert.equals(4, st.filter_calls)
      assert.equals("a,b,c,d", st.filtered)
      update(S, { "a" }, {})
      assert.equals(4, st.filter_calls)
      update(S, {}, { { "b", json("10.0.0.2", 80, ',"weight":2'), 5 } })
      assert.equals(5, st.filter_calls)
      update(S, {}, { { "c", "{", 6 } })
      assert.equals(5, st.filter_calls)
      update(S, {}, {})
      assert.equals(5, st.filter_calls)
      assert.equals("a,b,c,d,b", st.filtered)
    end)

    it("keeps out what the filter rejects, and withdraws what it starts rejecting", function()
      local r = update(S, {}, { { "a", json("10.0.0.1", 80, ',"meta":{"drop":"1"}'), 1 },
                                { "b", json("10.0.0.2", 80), 2 } })
      assert.equals("b", r.ids)
      r = update(S, {}, { { "b", json("10.0.0.2", 80, ',"meta":{"drop":"1"}'), 3 } })
      assert.same({}, r.up)
      assert.same({ "b" }, r.gone)
      -- a rejected endpoint that goes away was never published: nothing to withdraw
      r = update(S, { "a" }, {})
      assert.same({}, r.gone)
      r = update(S, {}, { { "b", json("10.0.0.2", 80), 4 } })
      assert.equals("b", r.ids)
      assert.equals("b", st.changes[#st.changes].added)
    end)

    describe("when the filter raises on one child", function()
      local batch

      before_each(function()
        st.peek = true
        update(S, {}, { { "a", json("10.0.0.1", 80), 1 }, { "b", json("10.0.0.2", 80), 2 },
                        { "e", json("10.0.0.5", 80), 3 } })
        assert.equals(1, #st.changes)
        batch = { removed = { "a" },
                  changed = { { "b", json("10.0.0.2", 80, ',"weight":9'), 4 }, { "c", json("10.0.0.3", 80), 5 } } }
        st.boom = "c"
      end)

      it("publishes every other change; the new child stays out and the service says why", function()
        local r = update(S, batch.removed, batch.changed)
        assert.is_true(r.ok)
        assert.equals("b", r.ids)
        assert.equals(9, r.up[1].weight)
        assert.same({ "a" }, r.gone)
        assert.equals(1, r.nhook)
        assert.equals("1 child not as ZooKeeper has it (c: the filter raised: filter exploded on c)", r.degraded)
        assert.equals("b", st.changes[2].changed)
        assert.equals("a", st.changes[2].removed)
        assert.equals('service "s": filter failed on child c, keeping its last verdict: filter exploded on c',
                      warns()[1])
        local ex = require("cjson").decode(runtime.explain(S))
        local v = {}
        for _, c in ipairs(ex.children) do v[c.id] = c.verdict end
        assert.same({ b = "published", c = "filter_error", e = "published" }, v)
        -- the filter answers again: c comes in, and the service is whole again
        st.boom = nil
        r = update(S, {}, { { "c", json("10.0.0.3", 80), 5 } })
        assert.equals("c", r.ids)
        assert.is_nil(r.degraded)
      end)

      it("asks a failed child again only when its back-off is due or its own data changes", function()
        -- a filter at the heap cap costs ~200 ms: asked at every change of a busy service it held the loop
        local now = 0
        runtime.set_clock(function() return now end)
        finally(function() runtime.set_clock(function() return os.clock() * 1000 end) end)
        local r = update(S, batch.removed, batch.changed)
        local calls = st.filter_calls
        assert.equals(1000, r.reweigh)          -- the C side calls again when the back-off ends
        -- another child changes: c's filter is not asked, its verdict stands, the skip is counted
        r = update(S, {}, { { "e", json("10.0.0.5", 81), 6 } })
        assert.equals(calls + 1, st.filter_calls)
        assert.equals("e", r.ids)
        assert.equals(1, r.spared)
        assert.matches("c: the filter raised", r.degraded, 1, true)
        local ex = require("cjson").decode(runtime.explain(S))
        for _, c in ipairs(ex.children) do
          if c.id == "c" then
            assert.equals("filter_error", c.verdict)
            assert.equals(1000, c.retry_in_ms)
            assert.matches("asked again in 1.0 s (backing off), or when its data changes", c.reason, 1, true)
          end
        end
        -- due: asked again without any change; it fails again and backs off twice as long
        now = 1000
        r = update(S, {}, {})
        assert.equals(calls + 2, st.filter_calls)
        assert.equals(2000, r.reweigh)
        assert.equals(0, r.spared)
        -- its own data changes: asked at once, whatever its back-off
        st.boom = nil
        now = 1500
        r = update(S, {}, { { "c", json("10.0.0.3", 80), 7 } })
        assert.equals("c", r.ids)
        assert.is_nil(r.degraded)
        assert.is_nil(r.reweigh)                -- nothing backs off any more
      end)

      it("backs a failed child off at least ten times what its failure held the loop", function()
        -- a heap-cap hit on a loaded host: 0.3 s of CPU, 3.5 s of wall clock; retried after 1 s it held the loop
        local backoff = require "scout.backoff"
        local s = {}
        backoff.failed(s, "x", 0, 20)           -- cheap: the doubling decides (1 s)
        assert.equals(1000, backoff.left(s, "x", 0))
        backoff.failed(s, "x", 1000, 300)       -- 2 s by doubling, 3 s by its cost
        assert.equals(3000, backoff.left(s, "x", 1000))
        assert.equals(3000, backoff.next(s, 1000))
        backoff.failed(s, "x", 5000, 0)         -- the doubling goes on underneath: 4 s
        assert.equals(4000, backoff.left(s, "x", 5000))
        backoff.clear(s, "x")
        assert.is_nil(s.backoff)
      end)

      it("keeps a published child's last good endpoint while its filter raises", function()
        st.boom = "b"
        local r = update(S, batch.removed, batch.changed)
        assert.equals("c", r.ids)           -- b's new weight is not published: its verdict is unknown
        assert.same({ "a" }, r.gone)
        assert.matches("b: the filter raised", r.degraded, 1, true)
        local ex = require("cjson").decode(runtime.explain(S))
        for _, c in ipairs(ex.children) do
          if c.id == "b" then
            assert.equals("kept", c.verdict)
            assert.equals(1, c.endpoint.weight)
          end
        end
        -- removed while failing: it goes, and takes the degradation with it
        r = update(S, { "b" }, {})
        assert.same({ "b" }, r.gone)
        assert.is_nil(r.degraded)
      end)

      it("keeps a published child whose data stops decoding, and drops it once its node goes", function()
        st.boom = nil
        local r = update(S, {}, { { "b", "not json", 6 } })
        assert.equals("", r.ids)
        assert.same({}, r.gone)
        assert.equals(1, r.nerr)
        assert.matches("^1 child not as ZooKeeper has it %(b: its data does not decode", r.degraded)
        -- a new child that does not decode is simply not an endpoint: nothing is degraded by it
        r = update(S, {}, { { "b", json("10.0.0.2", 80), 7 }, { "z", "not json", 8 } })
        assert.is_nil(r.degraded)
      end)
    end)

    describe("when the update is stopped (the C side's budget, or out of memory)", function()
      local batch

      before_each(function()
        st.peek = true
        update(S, {}, { { "a", json("10.0.0.1", 80), 1 }, { "b", json("10.0.0.2", 80), 2 },
                        { "e", json("10.0.0.5", 80), 3 } })
        batch = { removed = { "a" },
                  changed = { { "b", json("10.0.0.2", 80, ',"weight":9'), 4 }, { "c", json("10.0.0.3", 80), 5 } } }
        runtime.set_boundary(function(ep) if st.stop == ep.id then error("stopped at " .. ep.id, 0) end end)
        st.stop = "c"
      end)

      after_each(function() runtime.set_boundary(nil) end)

      it("commits nothing: the re-delivered batch gives the whole diff", function()
        local r = update(S, batch.removed, batch.changed)
        assert.is_false(r.ok)
        assert.equals("stopped at c", r.err)
        assert.equals(1, #st.changes)
        st.stop = nil
        r = update(S, batch.removed, batch.changed)
        assert.is_true(r.ok)
        assert.equals("b,c", r.ids)
        assert.same({ "a" }, r.gone)
        assert.equals(2, #st.changes)
        assert.equals("b,c,e", ids(st.changes[2].endpoints))
        -- committed now: the same batch again is only re-reads, nothing to publish
        r = update(S, batch.removed, batch.changed)
        assert.equals("", r.ids)
        assert.same({}, r.gone)
      end)

      it("handles a child the stopped update had removed coming back", function()
        assert.is_false(update(S, batch.removed, batch.changed).ok)
        st.stop = nil
        local r = update(S, {}, { { "a", json("10.0.0.1", 80), 7 } })
        assert.equals("", r.ids)
        assert.same({}, r.gone)
        assert.equals(1, #st.changes)
      end)
    end)

    it("counts children the C boundary refuses, and keeps a published one at its last good state", function()
      runtime.set_boundary(function(ep) if ep.meta.bad then return "a meta value contains a NUL byte" end end)
      local r = update(S, {}, { { "a", json("10.0.0.1", 80), 1 },
                                { "n", json("10.0.0.9", 80, ',"meta":{"bad":"1"}'), 2 } })
      assert.equals("a", r.ids)
      assert.equals(1, r.nrej)
      assert.equals(0, r.nerr)
      assert.is_nil(r.degraded)           -- n never was an endpoint
      r = update(S, {}, { { "a", json("10.0.0.1", 80, ',"meta":{"bad":"1"}'), 3 } })
      assert.equals("", r.ids)
      assert.equals(1, r.nrej)
      assert.matches("a: its data is refused: a meta value contains a NUL byte", r.degraded, 1, true)
      local v = {}
      for _, c in ipairs(require("cjson").decode(runtime.explain(S)).children) do v[c.id] = c.verdict end
      assert.same({ a = "kept", n = "rejected" }, v)
      runtime.set_boundary(nil)
    end)

    it("gives on_change sorted added, removed and changed, and the service's name and path", function()
      update(S, {}, { { "m", json("10.0.0.1", 80), 1 }, { "k", json("10.0.0.2", 80), 2 },
                      { "x", json("10.0.0.3", 80), 3 }, { "b", json("10.0.0.4", 80), 4 } })
      assert.equals("b,k,m,x", st.changes[1].added)
      local r = update(S, { "x", "b" }, {
        { "z", json("10.0.0.5", 80), 5 }, { "m", json("10.0.0.1", 80, ',"weight":2'), 6 },
        { "c", json("10.0.0.6", 80), 7 }, { "k", json("10.0.0.2", 80, ',"weight":2'), 8 },
      })
      assert.equals("z,m,c,k", r.ids)        -- up is in batch order
      assert.equals("x,b", r.gone_ids)
      local c = st.changes[2]
      assert.equals("c,z", c.added)
      assert.equals("b,x", c.removed)
      assert.equals("k,m", c.changed)
      assert.equals("s", c.name)
      assert.equals("/svc/s", c.path)
      -- removed holds the endpoints as they were published
      assert.equals("10.0.0.4", c.diff.removed[1].host)
    end)

    it("builds svc.endpoints only when asked: sorted, the state after the batch", function()
      update(S, {}, { { "d", json("10.0.0.4", 80), 1 }, { "a", json("10.0.0.1", 80), 2 } })
      local svc = st.changes[1].svc
      assert.is_nil(rawget(svc, "endpoints"))
      st.peek = true
      update(S, { "d" }, { { "c", json("10.0.0.3", 80), 3 }, { "a", json("10.0.0.1", 80, ',"weight":4'), 4 },
                           { "b", json("10.0.0.2", 80), 5 } })
      local c = st.changes[2]
      assert.is_nil(c.before)
      assert.equals("a,b,c", ids(c.endpoints))
      assert.equals(4, c.endpoints[1].weight)
      assert.equals(c.endpoints, c.again)    -- built once
      assert.is_nil(c.svc.other)
      -- an endpoint untouched by the batch is there too
      update(S, {}, { { "e", json("10.0.0.5", 80), 6 } })
      assert.equals("a,b,c,e", ids(st.changes[3].endpoints))
    end)

    it("counts a raising on_change but still returns and commits the update", function()
      st.hook_boom = "hook exploded"
      local r = update(S, {}, { { "a", json("10.0.0.1", 80), 1 }, { "b", json("10.0.0.2", 80), 2 } })
      assert.is_true(r.ok)
      assert.equals("a,b", r.ids)
      assert.equals(1, r.nhook)
      assert.equals(0, r.nerr)
      assert.same({ 'service "s": on_change failed: hook exploded' }, warns())
      assert.same({ 'service "s": +2 -0 ~0' }, debugs())
      st.hook_boom = nil
      -- committed: a is published, so removing it withdraws it; re-reading b is not new
      r = update(S, { "a" }, { { "b", json("10.0.0.2", 80), 3 } })
      assert.same({ "a" }, r.gone)
      assert.equals(0, r.nhook)
      assert.equals("", st.changes[2].added)
      assert.equals("a", st.changes[2].removed)
    end)

    it("works without filter or on_change", function()
      local r = update(BARE, {}, { { "10.0.0.1:80", nil, 1 }, { "[::1]:81", "ignored", 2 } })
      assert.same({
        { id = "10.0.0.1:80", host = "10.0.0.1", port = 80, weight = 1, status = "up", meta = {}, zxid = 1 },
        { id = "[::1]:81", host = "::1", port = 81, weight = 1, status = "up", meta = {}, zxid = 2 },
      }, r.up)
      r = update(BARE, { "10.0.0.1:80", "[::1]:81" }, {})
      assert.same({ "10.0.0.1:80", "[::1]:81" }, r.gone)
      assert.equals(0, r.nhook)
    end)

    it("takes a child removed and re-created in one batch as its new version", function()
      update(S, {}, { { "a", json("10.0.0.1", 80), 1 } })
      local r = update(S, { "a" }, { { "a", json("10.0.0.1", 90), 2 } })
      assert.equals("a", r.ids)
      assert.same({}, r.gone)
      assert.equals("a", st.changes[2].changed)
    end)

    describe("with a user codec", function()
      local BAD = {
        { "{ port = 80 }", "codec returned an endpoint without host" },
        { '{ host = "", port = 80 }', "codec returned an endpoint without host" },
        { "{ host = 5, port = 80 }", "codec returned an endpoint without host" },
        { '{ host = "h", port = 0 }', "codec returned an endpoint with a bad port" },
        { '{ host = "h", port = 70000 }', "codec returned an endpoint with a bad port" },
        { '{ host = "h", port = 65536 }', "codec returned an endpoint with a bad port" },
        { '{ host = "h", port = 80.5 }', "codec returned an endpoint with a bad port" },
        { '{ host = "h", port = "80" }', "codec returned an endpoint with a bad port" },
        { '{ host = "h" }', "codec returned an endpoint with a bad port" },
        { '{ host = "h", port = 80, weight = "5" }', "codec returned a bad weight" },
        { '{ host = "h", port = 80, weight = -1 }', "codec returned a bad weight" },
        { '{ host = "h", port = 80, status = true }', "codec returned a bad status" },
        { '{ host = "h", port = 80, meta = "zone=a" }', "codec returned a bad meta" },
        { "nil", "codec returned nothing" },
        { "5", "codec returned nothing" },
        { 'nil, "my reason"', "my reason" },
        { 'error("decoder exploded", 0)', "decoder exploded" },
      }
      for _, c in ipairs(BAD) do
        it("counts a decode returning " .. c[1] .. " as an error", function()
          local r = update(USER, {}, { { "x", c[1], 1 } })
          assert.is_true(r.ok)
          assert.same({}, r.up)
          assert.equals(1, r.nerr)
          assert.same({ 'service "user": skipping child x: ' .. c[2] }, warns())
        end)
      end

      it("fills in weight 1, status up and empty meta, and accepts weight 0 and the edge ports", function()
        local r = update(USER, {}, {
          { "a", '{ host = "h", port = 1 }', 1 },
          { "b", '{ host = "h", port = 65535, weight = 0, meta = { z = "1" } }', 2 },
        })
        assert.equals(0, r.nerr)
        assert.same({
          { id = "a", host = "h", port = 1, weight = 1, status = "up", meta = {}, zxid = 1 },
          { id = "b", host = "h", port = 65535, weight = 0, status = "up", meta = { z = "1" }, zxid = 2 },
        }, r.up)
      end)

      it("does not re-publish the very endpoint table it already published", function()
        -- a codec may memoize: handing back the same table is no news, not even a re-read
        assert(runtime.load(H.write([[
local cache = {}
service "memo" {
  path = "/memo",
  codec = { decode = function(_, data)
    cache[data] = cache[data] or assert(loadstring("return " .. data))()
    return cache[data]
  end },
}
]])))
        local first = update(1, {}, { { "a", '{ host = "h", port = 1 }', 1 } })
        assert.equals("a", first.ids)
        local r = update(1, {}, { { "a", '{ host = "h", port = 1 }', 2 } })
        assert.same({}, r.up)
        assert.same({}, r.gone)
        r = update(1, {}, { { "a", '{ host = "h", port = 2 }', 3 } })
        assert.equals(2, r.up[1].port)
      end)

      it("a NaN or infinite weight from a user codec is a decode error", function()
        -- NaN passes `weight < 0`; it then never compares equal, so every re-read reports it as changed, and the
        -- C side reads weights with (int)lua_tointeger
        for _, w in ipairs({ "0/0", "math.huge" }) do
          local r = update(USER, {}, { { "x", '{ host = "h", port = 1, weight = ' .. w .. " }", 1 } })
          assert.equals(1, r.nerr, "weight " .. w .. " accepted")
        end
      end)

      it("overrides any id the codec set with the child name", function()
        local r = update(USER, {}, { { "a", '{ id = "other", host = "h", port = 1 }', 1 } })
        assert.equals("a", r.up[1].id)
      end)

      it("keeps a non-up status out without counting an error", function()
        local r = update(USER, {}, { { "a", '{ host = "h", port = 1, status = "down" }', 1 } })
        assert.same({}, r.up)
        assert.equals(0, r.nerr)
      end)
    end)
  end)
end)
