/*
 * test_endpoint_rule.c -- the one rule bytes obey before they cross from
 * Lua into C (endpoint.h): what it refuses, what it lets through, that the
 * Lua boundary applies it whole (never cutting a string at a NUL), that a
 * snapshot read back is held to it, and that a snapshot write leaves out a
 * service it cannot hold instead of failing for every service.
 */
#include <lauxlib.h>
#include <lualib.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include "endpoint.h"
#include "policy/endpoint_lua.h"
#include "publish/snapshot.h"
#include "scout.h"
#include "testing.h"
#include "test_endpoints.h"

#define T(s) scout_endpoint_check_text((s), sizeof(s) - 1)

static void
test_text(void)
{
    char *big = malloc(SCOUT_ENDPOINT_MAX_STR + 1);

    CHECK(T("") == NULL);
    CHECK(T("plain ascii") == NULL);
    CHECK(T("z\xc3\xbcrich \xe2\x82\xac \xf0\x9f\x98\x80") == NULL);
    CHECK(T("a\0b") != NULL && strstr(T("a\0b"), "NUL") != NULL);
    CHECK(T("\xff") != NULL && strstr(T("\xff"), "UTF-8") != NULL);
    CHECK(T("\xc0\xaf") != NULL);               /* overlong '/' */
    CHECK(T("\xe0\x80\xaf") != NULL);           /* overlong, 3 bytes */
    CHECK(T("\xed\xa0\x80") != NULL);           /* a surrogate */
    CHECK(T("\xf4\x90\x80\x80") != NULL);       /* past U+10FFFF */
    CHECK(T("\xe2\x82") != NULL);               /* cut short */
    CHECK(T("\xc3\x28") != NULL);               /* bad continuation */
    memset(big, 'x', SCOUT_ENDPOINT_MAX_STR + 1);
    CHECK(scout_endpoint_check_text(big, SCOUT_ENDPOINT_MAX_STR) == NULL);
    CHECK(scout_endpoint_check_text(big, SCOUT_ENDPOINT_MAX_STR + 1) != NULL);
    free(big);
}

static int
ok(scout_endpoint_t *ep, const char *want)
{
    char why[SCOUT_ERR_LEN] = "";
    int rc = scout_endpoint_check(ep, why, sizeof(why));

    scout_endpoint_free(ep);
    if (want == NULL)
        return rc == SCOUT_OK;
    if (rc == SCOUT_OK || strstr(why, want) == NULL) {
        fprintf(stderr, "wanted \"%s\", got rc %d \"%s\"\n", want, rc, why);
        return 0;
    }
    return 1;
}

static void
test_check(void)
{
    CHECK(ok(mk_ep("a", "10.0.0.1", 1, 0, "up", 1, 0), NULL));
    CHECK(ok(mk_ep("a", "fe80::1%eth0", 65535, 2147483647, "down", 1, 1, "k",
                   "v"), NULL));
    CHECK(ok(mk_ep("a", "svc-1.example_x", 80, 1, "starting", 1, 0), NULL));
    CHECK(ok(mk_ep("", "h", 1, 1, "up", 1, 0), "empty id"));
    CHECK(ok(mk_ep("a", "", 1, 1, "up", 1, 0), "is not a host name"));
    CHECK(ok(mk_ep("a", "not a host; rm -rf /", 1, 1, "up", 1, 0),
             "is not a host name"));
    CHECK(ok(mk_ep("a", "h", 0, 1, "up", 1, 0), "port 0 is not in 1-65535"));
    CHECK(ok(mk_ep("a", "h", 70000, 1, "up", 1, 0), "port 70000"));
    CHECK(ok(mk_ep("a", "h", -1, 1, "up", 1, 0), "port -1"));
    CHECK(ok(mk_ep("a", "h", 1, -7, "up", 1, 0), "weight -7 is negative"));
    CHECK(ok(mk_ep("a", "h", 1, 1, "UP!!", 1, 0), "status \"UP!!\""));
    CHECK(ok(mk_ep("a", "h", 1, 1, "", 1, 0), "status"));
    CHECK(ok(mk_ep("a", "h", 1, 1, "up", 1, 2, "b", "1", "a", "2"),
             "meta keys not sorted and unique at \"a\""));
    CHECK(ok(mk_ep("a", "h", 1, 1, "up", 1, 2, "a", "1", "a", "2"),
             "not sorted and unique"));
    CHECK(ok(mk_ep("a", "h", 1, 1, "up", 1, 1, "k", "\xff"),
             "a meta value is not valid UTF-8"));
}

