-- luacheck config: Lua modules are LuaJIT (Lua 5.1 + extensions) and never set globals.
std = "luajit"
max_line_length = 120
files["tests/lua"] = { std = "+busted" }
files["bench"] = { globals = { "ngx" } }
files["lua/resty"] = { read_globals = { "ngx" } }

-- Policy files run in the DSL's environment (lua/scout/policy.lua).
local policy_files = {
  read_globals = { "zookeeper", "api", "agent", "service", "cache", "register", "render", "shm" },
  globals = { "on_session" },
  unused_args = false,
}
files["examples"] = policy_files
files["bench/propagation/policy.lua"] = policy_files
files["bench/propagation/policy_api.lua"] = policy_files
files["bench/storm/policy.lua"] = policy_files
