/*
 * endpoint_lua.h -- endpoints across the C/Lua boundary: the policy's
 * runtime hands back endpoint tables that become scout_endpoint_t, and a
 * seeded list goes the other way.  Kept apart from policy.c, which is about
 * when the policy is asked, not how an endpoint is spelled on each side.
 */
#ifndef SCOUT_ENDPOINT_LUA_H
#define SCOUT_ENDPOINT_LUA_H

#include <lua.h>

#include "endpoint.h"

/* The endpoint table at idx as a new endpoint, meta sorted by key -- only
 * if it obeys endpoint.h's rule: this is the one place bytes from Lua
 * become C strings.  NULL with the reason in why (len bytes) when it does
 * not ("meta value contains a NUL byte"); NULL with why empty when out of
 * memory.  A missing status is "up", a missing weight 1. */
scout_endpoint_t *scout_endpoint_from_lua(lua_State *L, int idx, char *why,
                                          size_t len);

/* Makes (once per state) and pushes the table of the endpoint's field
 * names that the readers below look fields up with; policy.c makes it at
 * the start, outside any budgeted call, so that no read has to. */
void scout_endpoint_lua_keys(lua_State *L);

/* agent.check_endpoint(ep) for the runtime: nil when ep may cross, else
 * the reason.  The runtime asks before it commits a child, so a refused
 * child keeps its last good endpoint on both sides. */
int scout_endpoint_lua_check(lua_State *L);

/* Endpoints built at the check, for the publish to take as they are.  The
 * runtime asks agent.build_endpoint instead of check_endpoint when nothing
 * between the check and the publish can change the table (no filter, no
 * hook, no sources, a codec of scout's own): the build then costs what the
 * check did, and the publish does not read the table again.  Owned by the
 * policy; whatever the publish did not take is freed at the end of the
 * update (scout_endpoint_stash_clear), on every path. */
typedef struct {
    scout_endpoint_t **eps;
    unsigned           n, cap;
} scout_endpoint_stash_t;

/* agent.build_endpoint(ep), with the stash as upvalue 1: the check's
 * verdict (a reason, or nil), and after nil the endpoint's place k in the
 * stash -- or no k (out of memory: the publish then builds it itself).
 * agent.build_endpoint(ep, id, host, port, weight, status, meta, zxid):
 * the same from ep's fields as the caller read them (ep.id, ...): the same
 * checks in the same order, the same verdict, the same endpoint, without
 * C reading the table. */
int scout_endpoint_lua_build(lua_State *L);
/* The endpoint at place k, now the caller's; NULL when there is none (a
 * place never given, or already taken). */
scout_endpoint_t *scout_endpoint_stash_take(scout_endpoint_stash_t *st,
                                            lua_Integer k);
/* Frees what was not taken; the stash stays usable. */
void scout_endpoint_stash_clear(scout_endpoint_stash_t *st);
/* Frees the stash's own memory too (the policy's end). */
void scout_endpoint_stash_free(scout_endpoint_stash_t *st);

/* Push ep as the table a policy hook sees: id, host, port, weight, status,
 * zxid, meta.  empty_meta: the stack index of the table an endpoint without
 * meta shares (the runtime's read-only EMPTY_META, as decoded endpoints
 * have it), or 0 for a new empty table each. */
void scout_endpoint_push_lua(lua_State *L, const scout_endpoint_t *ep,
                             int empty_meta);
/* Push the set as a table id -> endpoint table (as above), made anew. */
void scout_epset_push_lua(lua_State *L, const scout_epset_t *eps,
                          int empty_meta);

#endif
