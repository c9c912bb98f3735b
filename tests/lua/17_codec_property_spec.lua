-- Property tests for every decoder: 100k seeded random / truncated / mutated inputs each, plus every prefix of
-- every sample. A decoder must never raise and must return either nil and a short string, or an endpoint that
-- passes the shared validator with id == the child name. Then encode -> decode round-trips for random endpoints.

local H = require "codec_helper"
local codec = require "scout.codec"
local dubbo = require "scout.codec.dubbo"
local url = require "scout.util.url"
local b64 = require "scout.util.base64"

local N = 100000

local pcall = pcall
local type = type
local format = string.format

local function nerve_name(json)
  local enc = b64.encode_url(json)
  return "base64_" .. #enc .. "_" .. enc .. "_0000000001"
end

-- name samples, data samples and opts per codec
local CASES = {
  plain = {
    names = { "10.0.0.1:8080", "[::1]:80", "node-1", "[fe80::1%eth0]:443" },
    data = { "10.0.0.2:9000", '{"host":"h","port":8080,"weight":5,"meta":{"a":"b","n":1},"status":"up"}', "" },
    opts = { false },
  },
  dubbo = {
    names = {
      url.encode_java("dubbo://172.20.3.201:20880/org.apache.dubbo.demo.DemoService?anyhost=true&application=demo"
        .. "&interface=org.apache.dubbo.demo.DemoService&methods=sayHello,sayHelloAsync&side=provider"
        .. "&timestamp=1617000000000&warmup=600000&weight=100"),
      url.encode_java("dubbo://fe80::1%en0:20880/I?enabled=false&group=g&version=1"),
      url.encode_java("empty://0.0.0.0/I?category=providers"),
    },
    data = { "", "x" },
    opts = { false, { now = 1617000300000 } },
  },
  dubbo3 = {
    names = { "10.0.0.5:20880" },
    data = {
      '{"name":"demo","id":"10.0.0.5:20880","address":"10.0.0.5","port":20880,"sslPort":null,"payload":{"@class":'
        .. '"org.apache.dubbo.registry.zookeeper.ZookeeperInstance","id":"10.0.0.5:20880","name":"demo","metadata":'
        .. '{"dubbo.endpoints":"[{\\"port\\":20880,\\"protocol\\":\\"dubbo\\"}]"}},"registrationTimeUTC":1,'
        .. '"serviceType":"DYNAMIC","uriSpec":null}',
    },
    opts = { false, { protocol = "dubbo" } },
  },
  rpcx = {
    names = { "tcp@127.0.0.1:8972", "quic@[::1]:8972", "unix@/tmp/x.sock" },
    data = { "calls=12.50&connections=3.00&group=online&weight=7", "tps=0&state=inactive&group=a&group=b", "" },
    opts = { false },
  },
  curator = {
    names = { "53565860-2cdd-493f-ac9d-f7d4a546cbf6" },
    data = {
      '{"name":"waiter-service","id":"53565860-2cdd-493f-ac9d-f7d4a546cbf6","address":"10.20.14.30","port":52930,'
        .. '"sslPort":null,"payload":{"@class":"org.springframework.cloud.zookeeper.discovery.ZookeeperInstance",'
        .. '"id":"waiter-service-1","name":"waiter-service","metadata":{"zone":"a","instance_status":"UP"}},'
        .. '"registrationTimeUTC":1628750040704,"serviceType":"DYNAMIC","uriSpec":{"parts":[{"value":"scheme",'
        .. '"variable":true}]},"enabled":true}',
    },
    opts = { false, { ssl = true } },
  },
  serverset = {
    names = { "member_0000000007", "lock_1" },
    data = {
      '{"serviceEndpoint":{"host":"h1","port":31943},"additionalEndpoints":{"http":{"host":"h1","port":31943}},'
        .. '"status":"ALIVE","shard":0,"metadata":{"dc":"west"}}',
    },
    opts = { false, { endpoint = "http" } },
  },
  nerve = {
    names = { "i-abc_0000000001", nerve_name('{"host":"1.2.3.4","port":"3000","labels":{"az":"a"}}') },
    data = { '{"host":"1.2.3.4","port":3000,"name":"i-abc","weight":2,"haproxy_server_options":"backup",'
      .. '"labels":{"az":"us-east-1a"}}' },
    opts = { false },
  },
}

