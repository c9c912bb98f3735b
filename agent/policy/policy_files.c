/*
 * policy_files.c -- which files a loaded policy read as Lua (policy.h,
 * scout_policy_files): what the disk snapshot's side file fingerprints, so
 * that an edited policy or module never gets the early answers of the old
 * one (publish/snapside.h).  Apart from policy.c, which is about calls into
 * the VM; this only reads package.loaded after a load.
 */
#include "policy/policy.h"

#include <lauxlib.h>
#include <stdlib.h>
#include <string.h>

#include "policy/policy_int.h"
#include "scout.h"

static int
by_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int
scout_policy_files(scout_policy_t *p, const char *file, char ***files,
                   int *n, char *err)
{
    lua_State *L = scout_policy_L(p);
    int top = lua_gettop(L), k = 0, cap = 16;
    size_t bytes = strlen(file) + 1;
    char **v, *out;

    /* package.loaded and package.searchpath, from the registry: the
     * policy's sandbox hides `package`, the VM keeps it */
    if ((v = malloc((size_t)cap * sizeof(*v))) == NULL)
        return scout_seterr(err, "out of memory");
    v[k++] = (char *)file;
    lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED");
    lua_getfield(L, -1, "package");
    lua_pushnil(L);
    while (lua_istable(L, -2) && lua_next(L, -3) != 0) {
        lua_pop(L, 1);
        if (lua_type(L, -1) != LUA_TSTRING)
            continue;
        lua_getfield(L, -2, "searchpath");
        lua_pushvalue(L, -2);
        lua_getfield(L, -4, "path");
        if (lua_pcall(L, 2, 1, 0) == 0 && lua_isstring(L, -1)) {
            if (k == cap) {
                char **w = realloc(v, (size_t)(cap *= 2) * sizeof(*v));

                if (w == NULL) {
                    free(v);
                    lua_settop(L, top);
                    return scout_seterr(err, "out of memory");
                }
                v = w;
            }
            v[k] = (char *)lua_tostring(L, -1);
            bytes += strlen(v[k]) + 1;
            if ((v[k] = strdup(v[k])) == NULL) {
                lua_settop(L, top);
                for (int i = 1; i < k; i++)
                    free(v[i]);
                free(v);
                return scout_seterr(err, "out of memory");
            }
            k++;
        }
        lua_pop(L, 1);
    }
    lua_settop(L, top);
    if (k > 1)
        qsort(v + 1, (size_t)(k - 1), sizeof(*v), by_str);
    /* one block: the pointers, then the strings */
    if ((*files = malloc((size_t)k * sizeof(char *) + bytes)) == NULL) {
        for (int i = 1; i < k; i++)
            free(v[i]);
        free(v);
        return scout_seterr(err, "out of memory");
    }
    out = (char *)(*files + k);
    for (int i = 0; i < k; i++) {
        size_t len = strlen(v[i]) + 1;

        memcpy(out, v[i], len);
        (*files)[i] = out;
        out += len;
        if (i > 0)
            free(v[i]);
    }
    free(v);
    *n = k;
    return SCOUT_OK;
}

