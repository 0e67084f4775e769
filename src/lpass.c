/* One loop pass over a Lua map, and the protected dispatch of events to channels,
 * as Python asyncore's poll/poll2/read/write/readwrite do it. */
#include <errno.h>
#include <poll.h>
#include <string.h>

#include "lcore.h"

int as_message_handler(lua_State *L)
{
    luaL_traceback(L, L, NULL, 1);
    lua_setiuservalue(L, STATE, UV_TRACEBACK);
    lua_settop(L, 1);
    return 1;
}

int as_ends_with(lua_State *L, int idx, const char *suffix)
{
    if (lua_type(L, idx) != LUA_TSTRING)
        return 0;
    size_t len, n = strlen(suffix);
    const char *s = lua_tolstring(L, idx, &len);
    return len >= n && memcmp(s + len - n, suffix, n) == 0;
}

/* ExitNow and the standalone interpreter's Ctrl-C error leave the loop. */
int as_must_propagate(lua_State *L, int err)
{
    lua_getiuservalue(L, STATE, UV_EXITNOW);
    int exit_now = lua_rawequal(L, -1, err);
    lua_pop(L, 1);
    return exit_now || as_ends_with(L, err, "interrupted!");
}

/* An error raised for a failed call whose errno means the peer is gone. */
static int is_disconnect_error(lua_State *L, int err)
{
    static const char *const names[] = {"(ECONNRESET)", "(ENOTCONN)", "(ESHUTDOWN)",
                                        "(ECONNABORTED)", "(EPIPE)", "(EBADF)", NULL};
    for (int i = 0; names[i] != NULL; i++)
        if (as_ends_with(L, err, names[i]))
            return 1;
    return 0;
}

/* The error at the top of the stack, raised by a handler of obj: propagate it,
 * or pass it on to handle_close or handle_error as Python does.  Errors raised
 * by those two propagate out of the loop, as in Python. */
void as_route_error(lua_State *L, int obj, int disconnect_closes)
{
    int err = lua_gettop(L);
    if (as_must_propagate(L, err))
        lua_error(L);
    if (disconnect_closes && is_disconnect_error(L, err)) {
        as_call_method(L, obj, "handle_close");
        return;
    }
    if (lua_getfield(L, obj, "handle_error") == LUA_TNIL)
        luaL_error(L, "handle_error: the channel has no handle_error method, to take: %s",
                   luaL_tolstring(L, err, NULL));
    lua_pushvalue(L, obj);
    lua_pushvalue(L, err);
    lua_getiuservalue(L, STATE, UV_TRACEBACK);
    lua_call(L, 3, 0);
}

/* Bodies run under lua_pcall: 1 channel, 2 events (AS_* bits), 3 map or nil, 4 fd. */

static int still_current(lua_State *L)
{
    if (lua_isnil(L, 3))
        return 1;
    lua_rawgeti(L, 3, lua_tointeger(L, 4));
    int same = lua_rawequal(L, -1, 1);
    lua_pop(L, 1);
    return same;
}

static int read_body(lua_State *L)
{
    as_call_method(L, 1, "handle_read_event");
    return 0;
}

static int write_body(lua_State *L)
{
    as_call_method(L, 1, "handle_write_event");
    return 0;
}

static int expt_body(lua_State *L)
{
    as_call_method(L, 1, "handle_expt_event");
    return 0;
}

/* A channel removed by one of its own handlers gets no further event.  A hang-up
 * that comes with readable data is left to the reads: they drain the data and
 * the EOF read calls handle_close, so no byte is lost and poll behaves as select
 * (Python's poll2 closes at once and drops what is unread). */
static int readwrite_body(lua_State *L)
{
    int events = (int)lua_tointeger(L, 2);
    if ((events & AS_READ) && !(events & (AS_ERR | AS_NVAL)))
        events &= ~AS_HUP;
    if (events & AS_READ)
        as_call_method(L, 1, "handle_read_event");
    if ((events & AS_WRITE) && still_current(L))
        as_call_method(L, 1, "handle_write_event");
    if ((events & AS_PRI) && still_current(L))
        as_call_method(L, 1, "handle_expt_event");
    if ((events & (AS_HUP | AS_ERR | AS_NVAL)) && still_current(L))
        as_call_method(L, 1, "handle_close");
    return 0;
}

