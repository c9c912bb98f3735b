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
 * waited for the CPU), with a wall-clock bound a few times larger
 * (SCOUT_HOOK_WALL_MS) for whatever stalls without burning CPU: the session
 * expires in wall time.  The mechanism: a POSIX timer on the monotonic
 * clock raises SIGALRM when a budget may be spent; the
 * handler installs a count hook (lua_sethook is async-signal-safe in LuaJIT,
 * as luajit.c's own Ctrl-C handler relies on) and the hook raises the error
 * on the next instruction -- and again on every instruction after it, so an
 * inner pcall in the hook cannot swallow it.  LuaJIT does not run hooks
 * inside compiled traces, so a budget can stop only code that stays
 * interpreted: the caller marks every function it did not write itself
 * (luaJIT_setmode(L, idx, LUAJIT_MODE_ALLFUNC | LUAJIT_MODE_OFF), or
 * jit.off(fn, true) in Lua) before running it.  The agent's VM does that
 * for all operator code (lua/scout/sandbox.lua) and runs scout's own
 * library compiled (policy.c); a trace never enters a marked function, and
 * scout's code returns to the operator's interpreted frame, where the hook
 * fires.  What no budget stops, with or without the JIT, is one long C call
 * (a pattern bomb in string.find): the hook acts when it returns.
 *
 * Memory is a budget too: scout_hook_mem_cap() wraps the VM's allocator so
 * that a call growing the Lua heap past its cap gets "not enough memory"
 * (named with the policy's file:line) instead of taking the host's RAM.
 */
#ifndef SCOUT_HOOK_H
#define SCOUT_HOOK_H

#include <lua.h>

/* A VM's budgets: the signal handler (once per process) and the calling
 * thread's timer.  Each thread that makes budgeted calls gets a timer of
 * its own, directed at it, on its first call; fini with the last VM
 * deletes the calling thread's. */
int  scout_hook_init(lua_State *L, char *err);
void scout_hook_fini(void);
/* A thread that loaded a VM and hands it over (the loader): its timer
 * goes before it ends.  Its calls are over. */
void scout_hook_thread_end(void);
/* The calling thread's calls, for another thread to stop them all (a
 * loader whose agent stops): valid until that thread ends. */
#include <pthread.h>
typedef struct scout_hook_thread_s scout_hook_thread_t;
scout_hook_thread_t *scout_hook_thread_self(void);
void scout_hook_thread_cancel(scout_hook_thread_t *h, pthread_t t);

struct ev_loop;

/* The loop the calls run on: before it waits, a budget timer still running
 * is stopped, so that it never wakes an idle agent.  Once; fini undoes it.
 * Without it (tests, `scout check`) the timer stays armed after a call. */
void scout_hook_attach(struct ev_loop *loop);

/* lua_pcall(L, nargs, nresults, 0) within budget_ms.  Returns 0 or the
 * lua_pcall error code with the message on the stack; *timed_out is set
 * when the budget stopped it. */
int scout_hook_pcall(lua_State *L, int nargs, int nresults, int budget_ms,
                     int *timed_out);

/* The wall-clock bound of a budget_ms CPU budget: generous, since a loaded
 * host delays honest work too (a 10,000-child first listing must not be
 * stopped for waiting on the CPU), yet well inside a session timeout for
 * hooks' usual budgets.  Nothing a policy may call waits; this is for
 * what stalls anyway. */
#define SCOUT_HOOK_WALL_MS(budget_ms) (4 * (budget_ms) + 1000)

/* The same with an explicit wall-clock budget (loading a policy: the whole
 * load must fit well inside the session timeout). */
int scout_hook_pcall_wall(lua_State *L, int nargs, int nresults,
                          int budget_ms, int wall_ms, int *timed_out);

/* Cap the Lua heap of L at cap bytes (0: no cap) from now on.  The returned
 * handle must outlive L: free it after lua_close(). */
typedef struct scout_hook_mem_s scout_hook_mem_t;
scout_hook_mem_t *scout_hook_mem_cap(lua_State *L, size_t cap);
void   scout_hook_mem_set(scout_hook_mem_t *m, size_t cap);
size_t scout_hook_mem_cap_of(const scout_hook_mem_t *m);
void   scout_hook_mem_free(scout_hook_mem_t *m);
/* Inside a call that met its heap cap: pushes "file:line: not enough
 * memory: ..." naming where, for a pcall of the runtime's own that caught
 * LuaJIT's bare message (one child's filter); pushes nil otherwise. */
int    scout_hook_lua_memory_error(lua_State *L);

#endif
