-- Cross-check with the real thing: Apache Curator's JsonInstanceSerializer (Debian libcurator-discovery-java)
-- must accept what our curator and dubbo3 encoders write, and our decoder must read what Curator writes.
-- Fails (does not skip) when java/javac or the jars are missing: scripts/setup.sh installs them. tests/java holds
-- the program and two stand-in payload classes with the real class names (Spring Cloud's and dubbo 3's
-- ZookeeperInstance).

local curator = require "scout.codec.curator"
local dubbo = require "scout.codec.dubbo"
local H = require "codec_helper"

local JARS = { "curator-x-discovery", "curator-framework", "curator-client", "jackson-databind", "jackson-core",
  "jackson-annotations", "guava", "zookeeper", "zookeeper-jute", "slf4j-api", "slf4j-nop" }
local SOURCES = { "CuratorCheck.java", "org/springframework/cloud/zookeeper/discovery/ZookeeperInstance.java",
  "org/apache/dubbo/registry/zookeeper/ZookeeperInstance.java" }

-- short runs: the client compiler only and the serial collector take about half the CPU of the defaults (javac
-- 1.2-1.4 s of user time against 2.2-2.8 s here), and the classes and the checks are the same
local JVM_OPTS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"
local JAVAC_OPTS = "-J-XX:TieredStopAtLevel=1 -J-XX:+UseSerialGC"

local function exists(p)
  local f = io.open(p, "rb")
  if f then f:close() end
  return f ~= nil
end

local function sh(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local out = p:read("*a")
  local ok = p:close()
  return ok, out
end

local missing
local cp = {}
do
  if not sh("command -v javac >/dev/null && command -v java >/dev/null") then missing = "java/javac not installed" end
  for _, j in ipairs(JARS) do
    local p = "/usr/share/java/" .. j .. ".jar"
    if not exists(p) then missing = missing or ("missing " .. p .. " (apt-get install libcurator-discovery-java)") end
    cp[#cp + 1] = p
  end
end

local tmp
local function build()
  if tmp then return tmp end
  tmp = os.tmpname()
  os.remove(tmp)
  assert(sh("mkdir -p " .. tmp))
  local srcs = {}
  for i, s in ipairs(SOURCES) do srcs[i] = "tests/java/" .. s end
  local ok, out = sh("javac " .. JAVAC_OPTS .. " -nowarn -d " .. tmp .. " -cp " .. table.concat(cp, ":") .. " "
    .. table.concat(srcs, " "))
  assert(ok, out)
  return tmp
end

local function java(args)
  local ok, out = sh("java " .. JVM_OPTS .. " -cp " .. build() .. ":" .. table.concat(cp, ":") .. " CuratorCheck "
    .. args)
  assert(ok, out)
  return out
end

-- run Curator's deserializer over several JSON documents in one JVM; returns { [i] = { field = value } }
local function curator_decode(docs)
  local dir = build()
  local files = {}
  for i, d in ipairs(docs) do
    files[i] = dir .. "/doc" .. i .. ".json"
    local f = assert(io.open(files[i], "wb"))
    f:write(d)
    f:close()
  end
  local out = java("decode " .. table.concat(files, " "))
  local res, cur = {}, nil
  for line in out:gmatch("[^\n]+") do
    local file = line:match("^== (.*)$")
    if file then
      cur = {}
      for i, f in ipairs(files) do if f == file then res[i] = cur end end
    elseif cur then
      local k, v = line:match("^([^=]+)=(.*)$")
      if k then cur[k] = v end
    end
  end
  return res
end

describe("curator codec against Apache Curator", function()
  teardown(function()
    if tmp then os.execute("rm -rf " .. tmp) end
  end)

  it("Curator reads what our encoders write, and we read what Curator writes", function()
    -- scripts/setup.sh installs java, javac and the jars: missing, the spec fails rather than skips
    assert(not missing, missing)
    local meta = { zone = "a", ["we\"ird/key"] = "x\\y" }
    local _, spring = curator.encode({ host = "10.0.0.5", port = 8080, meta = meta },
      { name = "orders", id = "i-1", now = 1628750040704 })
    local _, off = curator.encode({ host = "fe80::1", port = 1, status = "disabled" },
      { name = "orders", id = "i-2", now = 1 })
    local _, bare = curator.encode({ host = "h", port = 2 }, { name = "x", id = "i-3", payload_class = false })
    local _, d3 = dubbo.app.encode({ host = "10.0.0.6", port = 20880,
      meta = { ["dubbo.metadata.revision"] = "abc", ["dubbo.endpoints"] = '[{"port":20880,"protocol":"dubbo"}]' } },
      { name = "demo-provider", now = 5 })

    local r = curator_decode({ spring, off, bare, d3 })

    assert.same({
      name = "orders", id = "i-1", address = "10.0.0.5", port = "8080", sslPort = "null",
      registrationTimeUTC = "1628750040704", serviceType = "DYNAMIC", enabled = "true", uri = "http://10.0.0.5:8080",
      payloadClass = "org.springframework.cloud.zookeeper.discovery.ZookeeperInstance", payloadId = "i-1",
      payloadName = "orders", ["meta.zone"] = "a", ["meta.we\"ird/key"] = "x\\y",
    }, r[1])
    assert.equal("false", r[2].enabled)
    assert.equal("fe80::1", r[2].address)
    assert.equal("null", r[3].payloadClass)
    assert.equal("2", r[3].port)
    assert.equal("org.apache.dubbo.registry.zookeeper.ZookeeperInstance", r[4].payloadClass)
    assert.equal("10.0.0.6:20880", r[4].id)
    assert.equal("demo-provider", r[4].name)
    assert.equal("abc", r[4]["meta.dubbo.metadata.revision"])

    -- and the other way round
    local json = java("encode 10.1.2.3 9090")
    local ep = H.assert_endpoint(curator.decode("0e8a1c1e-7a53-4bbd-9a35-1b8a4f6b6c01", json))
    assert.same({ host = "10.1.2.3", port = 9090, weight = 1, status = "up",
      meta = { zone = "a", instance_status = "UP" } },
      { host = ep.host, port = ep.port, weight = ep.weight, status = ep.status, meta = ep.meta })
  end)
end)