static void run(lua_State *L, lua_CFunction body, int obj, int events, int map, int fd,
                int disconnect_closes)
{
    int base = lua_gettop(L);
    lua_getiuservalue(L, STATE, UV_MSGH);
    lua_pushcfunction(L, body);
    lua_pushvalue(L, obj);
    lua_pushinteger(L, events);
    if (map)
        lua_pushvalue(L, map);
    else
        lua_pushnil(L);
    lua_pushinteger(L, fd);
    if (lua_pcall(L, 4, 0, base + 1) != LUA_OK)
        as_route_error(L, obj, disconnect_closes);
    lua_settop(L, base);
}

/* obj must have the methods a dispatch may call: an error naming fname if not. */
static void check_handlers(lua_State *L, const char *fname, const char *const *names)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    for (int i = 0; names[i] != NULL; i++) {
        lua_getfield(L, 1, names[i]);
        if (lua_isnil(L, -1))
            luaL_error(L, "%s: the channel has no %s method", fname, names[i]);
        lua_pop(L, 1);
    }
}

int as_read(lua_State *L)
{
    static const char *const names[] = {"handle_read_event", NULL};
    check_handlers(L, "read", names);
    run(L, read_body, 1, 0, 0, -1, 0);
    return 0;
}

int as_write(lua_State *L)
{
    static const char *const names[] = {"handle_write_event", NULL};
    check_handlers(L, "write", names);
    run(L, write_body, 1, 0, 0, -1, 0);
    return 0;
}

int as_exception(lua_State *L)
{
    static const char *const names[] = {"handle_expt_event", NULL};
    check_handlers(L, "_exception", names);
    run(L, expt_body, 1, 0, 0, -1, 0);
    return 0;
}

static int events_of_pollflags(lua_Integer flags)
{
    return ((flags & POLLIN) ? AS_READ : 0) | ((flags & POLLOUT) ? AS_WRITE : 0) |
           ((flags & POLLPRI) ? AS_PRI : 0) | ((flags & POLLHUP) ? AS_HUP : 0) |
           ((flags & POLLERR) ? AS_ERR : 0) | ((flags & POLLNVAL) ? AS_NVAL : 0);
}

/* readwrite(obj, flags): flags are POLL* bits */
int as_readwrite(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    int events = events_of_pollflags(luaL_checkinteger(L, 2));
    /* the methods these flags lead to must exist */
    const char *names[5];
    int n = 0;
    if (events & AS_READ)
        names[n++] = "handle_read_event";
    if (events & AS_WRITE)
        names[n++] = "handle_write_event";
    if (events & AS_PRI)
        names[n++] = "handle_expt_event";
    if (events & (AS_HUP | AS_ERR | AS_NVAL))
        names[n++] = "handle_close";
    names[n] = NULL;
    check_handlers(L, "readwrite", names);
    run(L, readwrite_body, 1, events, 0, -1, 1);
    return 0;
}

/* ---- the pass ---- */

/* A signal handler may have set a hook for Lua to run (the standalone
 * interpreter's Ctrl-C does: count 1); then the pass must not block. */
static int hook_pending(lua_State *L)
{
    return lua_gethook(L) != NULL && lua_gethookcount(L) == 1;
}

/* Events go to the channel the registry knew for the fd when the pass began,
 * and only while the map still holds it: a channel removed, or an fd reused,
 * during the pass gets nothing.  Each channel dispatched to is looked at in
 * the next pass. */
static int current(lua_State *L, as_state *st, int map, int known, int fd)
{
    as_registry_touch(&st->reg, fd);
    lua_rawgeti(L, known, fd);
    lua_rawgeti(L, map, fd);
    int same = !lua_isnil(L, -1) && lua_rawequal(L, -1, -2);
    lua_pop(L, 1);
    return same; /* the channel stays on the stack */
}

