-- docs/policy.md against the loader: every key scout.policy accepts has a row in the reference, and every row
-- names a key the loader accepts. The page marks each block's table with `<!-- schema: NAME -->` (NAME is a block,
-- "policy" for the top level, or "block.key" for a nested table); the first column of each row is the key in
-- backticks. The checker is a function so the spec can also show that it catches a drift on either side.

local policy = require "scout.policy"

local open = io.open
local sort = table.sort
local format = string.format

-- docs/policy.md, found from this file's own path (busted runs from the repository root, but need not).
local function doc_path()
  local src = debug.getinfo(1, "S").source:gsub("^@", "")
  local dir = src:match("^(.*)/[^/]*$") or "."
  return dir .. "/../../docs/policy.md"
end

local function read(path)
  local f = assert(open(path, "r"))
  local text = f:read("*a")
  f:close()
  return text
end

-- { [table name] = { [key] = line number } }, and a list of problems in the page's own shape.
local function parse(text)
  local tables, problems = {}, {}
  local current, in_rows, n = nil, false, 0
  for line in (text .. "\n"):gmatch("([^\n]*)\n") do
    n = n + 1
    local name = line:match("^<!%-%- schema: ([%w_.]+) %-%->$")
    if name then
      if tables[name] then problems[#problems + 1] = format("line %d: a second table for %s", n, name) end
      tables[name] = {}
      current, in_rows = name, false
    elseif current then
      if line:match("^|") then
        if line:match("^|%s*%-") then
          in_rows = true                    -- the separator: rows follow
        elseif in_rows then
          local key = line:match("^|%s*`([^`]+)`%s*|")
          if not key then
            problems[#problems + 1] = format("line %d: a row of %s without a `key` first", n, current)
          elseif tables[current][key] then
            problems[#problems + 1] = format("line %d: %s.%s twice", n, current, key)
          else
            tables[current][key] = n
          end
        end
      elseif line:match("%S") or in_rows then
        if not in_rows then problems[#problems + 1] = format("line %d: no table after the %s marker", n, current) end
        current = nil
      end
    end
  end
  return tables, problems
end

-- What the loader accepts, by the names the page uses.
local function accepted(schema)
  local out = { policy = {} }
  for name, keys in pairs(schema.sections) do
    out[name] = keys
    out.policy[name] = true
  end
  for name in pairs(schema.hooks) do out.policy[name] = true end
  for name, keys in pairs(schema) do
    if name ~= "sections" and name ~= "hooks" then
      out[name] = keys
      if not name:find(".", 1, true) then out.policy[name] = true end
    end
  end
  return out
end

-- Every difference between the schema and the page, sorted: an empty list means they agree.
local function drift(schema, text)
  local doc, out = parse(text)
  local want = accepted(schema)
  for name, keys in pairs(want) do
    if not doc[name] then
      out[#out + 1] = format("%s: no <!-- schema: %s --> table in docs/policy.md", name, name)
    else
      for key in pairs(keys) do
        if not doc[name][key] then
          out[#out + 1] = format("%s.%s: accepted by the loader, missing from docs/policy.md", name, key)
        end
      end
    end
  end
  for name, keys in pairs(doc) do
    if not want[name] then
      out[#out + 1] = format("%s: documented, but the loader has no such block", name)
    else
      for key, line in pairs(keys) do
        if not want[name][key] then
          out[#out + 1] = format("%s.%s (docs/policy.md:%d): documented, but the loader does not accept it",
                                 name, key, line)
        end
      end
    end
  end
  sort(out)
  return out
end

-- A copy of the schema with one more key in one block (tables are copied: the loader's own stay untouched).
local function with_extra(schema, where, key)
  local copy = {}
  for name, keys in pairs(schema) do
    local t = {}
    for k, v in pairs(keys) do t[k] = v end
    copy[name] = t
  end
  if copy.sections[where] then
    local t = {}
    for k, v in pairs(copy.sections[where]) do t[k] = v end
    t[key] = true
    copy.sections[where] = t
  else
    copy[where][key] = true
  end
  return copy
end

describe("docs/policy.md", function()
  local text = read(doc_path())

  it("documents every key the loader accepts, and no other", function()
    assert.same({}, drift(policy.SCHEMA, text))
  end)

  it("has a table for every block and nested table of the schema", function()
    local doc = parse(text)
    for _, name in ipairs({ "policy", "zookeeper", "zookeeper.auth", "api", "cache", "shm", "agent", "service",
                            "service.protect", "register", "register.endpoint", "register.check", "render",
                            "render.wait" }) do
      assert.is_table(doc[name], name)
      assert.is_not_nil(next(doc[name]), name .. " has no rows")
    end
  end)

  it("has examples that load as they are written", function()
    -- what the examples reach outside the file: an environment variable and a template next to the policy
    local ffi = require "ffi"
    ffi.cdef [[ int setenv(const char *name, const char *value, int overwrite); ]]
    ffi.C.setenv("ZK_CRED", "scout:s3cret", 1)
    local dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -m 700 " .. dir) == 0)
    local tpl = dir .. "/haproxy.tpl"
    assert(open(tpl, "w")):close()
    local n = 0
    for block in text:gmatch("\n```lua\n(.-)\n```") do
      n = n + 1
      local file = dir .. "/policy.lua"
      local f = assert(open(file, "w"))
      f:write(block, "\n")
      f:close()
      local p, err = policy.load(file)
      assert(p, "example " .. n .. " of docs/policy.md does not load: " .. tostring(err) .. "\n" .. block)
      assert.same({}, p.warnings)
      os.remove(file)
    end
    os.remove(tpl)
    os.remove(dir)
    assert.is_true(n >= 8, "found only " .. n .. " lua examples")
  end)

  describe("the check itself", function()
    it("fails for a key the loader accepts and the page lacks", function()
      assert.same({ "service.weight_by: accepted by the loader, missing from docs/policy.md" },
                  drift(with_extra(policy.SCHEMA, "service", "weight_by"), text))
      assert.same({ "agent.pid_file: accepted by the loader, missing from docs/policy.md" },
                  drift(with_extra(policy.SCHEMA, "agent", "pid_file"), text))
      assert.same({ "register.check.grpc: accepted by the loader, missing from docs/policy.md" },
                  drift(with_extra(policy.SCHEMA, "register.check", "grpc"), text))
    end)

    it("fails for a row the loader does not accept", function()
      local fake = text:gsub("(\n| `dir` |[^\n]*\n)", "%1| `ttl` | duration | | | |\n", 1)
      local out = drift(policy.SCHEMA, fake)
      assert.equals(1, #out)
      assert.matches("^cache%.ttl %(docs/policy%.md:%d+%): documented, but the loader does not accept it$", out[1])
    end)

    it("fails for a block with no table, and a table for no block", function()
      local fake = text:gsub("<!%-%- schema: shm %-%->", "<!-- schema: shmem -->")
      assert.same({ "shm: no <!-- schema: shm --> table in docs/policy.md",
                    "shmem: documented, but the loader has no such block" }, drift(policy.SCHEMA, fake))
    end)

    it("fails for a marker without a table and for a row without a key", function()
      local fake = text:gsub("(<!%-%- schema: api %-%->\n)", "%1\nSome words.\n")
      assert.is_true(#drift(policy.SCHEMA, fake) > 0)
      fake = text:gsub("| `listen` |", "| listen |")
      local out = drift(policy.SCHEMA, fake)
      assert.equals(2, #out)
      assert.equals("api.listen: accepted by the loader, missing from docs/policy.md", out[1])
      assert.matches("^line %d+: a row of api without a `key` first$", out[2])
    end)
  end)
end)
