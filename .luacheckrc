-- luacheck config: Lua modules are LuaJIT (Lua 5.1 + extensions) and never set globals.
std = "luajit"
max_line_length = 120
files["tests/lua"] = { std = "+busted" }
files["bench"] = { globals = { "ngx" } }
files["lua/resty"] = { read_globals = { "ngx" } }
