/*
 * hook.h -- calls into Lua that cannot run away.
 *
 * Policy hooks are operators' code: a filter that loops forever or a decoder
 * that allocates without bound must not stop discovery.  Every call into Lua
 * goes through scout_hook_pcall(), which runs it under a time budget and
 * turns an overrun into an ordinary Lua error ("... exceeded its 50 ms
 * budget") that the caller logs and counts while the last good state stands.
 *
 * The budget is CPU time (a loaded host must not stop a hook that merely
 * waited for the CPU).  The mechanism: a POSIX timer on the process CPU
 * clock raises SIGALRM when the budget is spent; the
 * handler installs a count hook (lua_sethook is async-signal-safe in LuaJIT,
 * as luajit.c's own Ctrl-C handler relies on) and the hook raises the error
 * on the next instruction -- and again on every instruction after it, so an
 * inner pcall in the hook cannot swallow it.  LuaJIT does not run hooks
 * inside compiled traces, so the agent's VM runs with the JIT off
 * (scout_hook_init() does that); the OpenResty side keeps its JIT.
 */
#ifndef SCOUT_HOOK_H
#define SCOUT_HOOK_H

#include <lua.h>

int  scout_hook_init(lua_State *L, char *err);
void scout_hook_fini(void);

/* lua_pcall(L, nargs, nresults, 0) within budget_ms.  Returns 0 or the
 * lua_pcall error code with the message on the stack; *timed_out is set
 * when the budget stopped it. */
int scout_hook_pcall(lua_State *L, int nargs, int nresults, int budget_ms,
                     int *timed_out);

#endif
