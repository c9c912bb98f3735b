/*
 * test_hostport.c -- the plain codec's needs_data, answered in C.
 *
 * The agent no longer calls into Lua for each new child of a plain service:
 * scout_endpoint_is_hostport applies split_hostport's rule itself (a child
 * named host:port needs no data).  If the two ever disagree, a child is
 * decoded without the data it needs ("no data") or has data read that the
 * codec ignores.  So this runs the real lua/scout/codec/plain.lua beside it
 * and compares their answers on odd names and on many random ones built
 * from the bytes the rule looks at.  Run from the repository's root (as
 * tests/run.sh does), or with SCOUT_LUA_DIR set.
 */
#include <lauxlib.h>
#include <lualib.h>
#include <stdlib.h>
#include <string.h>

#include "endpoint.h"
#include "testing.h"

static lua_State *L;

/* plain.needs_data(name): 1, 0, or -1 when the call failed. */
static int
lua_needs_data(const char *name)
{
    int r;

    lua_getglobal(L, "plain_needs_data");
    lua_pushstring(L, name);
    if (lua_pcall(L, 1, 1, 0) != 0) {
        fprintf(stderr, "plain.needs_data: %s\n", lua_tostring(L, -1));
        lua_pop(L, 1);
        return -1;
    }
    r = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return r;
}

static int disagreements, addresses;

static void
same(const char *name)
{
    int want = lua_needs_data(name), got = !scout_endpoint_is_hostport(name);

    addresses += want == 0;
    if (want != got && disagreements++ < 10)
        fprintf(stderr, "name \"%.80s\" (%zu bytes): Lua says %d, C %d\n",
                name, strlen(name), want, got);
}

static void
test_odd_names(void)
{
    static const char *names[] = {
        "", ":", "::", "a", "a:", ":80", "a:80", "a:0", "a:1", "a:65535",
        "a:65536", "a:99999", "a:00080", "a:000000", "a:123456", "a:8a",
        "a:+80", "a:-1", "a: 80", "a :80", "a:80 ", "a:b:80", "10.0.0.1:80",
        "127.0.0.1:10000", "ep-1", "id-0000000001", "a_b.c-d%e:1",
        "a/b:1", "a\xc3\xbc:1", "a\xff:1", "[::1]:80", "[::1]", "[::1]:",
        "[::1]:0", "[1]:80", "[]:80", "[:]:80", "[::1]:80:1", "[::1]x:80",
        "[[::1]]:80", "[::1]]:80", "[fe80::1%eth0]:80", "[::1%]:65535",
        "[a b:1]:80", "]:80", "[:80", "[::1:80", "x[::1]:80", "[::1]:8a",
        "[::1]::80", "[::ffff:10.0.0.1]:443", "a:6553", "a:65530",
        "a:70000", "localhost:8080", "LOCALHOST:8080", "a.:1", ".:1",
        "%:1", "-:1", "_:1", ":::", "[:::]:1", "[]", "[", "]",
    };
    char big[600];

    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
        same(names[i]);
    /* the host's length limit, 255 bytes, both forms */
    for (int n = 253; n <= 257; n++) {
        memset(big, 'h', (size_t)n);
        strcpy(big + n, ":80");
        same(big);
        big[0] = '[';
        memset(big + 1, ':', (size_t)n);
        strcpy(big + 1 + n, "]:80");
        same(big);
    }
    CHECK(disagreements == 0, "%d names answered differently",
          disagreements);
    /* and the rule is not trivially one answer */
    CHECK(scout_endpoint_is_hostport("10.0.0.1:80"));
    CHECK(scout_endpoint_is_hostport("[::1]:80"));
    CHECK(!scout_endpoint_is_hostport("ep-1"));
}

/* n random bytes of set into p; returns p + n. */
static char *
fill(char *p, const char *set, int n, unsigned *seed)
{
    size_t len = strlen(set);

    for (int k = 0; k < n; k++)
        *p++ = set[(size_t)rand_r(seed) % len];
    return p;
}

/* Random names from the bytes the rule turns on, long and short: any
 * bytes, and names shaped like host:port or [v6]:port that are one byte or
 * one digit away from being one. */
static void
test_random_names(void)
{
    char name[600];
    unsigned seed = 14;

    disagreements = addresses = 0;
    for (int i = 0; i < 40000; i++) {
        int n = rand_r(&seed) % (i % 50 == 0 ? 280 : 14);
        char *p = name;

        switch (i % 4) {
        case 0:
            p = fill(p, "::[]]0189a.%-_ /\xff\xc3", n, &seed);
            break;
        case 1:
            p = fill(p, "aZ09.-_%:", n, &seed);
            p += sprintf(p, ":%d", rand_r(&seed) % 70000);
            break;
        case 2:
            *p++ = '[';
            p = fill(p, "::::af09%]", n, &seed);
            p += sprintf(p, "]:%d", rand_r(&seed) % 70000);
            break;
        default:
            p = fill(p, "ab.1[", n, &seed);
            *p++ = ':';
            p = fill(p, "0123456789:", rand_r(&seed) % 7, &seed);
            break;
        }
        *p = '\0';
        same(name);
    }
    CHECK(disagreements == 0, "%d of 40000 answered differently",
          disagreements);
    /* both answers, often: the comparison is not of one side only */
    CHECK(addresses > 5000 && addresses < 35000, "%d addresses", addresses);
}

int
main(void)
{
    const char *dir = getenv("SCOUT_LUA_DIR");
    char setup[1024];

    L = luaL_newstate();
    luaL_openlibs(L);
    snprintf(setup, sizeof(setup),
             "package.path = '%s/?.lua;%s/?/init.lua;' .. package.path\n"
             "plain_needs_data = require('scout.codec.plain').needs_data\n",
             dir ? dir : "lua", dir ? dir : "lua");
    if (luaL_dostring(L, setup) != 0) {
        fprintf(stderr, "%s\n", lua_tostring(L, -1));
        CHECK(0, "cannot load the plain codec");
        return test_summary();
    }
    RUN(test_odd_names());
    RUN(test_random_names());
    lua_close(L);
    return test_summary();
}