/* The rule as the Lua boundary applies it: bytes as Lua holds them. */
static scout_endpoint_t *
from_lua(lua_State *L, const char *mkey, size_t mklen, const char *mval,
         size_t mvlen, char *why)
{
    scout_endpoint_t *ep;

    lua_createtable(L, 0, 6);
    lua_pushliteral(L, "id-1");
    lua_setfield(L, -2, "id");
    lua_pushliteral(L, "10.0.0.1");
    lua_setfield(L, -2, "host");
    lua_pushinteger(L, 80);
    lua_setfield(L, -2, "port");
    lua_newtable(L);
    if (mkey != NULL) {
        lua_pushlstring(L, mkey, mklen);
        if (mval != NULL)
            lua_pushlstring(L, mval, mvlen);
        else
            lua_pushboolean(L, 1);
        lua_settable(L, -3);
    }
    lua_setfield(L, -2, "meta");
    ep = scout_endpoint_from_lua(L, -1, why, SCOUT_ERR_LEN);
    lua_pop(L, 1);
    return ep;
}

static void
test_lua_boundary(void)
{
    lua_State *L = luaL_newstate();
    char why[SCOUT_ERR_LEN];
    scout_endpoint_t *ep;
    int top = lua_gettop(L);

    ep = from_lua(L, "zone", 4, "a", 1, why);
    CHECK(ep != NULL && ep->nmeta == 1 && strcmp(ep->meta[0].value, "a") == 0
          && strcmp(ep->status, "up") == 0 && ep->weight == 1);
    scout_endpoint_free(ep);
    /* a NUL inside a key or a value refuses the endpoint: never cut */
    CHECK(from_lua(L, "a\0x", 3, "1", 1, why) == NULL);
    CHECK_ERR(why, "a meta key contains a NUL byte");
    CHECK(from_lua(L, "k", 1, "before\0after", 12, why) == NULL);
    CHECK_ERR(why, "a meta value contains a NUL byte");
    CHECK(from_lua(L, "k", 1, "\xfe", 1, why) == NULL);
    CHECK_ERR(why, "not valid UTF-8");
    CHECK(from_lua(L, "k", 1, NULL, 0, why) == NULL);
    CHECK_ERR(why, "a meta value is a boolean, not a string");
    {
        char *big = malloc(SCOUT_ENDPOINT_MAX_STR + 1);
        memset(big, 'x', SCOUT_ENDPOINT_MAX_STR + 1);
        CHECK(from_lua(L, "k", 1, big, SCOUT_ENDPOINT_MAX_STR + 1, why)
              == NULL);
        CHECK_ERR(why, "over the 65536-byte limit");
        free(big);
    }
    CHECK(lua_gettop(L) == top);

    /* agent.check_endpoint: the same answer, for the runtime */
    lua_pushcfunction(L, scout_endpoint_lua_check);
    lua_createtable(L, 0, 3);
    lua_pushliteral(L, "x");
    lua_setfield(L, -2, "id");
    lua_pushliteral(L, "h");
    lua_setfield(L, -2, "host");
    lua_pushinteger(L, 70000);
    lua_setfield(L, -2, "port");
    CHECK(lua_pcall(L, 1, 1, 0) == 0 && lua_isstring(L, -1));
    CHECK_ERR(lua_tostring(L, -1), "port 70000 is not an integer in 1..65535");
    lua_close(L);
}

/* agent.check_endpoint (the runtime asks it of every decoded child) does
 * not build the endpoint; its verdict must stay scout_endpoint_from_lua's,
 * word for word, for each rule: a child it let through would be refused
 * only at publish time, one it refused would be a lost endpoint. */