local TOKENS = {}
for _, t in ipairs(H.JSON_TOKENS) do TOKENS[#TOKENS + 1] = t end
for _, t in ipairs(H.URL_TOKENS) do TOKENS[#TOKENS + 1] = t end

-- run one decode; returns a failure description, or nil and whether an endpoint came back
local function check(c, name, data, opts)
  local ok, nd = pcall(c.needs_data, name, opts)
  if not ok then return "needs_data raised: " .. tostring(nd) end
  if type(nd) ~= "boolean" then return "needs_data returned " .. type(nd) end
  local ok2, ep, err = pcall(c.decode, name, data, opts)
  if not ok2 then return "decode raised: " .. tostring(ep) end
  if ep == nil then
    if type(err) ~= "string" or err == "" or #err > 80 then return "bad error value: " .. tostring(err) end
    return nil, false
  end
  local good, why = H.check_endpoint(ep, name)
  if not good then return "invalid endpoint (" .. why .. ")" end
  if err ~= nil then return "endpoint returned with an error" end
  return nil, true
end

local function show(s)
  if type(s) ~= "string" then return tostring(s) end
  return format("%q", s):gsub("\r", "\\r"):gsub("%c", function(ch) return format("\\%d", ch:byte()) end)
end

describe("codec properties", function()
  for _, cname in ipairs(codec.names()) do
    local case = CASES[cname]

    it(cname .. ": every prefix of every sample", function()
      local c = assert(codec.get(cname))
      for _, opts in ipairs(case.opts) do
        opts = opts or nil
        for _, n in ipairs(case.names) do
          for _, d in ipairs(case.data) do
            for i = 0, #n do
              local f = check(c, n:sub(1, i), d, opts)
              assert(not f, f and (f .. " for name " .. show(n:sub(1, i))))
            end
            for i = 0, #d do
              local f = check(c, n, d:sub(1, i), opts)
              assert(not f, f and (f .. " for data " .. show(d:sub(1, i))))
            end
          end
        end
      end
    end)

    it(cname .. ": " .. N .. " random and mutated inputs", function()
      local c = assert(codec.get(cname))
      local r = H.rng(#cname * 7919 + 17)
      local decoded = 0
      for _ = 1, N do
        local k = r.int(1, 4)
        local name, data
        if k == 1 then          -- garbage name, good data
          name, data = H.garbage(r, case.names, TOKENS), r.pick(case.data)
        elseif k == 2 then      -- good name, garbage data
          name, data = r.pick(case.names), H.garbage(r, case.data, TOKENS)
        elseif k == 3 then      -- both garbage
          name, data = H.garbage(r, case.names, TOKENS), H.garbage(r, case.data, TOKENS)
        else                    -- no data at all
          name, data = H.garbage(r, case.names, TOKENS), nil
        end
        local opts = r.pick(case.opts) or nil
        local f, got = check(c, name, data, opts)
        if f then
          error(f .. "\n name=" .. show(name) .. "\n data=" .. show(data), 0)
        end
        if got then decoded = decoded + 1 end
      end
      -- the generator must reach the success path too, or the property says little
      assert.is_true(decoded > N / 100, cname .. " decoded only " .. decoded)
    end)
  end

  it("dubbo configurators: random and mutated names never raise", function()
    local samples = {
      url.encode_java("override://0.0.0.0/I?category=configurators&dynamic=false&enabled=true&disabled=true"),
      url.encode_java("override://10.0.0.1:20880/I?category=configurators&weight=200&~application=x&providers=a"),
    }
    local r = H.rng(99)
    local eps = { assert(dubbo.decode(url.encode_java("dubbo://10.0.0.1:20880/I?application=x&side=provider"))) }
    local rules = {}
    for _ = 1, N do
      local n = H.garbage(r, samples, TOKENS)
      local ok, rule, err = pcall(dubbo.decode_configurator, n)
      assert(ok, rule)
      assert(rule ~= nil or type(err) == "string", "no error for " .. show(n))
      if rule and #rules < 200 then rules[#rules + 1] = rule end
    end
    assert.is_true(#rules > 50)
    local out = dubbo.apply_configurators(eps, rules)
    H.assert_endpoint(out[1])
  end)

  describe("encode -> decode round-trips", function()
    local function same_core(ep, back)
      assert.equal(ep.host, back.host)
      assert.equal(ep.port, back.port)
    end

    it("dubbo", function()
      local r = H.rng(201)
      for i = 1, 3000 do
        local ep = H.random_endpoint(r)
        ep.weight = r.int(0, 500)
        ep.status = r.pick({ "up", "disabled" })
        local n = dubbo.encode(ep, { interface = "com.acme.S" .. i, now = 1617000000000 })
        assert.is_false(dubbo.needs_data(n))
        local back = H.assert_endpoint(dubbo.decode(n, nil, { now = 1617000000000 + 700000 }), n)
        same_core(ep, back)
        assert.equal(ep.weight, back.weight)
        assert.equal(ep.status, back.status)
        for k, v in pairs(ep.meta) do assert.equal(v, back.meta[k]) end
        assert.equal(n, (dubbo.encode(back)))   -- a decoded endpoint re-encodes to the same name
      end
    end)

    it("dubbo3", function()
      local r = H.rng(202)
      for _ = 1, 2000 do
        local ep = H.random_endpoint(r, { nasty = true, weight = 100 })
        local n, data = dubbo.app.encode(ep, { name = "app" })
        local back = H.assert_endpoint(dubbo.app.decode(n, data), n)
        assert.same({ ep.host, ep.port, ep.weight, ep.meta }, { back.host, back.port, back.weight, back.meta })
      end
    end)

    it("plain, rpcx, curator, serverset and nerve keep host and port", function()
      local r = H.rng(203)
      for _, cname in ipairs({ "plain", "rpcx", "curator", "serverset", "nerve" }) do
        local c = assert(codec.get(cname))
        for i = 1, 2000 do
          local ep = H.random_endpoint(r, { nasty = true })
          local n, data, flags = c.encode(ep, { name = "svc", id = "id-" .. i })
          if flags and flags.sequential then n = n .. format("%010d", i) end
          local back = H.assert_endpoint(c.decode(n, data), n)
          same_core(ep, back)
        end
      end
    end)
  end)
end)
