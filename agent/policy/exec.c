/*
 * exec.c -- scout.exec: a policy's shell command, off the loop (exec.h).
 *
 * Nothing here waits: the pipe is non-blocking and read as it fills (past
 * the cap the rest is read and dropped, so the command never blocks on a
 * full pipe); the exit status comes from an ev_child watcher.  The result
 * is delivered once both are in -- or at the timeout, when the command's
 * process group is killed and what was read is delivered as it stands.
 */
#define _GNU_SOURCE 1  /* pipe2 */
#include "policy/exec.h"

#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "policy/hook.h"
#include "log.h"
#include "spawn.h"

struct scout_exec_s {
    scout_execs_t *xs;
    scout_exec_t  *next;
    ev_child       child;
    ev_io          out;
    ev_timer       deadline;
    pid_t          pid;
    int            fd;          /* the pipe's read end, -1 once at EOF */
    int            cb_ref;
    int            status;
    int            exited;
    int            timed_out;
    int            truncated;
    char          *buf;
    size_t         len, max;
};

static void
unlink_exec(scout_exec_t *x)
{
    scout_exec_t **pp = &x->xs->head;

    while (*pp != NULL && *pp != x)
        pp = &(*pp)->next;
    if (*pp == x)
        *pp = x->next;
    x->xs->running--;
}

static void
drop(scout_exec_t *x)
{
    struct ev_loop *loop = x->xs->loop;

    ev_child_stop(loop, &x->child);
    ev_io_stop(loop, &x->out);
    ev_timer_stop(loop, &x->deadline);
    if (x->fd >= 0)
        close(x->fd);
    free(x->buf);
    free(x);
}

static void
finish(scout_exec_t *x)
{
    scout_execs_t *xs = x->xs;
    lua_State *L = xs->L;
    int top = lua_gettop(L), timed_out, code = -1;

    unlink_exec(x);
    if (x->exited && WIFEXITED(x->status))
        code = WEXITSTATUS(x->status);
    else if (x->exited && WIFSIGNALED(x->status))
        code = 128 + WTERMSIG(x->status);
    lua_rawgeti(L, LUA_REGISTRYINDEX, x->cb_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, x->cb_ref);
    lua_pushboolean(L, !x->timed_out && code == 0);
    lua_pushlstring(L, x->buf != NULL ? x->buf : "", x->len);
    if (code >= 0 && !x->timed_out)
        lua_pushinteger(L, code);
    else
        lua_pushnil(L);
    if (x->timed_out)
        lua_pushliteral(L, "timeout");
    else if (x->truncated)
        lua_pushliteral(L, "output truncated");
    else
        lua_pushnil(L);
    drop(x);
    if (scout_hook_pcall(L, 4, 0, *xs->budget_ms, &timed_out) != 0)
        scout_log(SCOUT_LOG_WARN, "policy", "scout.exec callback: %s",
                  lua_tostring(L, -1));
    lua_settop(L, top);
}

static void
on_out(struct ev_loop *loop, ev_io *w, int revents)
{
    scout_exec_t *x = w->data;
    char chunk[16384];
    (void)revents;

    for (;;) {
        ssize_t n = read(x->fd, chunk, sizeof(chunk));
        if (n > 0) {
            size_t take = (size_t)n;
            if (x->len + take > x->max) {
                take = x->max - x->len;
                x->truncated = 1;
            }
            if (take > 0) {
                memcpy(x->buf + x->len, chunk, take);
                x->len += take;
            }
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        break;                  /* EOF, or an error: no more output */
    }
    ev_io_stop(loop, w);
    close(x->fd);
    x->fd = -1;
    if (x->exited)
        finish(x);
}

static void
on_child(struct ev_loop *loop, ev_child *w, int revents)
{
    scout_exec_t *x = w->data;
    (void)revents;

    ev_child_stop(loop, w);
    x->status = w->rstatus;
    x->exited = 1;
    /* killed at its timeout: a grandchild may hold the pipe, do not wait */
    if (x->fd < 0 || x->timed_out)
        finish(x);
}

static void
on_deadline(struct ev_loop *loop, ev_timer *w, int revents)
{
    scout_exec_t *x = w->data;
    (void)loop;
    (void)revents;

    x->timed_out = 1;
    if (!x->exited) {
        kill(-x->pid, SIGKILL);     /* its group: what sh started too */
        return;                     /* on_child delivers */
    }
    finish(x);                      /* exited, but the pipe stays open */
}

int
scout_exec_lua(lua_State *L, scout_execs_t *xs)
{
    const char *cmd = luaL_checkstring(L, 1);
    int timeout_ms = (int)luaL_checkinteger(L, 2);
    int max = (int)luaL_checkinteger(L, 3);
    int fds[2], rc;
    scout_exec_t *x;

    luaL_checktype(L, 4, LUA_TFUNCTION);
    if (xs->loop == NULL) {
        lua_pushnil(L);
        lua_pushliteral(L, "scout.exec runs only in a running agent");
        return 2;
    }
    if (xs->running >= SCOUT_EXEC_MAX_RUNNING) {
        lua_pushnil(L);
        lua_pushfstring(L, "too many commands running (at most %d)",
                        SCOUT_EXEC_MAX_RUNNING);
        return 2;
    }
    if ((x = calloc(1, sizeof(*x))) == NULL
        || (x->buf = malloc(max > 0 ? (size_t)max : 1)) == NULL) {
        free(x);
        lua_pushnil(L);
        lua_pushliteral(L, "out of memory");
        return 2;
    }
    x->max = max > 0 ? (size_t)max : 0;
    if (pipe2(fds, O_CLOEXEC) != 0) {
        rc = errno;
        free(x->buf);
        free(x);
        lua_pushnil(L);
        lua_pushfstring(L, "pipe: %s", strerror(rc));
        return 2;
    }
    rc = scout_spawn_sh_out(cmd, fds[1], &x->pid);
    close(fds[1]);
    if (rc != 0) {
        close(fds[0]);
        free(x->buf);
        free(x);
        lua_pushnil(L);
        lua_pushfstring(L, "cannot run the command: %s", strerror(rc));
        return 2;
    }
    fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK);
    x->fd = fds[0];
    x->xs = xs;
    lua_pushvalue(L, 4);
    x->cb_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    ev_child_init(&x->child, on_child, x->pid, 0);
    x->child.data = x;
    ev_io_init(&x->out, on_out, x->fd, EV_READ);
    x->out.data = x;
    ev_timer_init(&x->deadline, on_deadline, timeout_ms / 1000.0, 0.);
    x->deadline.data = x;
    ev_child_start(xs->loop, &x->child);
    ev_io_start(xs->loop, &x->out);
    ev_timer_start(xs->loop, &x->deadline);
    x->next = xs->head;
    xs->head = x;
    xs->running++;
    lua_pushboolean(L, 1);
    return 1;
}

void
scout_exec_stop_all(scout_execs_t *xs)
{
    while (xs->head != NULL) {
        scout_exec_t *x = xs->head;
        if (!x->exited)
            kill(-x->pid, SIGKILL);
        unlink_exec(x);
        luaL_unref(xs->L, LUA_REGISTRYINDEX, x->cb_ref);
        drop(x);
    }
}