static const char *verdict_cases =
        "local big = string.rep('x', 65536)\n"
        "local full = {}\n"        /* 1,048,574 bytes of meta: with the 4 of */
        "for c in ('abcdefghijklmno'):gmatch('.') do full[c] = big end\n"
        "full.z = string.rep('y', 65518)\n"    /* id, host, status, over */
        "local function ep(t) t.id = t.id or 'a'; t.host = t.host or 'h';\n"
        "  t.port = t.port or 80; return t end\n"
        "return { ep{}, ep{ meta = { zone = 'a', n = 5 }, weight = 0 },\n"
        "  ep{ status = 'drain' }, ep{ host = 'fe80::1%eth0' },\n"
        "  ep{ id = '' }, ep{ host = '' }, ep{ host = 'a b' },\n"
        "  ep{ host = 'h\\195\\169' }, ep{ host = string.rep('h', 256) },\n"
        "  ep{ host = 'h\\0x' }, ep{ host = 5 }, ep{ host = true },\n"
        "  ep{ status = 'UP' }, ep{ status = '' }, ep{ status = 7 },\n"
        "  ep{ status = string.rep('s', 33) }, ep{ port = 0 },\n"
        "  ep{ port = 1.5 }, ep{ port = 65536 }, ep{ port = '80' },\n"
        "  ep{ weight = -1 }, ep{ weight = 2^31 }, ep{ weight = 'x' },\n"
        "  ep{ meta = 5 }, ep{ meta = { k = true } }, ep{ meta = { 'x' } },\n"
        "  ep{ meta = { k = '\\255' } }, ep{ meta = full },\n"
        "  ep{ id = 'i', meta = full }, 'not a table' }\n";

static void
test_lua_check_same_verdict(void)
{
    lua_State *L = luaL_newstate();
    int n, agree = 0, refused = 0;

    luaL_openlibs(L);
    CHECK(luaL_dostring(L, verdict_cases) == 0, "%s", lua_tostring(L, -1));
    n = (int)lua_objlen(L, -1);
    for (int i = 1; i <= n; i++) {
        char why[SCOUT_ERR_LEN];
        const char *said;
        scout_endpoint_t *ep;

        lua_rawgeti(L, -1, i);
        ep = scout_endpoint_from_lua(L, -1, why, sizeof(why));
        lua_pushcfunction(L, scout_endpoint_lua_check);
        lua_pushvalue(L, -2);
        CHECK(lua_pcall(L, 1, 1, 0) == 0);
        said = lua_tostring(L, -1);
        if (ep != NULL ? said == NULL : said != NULL && !strcmp(said, why))
            agree++;
        else
            fprintf(stderr, "case %d: from_lua \"%s\", check \"%s\"\n", i,
                    ep != NULL ? "ok" : why, said ? said : "ok");
        refused += ep == NULL;
        scout_endpoint_free(ep);
        lua_pop(L, 2);
    }
    CHECK(n == 30 && agree == n, "%d of %d cases agree", agree, n);
    /* the first 4 pass, and a number for host (it becomes "5") */
    CHECK(refused == 25, "%d refused", refused);
    lua_close(L);
}

/* A dubbo-like endpoint: many meta entries, numbers among the values, held
 * in the endpoint's one allocation (ASan sees any write past it), sorted,
 * every byte as Lua had it, and the same JSON as before. */
