/*
 * test_json_flat.c -- agent.json_flat (policy/json_flat.c) against cjson:
 * whatever it decodes must be the table cjson makes of the same text, keys,
 * values, types and pairs() order alike, and whatever it declines (nil) is
 * left to cjson, so no input may decode differently from before.  The usual
 * shapes must take the fast path, or the point of it is lost.
 */
#include <lauxlib.h>
#include <lualib.h>
#include <string.h>

#include "policy/json_flat.h"
#include "testing.h"

/* cases: { text, fast } -- fast: json_flat must answer; nil: either way
 * (cjson decides); false: json_flat must decline. */
static const char *check_chunk =
    "local flat, cjson = ...\n"
    "local function order(t)\n"
    "  local ks = {}\n"
    "  for k, v in pairs(t) do ks[#ks + 1] = tostring(k) .. '=' .. type(v) end\n"
    "  return table.concat(ks, ',')\n"
    "end\n"
    "local function same(a, b)\n"
    "  if type(a) ~= type(b) then return false end\n"
    "  if type(a) ~= 'table' then return a == b end\n"
    "  if order(a) ~= order(b) then return false end\n"
    "  for k, v in pairs(a) do if not same(v, b[k]) then return false end end\n"
    "  return true\n"
    "end\n"
    "local big = '{\"h\":\"' .. string.rep('x', 5000) .. '\",\"p\":1}'\n"
    "local cases = {\n"
    "  { '{\"host\":\"10.0.0.1\",\"port\":20880,\"weight\":1}', true },\n"
    "  { ' {\\n \"host\" : \"h.example\" ,\\t\"port\":80 }\\r\\n', true },\n"
    "  { '{\"host\":\"a\",\"port\":1,\"meta\":{\"zone\":\"a\",\"n\":5,\"e\":\"\"}}', true },\n"
    "  { '{\"meta\":{},\"host\":\"a\"}', true },\n"
    "  { '{}', true }, { '{\"\":\"\"}', true }, { big, true },\n"
    "  { '{\"a\":1,\"a\":2,\"b\":\"x\",\"a\":3}', true },\n"
    "  { '{\"a\":0}', true }, { '{\"a\":999999999999999}', true },\n"
    "  { '{\"a\":1,\"b\":2,\"c\":3,\"d\":4,\"e\":5,\"f\":6,\"g\":7,\"h\":8,\"i\":9}', true },\n"
    "  { '{\"a\":9999999999999999}', false }, { '{\"a\":01}', false },\n"
    "  { '{\"a\":1.5}', false }, { '{\"a\":1e3}', false }, { '{\"a\":1E3}', false },\n"
    "  { '{\"a\":-1}', false }, { '{\"a\":-0}', false }, { '{\"a\":+1}', false },\n"
    "  { '{\"a\":true}', false }, { '{\"a\":false}', false }, { '{\"a\":null}', false },\n"
    "  { '{\"a\":[1]}', false }, { '{\"a\":{\"b\":{}}}', false },\n"
    "  { '{\"a\":\"x\\\\ny\"}', false }, { '{\"a\":\"\\\\u00e9\"}', false },\n"
    "  { '{\"a\":\"\\195\\169\"}', false }, { '{\"a\":\"\\127\"}', false },\n"
    "  { '{\"a\":\"\\t\"}', false }, { '{\"a\\0\":1}', false },\n"
    "  { '{\"a\":1} x', false }, { '{\"a\":1}}', false }, { '{\"a\":1,}', false },\n"
    "  { '{\"a\" 1}', false }, { '{\"a\":1 \"b\":2}', false }, { '{\"a\":\"x', false },\n"
    "  { '{\"a\":', false }, { '{\"a\"', false }, { '{', false }, { '', false },\n"
    "  { '[1]', false }, { '\"s\"', false }, { '5', false }, { 'null', false },\n"
    "  { '{a:1}', false }, { \"{'a':1}\", false }, { '{\"a\":0x10}', false },\n"
    "  { '{\"a\":NaN}', false }, { '{\"a\":Infinity}', false }, { '{\"a\":1}\\0', false },\n"
    "}\n"
    "local bad, fast = {}, 0\n"
    "for i, c in ipairs(cases) do\n"
    "  local a, b = flat(c[1]), cjson.decode(c[1])\n"
    "  if a ~= nil then fast = fast + 1 end\n"
    "  if a ~= nil and not same(a, b) then bad[#bad + 1] = i .. ': not what cjson makes' end\n"
    "  if c[2] == true and a == nil then bad[#bad + 1] = i .. ': declined' end\n"
    "  if c[2] == false and a ~= nil then bad[#bad + 1] = i .. ': decoded' end\n"
    "end\n"
    "if flat(5) ~= nil or flat(nil) ~= nil then bad[#bad + 1] = 'a non-string decoded' end\n"
    "return table.concat(bad, '; '), fast, #cases\n";

static void
test_same_as_cjson(void)
{
    lua_State *L = luaL_newstate();
    int top;

    luaL_openlibs(L);
    CHECK(luaL_loadstring(L, check_chunk) == 0, "%s", lua_tostring(L, -1));
    lua_pushcfunction(L, scout_json_flat_lua);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "cjson.safe");
    CHECK(lua_pcall(L, 1, 1, 0) == 0, "%s", lua_tostring(L, -1));
    /* the codecs' instance: strict numbers (scout.util.endpoint) */
    lua_getfield(L, -1, "new");
    CHECK(lua_pcall(L, 0, 1, 0) == 0);
    lua_getfield(L, -1, "decode_invalid_numbers");
    lua_pushboolean(L, 0);
    CHECK(lua_pcall(L, 1, 0, 0) == 0, "%s", lua_tostring(L, -1));
    lua_remove(L, -2);
    CHECK(lua_pcall(L, 2, 3, 0) == 0, "%s", lua_tostring(L, -1));
    top = lua_gettop(L);
    CHECK(strcmp(lua_tostring(L, top - 2), "") == 0, "%s",
          lua_tostring(L, top - 2));
    CHECK(lua_tointeger(L, top - 1) == 11, "%d of %d cases decoded here",
          (int)lua_tointeger(L, top - 1), (int)lua_tointeger(L, top));
    lua_close(L);
}

int
main(void)
{
    RUN(test_same_as_cjson());
    return test_summary();
}
