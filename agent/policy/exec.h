/*
 * exec.h -- scout.exec for policies: a shell command run off the loop.
 *
 * os.execute and io.popen wait for the command on the loop; a policy that
 * needs a command's answer gets it here instead: the command runs through
 * spawn.h, its output is read by an ev_io (capped), a timer kills it (its
 * whole process group) at its timeout, and the policy's callback is called
 * later, on the loop, under the hook budget like any hook.
 */
#ifndef SCOUT_EXEC_H
#define SCOUT_EXEC_H

#include <ev.h>
#include <lua.h>

typedef struct scout_exec_s scout_exec_t;

/* The commands one VM has running; embedded in its owner. */
typedef struct {
    struct ev_loop *loop;       /* NULL: not running in an agent */
    lua_State      *L;
    const int      *budget_ms;  /* the owner's hook budget      */
    scout_exec_t   *head;
    int             running;
} scout_execs_t;

#define SCOUT_EXEC_MAX_RUNNING 16

/* Lua: exec(cmd, timeout_ms, max_output, callback) -> true | nil, err.
 * callback(ok, output, code, err): ok when the command exited 0; code is
 * its exit status (128+N for signal N), err "timeout" when it was killed
 * at its timeout, "output truncated" when output passed max_output. */
int  scout_exec_lua(lua_State *L, scout_execs_t *xs);
/* Kill and forget every running command (the VM is going away). */
void scout_exec_stop_all(scout_execs_t *xs);

#endif