static void
test_lua_meta_inline(void)
{
    lua_State *L = luaL_newstate();
    char why[SCOUT_ERR_LEN], key[32], val[64];
    scout_endpoint_t *ep;
    scout_epset_t set;
    const char *json;
    size_t len;
    int ok_all = 1;

    lua_createtable(L, 0, 6);
    lua_pushliteral(L, "dubbo%3A%2F%2F10.0.0.1");
    lua_setfield(L, -2, "id");
    lua_pushliteral(L, "10.0.0.1");
    lua_setfield(L, -2, "host");
    lua_pushinteger(L, 20880);
    lua_setfield(L, -2, "port");
    lua_newtable(L);
    for (int i = 0; i < 40; i++) {
        snprintf(key, sizeof(key), "k%02d", 39 - i);
        if (i % 3 == 0) {
            lua_pushinteger(L, 1000 + i);       /* a number: becomes "10NN" */
        } else {
            snprintf(val, sizeof(val), "value-%d-%.*s", i, i, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
            lua_pushstring(L, val);
        }
        lua_setfield(L, -2, key);
    }
    lua_pushliteral(L, "");                     /* empty strings too */
    lua_setfield(L, -2, "empty");
    lua_setfield(L, -2, "meta");
    ep = scout_endpoint_from_lua(L, -1, why, SCOUT_ERR_LEN);
    CHECK(ep != NULL, "refused: %s", why);
    if (ep == NULL) {
        lua_close(L);
        return;
    }
    CHECK(ep->meta_inline && ep->nmeta == 41, "nmeta %d", ep->nmeta);
    CHECK(strcmp(ep->meta[0].key, "empty") == 0
          && ep->meta[0].value[0] == '\0');
    for (int i = 0; i < 40; i++) {
        int src = 39 - i;       /* k<i> was set at loop index 39 - i */
        const scout_meta_t *m = &ep->meta[i + 1];

        snprintf(key, sizeof(key), "k%02d", i);
        if (src % 3 == 0)
            snprintf(val, sizeof(val), "%d", 1000 + src);
        else
            snprintf(val, sizeof(val), "value-%d-%.*s", src, src, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
        ok_all &= strcmp(m->key, key) == 0 && strcmp(m->value, val) == 0;
    }
    CHECK(ok_all, "meta not sorted or not as Lua had it");
    CHECK(strcmp(ep->id, "dubbo%3A%2F%2F10.0.0.1") == 0
          && strcmp(ep->host, "10.0.0.1") == 0 && strcmp(ep->status, "up") == 0);
    /* the table is left as it was: the number stays a number */
    lua_getfield(L, -1, "meta");
    lua_getfield(L, -1, "k39");
    CHECK(lua_type(L, -1) == LUA_TNUMBER);
    lua_pop(L, 3);
    scout_epset_init(&set);
    scout_epset_put(&set, ep);
    json = scout_epset_json(&set, &len);
    CHECK(json != NULL && strstr(json, "\"meta\":{\"empty\":\"\",\"k00\":\"1039\",\"k01\":\"value-38-x") != NULL,
          "json %s", json ? json : "(null)");
    scout_epset_free(&set);
    lua_close(L);
}

/* One published endpoint per znode watched (100k at 10,000 x 10): a usual
 * one ("ep-1", an IPv4 host, "up", no meta) is one malloc chunk of 96
 * bytes (88 usable), not 112 (80 bytes of fields: 1.6 MB at 10,000 x 10).
 * Under ASan the usable size is the request itself, which must fit as
 * well. */
static void
test_endpoint_footprint(void)
{
    scout_endpoint_t *ep = scout_endpoint_new("ep-1", 4, "10.0.12.34", 10,
                                              "up", 2);

    CHECK(ep != NULL);
    CHECK(malloc_usable_size(ep) <= 88, "%zu usable bytes",
          malloc_usable_size(ep));
    CHECK(strcmp(ep->id, "ep-1") == 0 && strcmp(ep->host, "10.0.12.34") == 0
          && strcmp(ep->status, "up") == 0);
    scout_endpoint_free(ep);
}

/* A list asked for is held once: taken, the set keeps no copy, and the
 * next take renders what the set holds then. */
static void
test_json_take(void)
{
    scout_epset_t set;
    size_t len = 0;
    char *j1, *j2;

    scout_epset_init(&set);
    scout_epset_put(&set, mk_ep("b", "10.0.0.2", 81, 1, "up", 7, 0));
    scout_epset_put(&set, mk_ep("a", "10.0.0.1", 80, 1, "up", 5, 0));
    j1 = scout_epset_json_take(&set, &len);
    CHECK(j1 != NULL && len == strlen(j1));
    CHECK(set.json == NULL, "the set kept its copy");
    CHECK(j1 != NULL && strstr(j1, "\"id\":\"a\"") < strstr(j1, "\"id\":\"b\""),
          "not sorted by id: %s", j1 ? j1 : "(null)");
    scout_epset_del(&set, "a");
    j2 = scout_epset_json_take(&set, &len);
    CHECK(j2 != NULL && strstr(j2, "\"id\":\"a\"") == NULL
          && strstr(j2, "\"id\":\"b\"") != NULL, "got %s", j2 ? j2 : "(null)");
    free(j1);
    free(j2);
    scout_epset_free(&set);
}

/* agent.build_endpoint: the check's verdict, and the endpoint the publish
 * takes instead of reading the table again (policy_update.c): it must be
 * the one scout_endpoint_from_lua makes, field for field, or the agent
 * publishes what the policy never said.  A place is taken once; what is not
 * taken is freed by the clear (the ASan build would see a leak). */
static void
test_lua_build_same_endpoint(void)
{
    scout_endpoint_stash_t st = { 0 };
    lua_State *L = luaL_newstate();
    int n, agree = 0, built = 0, last = 0;

    luaL_openlibs(L);
    CHECK(luaL_dostring(L, verdict_cases) == 0, "%s", lua_tostring(L, -1));
    n = (int)lua_objlen(L, -1);
    for (int i = 1; i <= n; i++) {
        char why[SCOUT_ERR_LEN];
        const char *said;
        scout_endpoint_t *ep, *got = NULL;

        lua_rawgeti(L, -1, i);
        if (lua_istable(L, -1)) {       /* the zxid as the runtime sets it */
            lua_pushinteger(L, 1000 + i);
            lua_setfield(L, -2, "zxid");
        }
        ep = scout_endpoint_from_lua(L, -1, why, sizeof(why));
        lua_pushlightuserdata(L, &st);
        lua_pushcclosure(L, scout_endpoint_lua_build, 1);
        lua_pushvalue(L, -2);
        CHECK(lua_pcall(L, 1, 2, 0) == 0);
        said = lua_tostring(L, -2);
        if (lua_isnumber(L, -1)) {
            last = (int)lua_tointeger(L, -1);
            got = scout_endpoint_stash_take(&st, last);
            CHECK(scout_endpoint_stash_take(&st, last) == NULL);
            built++;
        }
        if (ep != NULL ? said == NULL && got != NULL && ep_equal(ep, got)
                       : said != NULL && !strcmp(said, why) && got == NULL)
            agree++;
        else
            fprintf(stderr, "case %d: from_lua \"%s\", build \"%s\"\n", i,
                    ep != NULL ? "ok" : why, said ? said : "ok");
        scout_endpoint_free(ep);
        scout_endpoint_free(got);
        lua_pop(L, 3);
    }
    CHECK(agree == n && built == 5, "%d of %d agree, %d built", agree, n,
          built);
    CHECK(scout_endpoint_stash_take(&st, 0) == NULL
          && scout_endpoint_stash_take(&st, last + 1) == NULL);
    scout_endpoint_stash_clear(&st);
    /* the runtime's way (a builtin codec's plain table): its fields read in
     * Lua and passed after it; the same verdict, the same endpoint, and
     * the table itself not read (a proxy's __index would be) */
    CHECK(luaL_dostring(L, "return function(b, t) local n = 0\n"
                           "  local p = setmetatable({}, { __index = function(_, k) n = n + 1; return t[k] end })\n"
                           "  local why, k = b(p, t.id, t.host, t.port, t.weight, t.status, t.meta, t.zxid)\n"
                           "  return why, k, n end") == 0, "%s", lua_tostring(L, -1));
    agree = 0;
    built = 0;
    for (int i = 1; i <= n; i++) {
        char why[SCOUT_ERR_LEN];
        const char *said;
        scout_endpoint_t *ep, *got = NULL;

        lua_rawgeti(L, -2, i);
        if (!lua_istable(L, -1)) {
            agree++;
            lua_pop(L, 1);
            continue;
        }
        lua_pushinteger(L, 1000 + i);
        lua_setfield(L, -2, "zxid");
        ep = scout_endpoint_from_lua(L, -1, why, sizeof(why));
        lua_pushvalue(L, -2);
        lua_pushlightuserdata(L, &st);
        lua_pushcclosure(L, scout_endpoint_lua_build, 1);
        lua_pushvalue(L, -3);
        CHECK(lua_pcall(L, 2, 3, 0) == 0, "%s", lua_tostring(L, -1));
        said = lua_tostring(L, -3);
        CHECK(lua_tointeger(L, -1) == 0, "case %d: the table read %d times",
              i, (int)lua_tointeger(L, -1));
        if (lua_isnumber(L, -2)) {
            got = scout_endpoint_stash_take(&st, lua_tointeger(L, -2));
            built++;
        }
        if (ep != NULL ? said == NULL && got != NULL && ep_equal(ep, got)
                       : said != NULL && !strcmp(said, why) && got == NULL)
            agree++;
        else
            fprintf(stderr, "case %d: from_lua \"%s\", build from the "
                    "fields \"%s\"\n", i, ep != NULL ? "ok" : why,
                    said ? said : "ok");
        scout_endpoint_free(ep);
        scout_endpoint_free(got);
        lua_pop(L, 4);
    }
    CHECK(agree == n && built == 5, "fields: %d of %d agree, %d built",
          agree, n, built);
    lua_pop(L, 1);
    scout_endpoint_stash_clear(&st);
    /* one left in the stash for the clear */
    lua_rawgeti(L, -1, 1);
    lua_pushlightuserdata(L, &st);
    lua_pushcclosure(L, scout_endpoint_lua_build, 1);
    lua_pushvalue(L, -2);
    CHECK(lua_pcall(L, 1, 2, 0) == 0 && lua_tointeger(L, -1) == 1);
    scout_endpoint_stash_clear(&st);
    CHECK(st.n == 0 && scout_endpoint_stash_take(&st, 1) == NULL);
    scout_endpoint_stash_free(&st);
    lua_close(L);
}

static void
test_snapshot(void)
{
    scout_epset_t good, bad;
    scout_snapshot_service_t svcs[2];
    char err[SCOUT_ERR_LEN], *buf;
    size_t len;
    int left_out = -1;
    scout_snapshot_t *s;

    scout_epset_init(&good);
    scout_epset_init(&bad);
    scout_epset_put(&good, mk_ep("a", "10.0.0.1", 80, 1, "up", 1, 0));
    scout_epset_put(&good, mk_ep("b", "10.0.0.2", 70000, -7, "UP!!", 2, 0));
    scout_epset_put(&bad, mk_ep("x", "h", 1, 1, "up", 1, 2, "b", "1", "a",
                                "2"));
    svcs[0] = (scout_snapshot_service_t){ "good", "/g", 1, 0, 0, &good };
    svcs[1] = (scout_snapshot_service_t){ "bad", "/b", 1, 0, 0, &bad };

    /* one service the format cannot hold does not stop the others */
    CHECK(scout_snapshot_encode("e", 0, svcs, 2, &buf, &len, err)
          == SCOUT_ERROR);
    CHECK(scout_snapshot_encode_each("e", 0, svcs, 2, &buf, &len, &left_out,
                                     err) == SCOUT_OK);
    CHECK(left_out == 1);
    CHECK_ERR(err, "service \"bad\" endpoint x: meta keys not sorted");
    s = scout_snapshot_parse(buf, len, "mem", err);
    CHECK(s != NULL && scout_snapshot_count(s) == 1
          && scout_snapshot_find(s, "good") == 0);
    free(buf);

    /* read back, the file's endpoints are held to the rule */
    if (s != NULL) {
        scout_epset_t got;
        char why[SCOUT_ERR_LEN] = "";

        scout_epset_init(&got);
        scout_snapshot_take(s, 0, &got);
        CHECK(got.n == 2);
        CHECK(scout_epset_drop_invalid(&got, why, sizeof(why)) == 1);
        CHECK(got.n == 1);
        CHECK_ERR(why, "endpoint b: status \"UP!!\"");
        scout_epset_free(&got);
        scout_snapshot_free(s);
    }
    scout_epset_free(&good);
    scout_epset_free(&bad);
}

/* The set's JSON, joined from each endpoint's own object, is byte for byte
 * jansson's dump of the whole array (what the API always answered), and
 * follows every put and del. */
static void
expect_json(scout_epset_t *set, const char *want)
{
    size_t len = 0;
    const char *got = scout_epset_json(set, &len);

    CHECK(got != NULL && strcmp(got, want) == 0 && len == strlen(want),
          "got %s", got ? got : "(null)");
}

static void
test_set_json(void)
{
    scout_epset_t set;

    scout_epset_init(&set);
    expect_json(&set, "[]");
    scout_epset_put(&set, mk_ep("b", "10.0.0.2", 81, 5, "up", 7, 2,
                                "k\"q", "line\nbreak\t\x01", "z", "\xc3\xa9/"));
    scout_epset_put(&set, mk_ep("a", "h.example", 80, 100, "down", 1, 0));
    expect_json(&set, "[{\"id\":\"a\",\"host\":\"h.example\",\"port\":80,"
                "\"weight\":100,\"status\":\"down\",\"zxid\":1,\"meta\":{}},"
                "{\"id\":\"b\",\"host\":\"10.0.0.2\",\"port\":81,\"weight\":5,"
                "\"status\":\"up\",\"zxid\":7,\"meta\":{\"k\\\"q\":"
                "\"line\\nbreak\\t\\u0001\",\"z\":\"\xc3\xa9/\"}}]");
    scout_epset_put(&set, mk_ep("a", "h.example", 80, 3, "up", 9, 0));
    scout_epset_del(&set, "b");
    expect_json(&set, "[{\"id\":\"a\",\"host\":\"h.example\",\"port\":80,"
                "\"weight\":3,\"status\":\"up\",\"zxid\":9,\"meta\":{}}]");
    scout_epset_free(&set);
}

/* The boundary reads an endpoint's fields as Lua code would, through its
 * metatable: a user codec may return a proxy (fields under __index), and
 * its endpoint is the one published, not refused as "host is a nil".  The
 * field names are kept per Lua state: two states, used in turn, each read
 * their own tables. */
static const char *proxy_case =
        "local base = { id = 'p-1', host = '10.0.0.9', port = 8080,\n"
        "  weight = 3, status = 'drain', zxid = 42, meta = { zone = 'b' } }\n"
        "return setmetatable({}, { __index = base })\n";

static void
test_lua_proxy_endpoint(void)
{
    lua_State *a = luaL_newstate(), *b = luaL_newstate();
    char why[SCOUT_ERR_LEN];

    luaL_openlibs(a);
    luaL_openlibs(b);
    for (int round = 0; round < 2; round++) {
        lua_State *L = round == 0 ? a : b;
        scout_endpoint_t *ep;
        int top;

        CHECK(luaL_dostring(L, proxy_case) == 0, "%s", lua_tostring(L, -1));
        top = lua_gettop(L);
        ep = scout_endpoint_from_lua(L, -1, why, sizeof(why));
        CHECK(ep != NULL, "%s", why);
        if (ep != NULL) {
            CHECK(strcmp(ep->id, "p-1") == 0 && strcmp(ep->host, "10.0.0.9") == 0
                  && ep->port == 8080 && ep->weight == 3
                  && strcmp(ep->status, "drain") == 0 && ep->zxid == 42
                  && ep->nmeta == 1 && strcmp(ep->meta[0].key, "zone") == 0
                  && strcmp(ep->meta[0].value, "b") == 0);
            scout_endpoint_free(ep);
        }
        CHECK(lua_gettop(L) == top);
        /* agent.check_endpoint lets it through as well */
        lua_pushcfunction(L, scout_endpoint_lua_check);
        lua_pushvalue(L, -2);
        CHECK(lua_pcall(L, 1, 1, 0) == 0 && lua_isnil(L, -1), "%s",
              lua_tostring(L, -1));
        lua_settop(L, 0);
    }
    /* the first state again, after the second made its own names */
    CHECK(luaL_dostring(a, proxy_case) == 0);
    {
        scout_endpoint_t *ep = scout_endpoint_from_lua(a, -1, why, sizeof(why));

        CHECK(ep != NULL && strcmp(ep->host, "10.0.0.9") == 0, "%s", why);
        scout_endpoint_free(ep);
    }
    lua_close(a);
    lua_close(b);
}

int
main(void)
{
    RUN(test_text());
    RUN(test_check());
    RUN(test_lua_boundary());
    RUN(test_lua_check_same_verdict());
    RUN(test_lua_build_same_endpoint());
    RUN(test_lua_proxy_endpoint());
    RUN(test_snapshot());
    RUN(test_set_json());
    RUN(test_json_take());
    RUN(test_lua_meta_inline());
    RUN(test_endpoint_footprint());
    return test_summary();
}