/* Dispatches n fired events; the stack holds 2 the map, 4 the known channels. */
static void dispatch(lua_State *L, as_state *st, const as_event *fired, int n, int select_mode)
{
    /* A handler may start a nested pass, which reuses the backend's array. */
    as_event *events = lua_newuserdatauv(L, (size_t)n * sizeof *events, 0); /* 5 */
    memcpy(events, fired, (size_t)n * sizeof *events);
    if (select_mode) {
        static const struct { int bit; lua_CFunction body; } phases[] = {
            {AS_READ, read_body}, {AS_WRITE, write_body}, {AS_PRI, expt_body}};
        for (int p = 0; p < 3; p++) {
            for (int i = 0; i < n; i++) {
                if (!(events[i].events & phases[p].bit))
                    continue;
                if (current(L, st, 2, 4, events[i].fd)) /* 6 */
                    run(L, phases[p].body, 6, 0, 0, -1, 0);
                lua_settop(L, 5);
            }
        }
    } else {
        for (int i = 0; i < n; i++) {
            if (current(L, st, 2, 4, events[i].fd))
                run(L, readwrite_body, 6, events[i].events, 2, events[i].fd, 1);
            lua_settop(L, 5);
        }
    }
    lua_settop(L, 4);
}

/* Whether loop() goes on: the map holds a channel, or a timer is pending. */
static int more(lua_State *L, int map)
{
    lua_pushnil(L);
    int busy = lua_next(L, map) != 0;
    lua_settop(L, map);
    lua_pushboolean(L, busy || as_timers_pending(L));
    return 1;
}

/* The public call a pass runs for ("loop", "poll" or "poll2"), from pass's
 * 5th argument; a literal, so it outlives the argument's stack slot. */
static const char *pass_caller(lua_State *L)
{
    const char *name = lua_tostring(L, 5);
    if (name != NULL && strcmp(name, "poll") == 0)
        return "poll";
    if (name != NULL && strcmp(name, "poll2") == 0)
        return "poll2";
    return "loop";
}

/* pass(timeout, map, backend [, full [, caller]]) -> more: one pass, as
 * Python's poll() (backend "select") or poll2() (any other backend), then the
 * due timers; full looks at every channel.  The wait ends early at the next
 * timer.  Errors name caller (default "loop"). */
int as_pass(lua_State *L)
{
    const char *caller = pass_caller(L);
    as_state *st = as_live_state(L, caller);
    lua_Number timeout = luaL_checknumber(L, 1);
    luaL_argcheck(L, timeout >= 0, 1, "timeout must be a number >= 0");
    luaL_checktype(L, 2, LUA_TTABLE);
    const char *backend = luaL_checkstring(L, 3);
    int full = lua_toboolean(L, 4);
    lua_settop(L, 3);
    lua_pushnil(L);
    if (!lua_next(L, 2) && !as_timers_pending(L)) {
        lua_pushboolean(L, 0);
        return 1; /* nothing to do: Python's poll() and poll2() return at once */
    }
    lua_settop(L, 3);

    int switched = as_loop_use(st->loop, backend);
    if (switched < 0) {
        if (errno == ENOENT)
            return luaL_error(L, "loop: unknown backend '%s'", backend);
        return as_raise(L, caller, errno);
    }
    as_registry_update(L, 2, full || switched);
    lua_getiuservalue(L, STATE, UV_KNOWN); /* 4 */

    as_event *fired;
    double wait = hook_pending(L) ? 0 : (timeout >= 1e18 ? -1 : (double)timeout);
    int n = as_loop_wait(st->loop, as_next_timer_wait(L, wait), &fired);
    if (n < 0) {
        if (errno == EINTR)
            return more(L, 2); /* Lua runs the hook, if any, as the pass returns */
        return as_raise(L, backend, errno);
    }
    if (n > 0)
        dispatch(L, st, fired, n, strcmp(backend, "select") == 0);
    as_run_timers(L);
    return more(L, 2);
}
