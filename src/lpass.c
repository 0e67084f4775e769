/* One loop pass over a Lua map, and the protected dispatch of events to channels,
 * as Python asyncore's poll/poll2/read/write/readwrite do it. */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <string.h>

#include "lcore.h"

#define STATE lua_upvalueindex(1)

int as_message_handler(lua_State *L)
{
    luaL_traceback(L, L, NULL, 1);
    lua_setiuservalue(L, STATE, UV_TRACEBACK);
    lua_settop(L, 1);
    return 1;
}

static int ends_with(lua_State *L, int idx, const char *suffix)
{
    if (lua_type(L, idx) != LUA_TSTRING)
        return 0;
    size_t len, n = strlen(suffix);
    const char *s = lua_tolstring(L, idx, &len);
    return len >= n && memcmp(s + len - n, suffix, n) == 0;
}

/* ExitNow and the standalone interpreter's Ctrl-C error leave the loop. */
static int must_propagate(lua_State *L, int err)
{
    lua_getiuservalue(L, STATE, UV_EXITNOW);
    int exit_now = lua_rawequal(L, -1, err);
    lua_pop(L, 1);
    return exit_now || ends_with(L, err, "interrupted!");
}

/* An error raised for a failed call whose errno means the peer is gone. */
static int is_disconnect_error(lua_State *L, int err)
{
    static const char *const names[] = {"(ECONNRESET)", "(ENOTCONN)", "(ESHUTDOWN)",
                                        "(ECONNABORTED)", "(EPIPE)", "(EBADF)", NULL};
    for (int i = 0; names[i] != NULL; i++)
        if (ends_with(L, err, names[i]))
            return 1;
    return 0;
}

/* The error at the top of the stack, raised by a handler of obj: propagate it,
 * or pass it on to handle_close or handle_error as Python does.  Errors raised
 * by those two propagate out of the loop, as in Python. */
void as_route_error(lua_State *L, int obj, int disconnect_closes)
{
    int err = lua_gettop(L);
    if (must_propagate(L, err))
        lua_error(L);
    if (disconnect_closes && is_disconnect_error(L, err)) {
        as_call_method(L, obj, "handle_close");
        return;
    }
    lua_getfield(L, obj, "handle_error");
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

int as_read(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    run(L, read_body, 1, 0, 0, -1, 0);
    return 0;
}

int as_write(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    run(L, write_body, 1, 0, 0, -1, 0);
    return 0;
}

int as_exception(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
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
    run(L, readwrite_body, 1, events, 0, -1, 1);
    return 0;
}

/* ---- the pass ---- */

typedef struct collect_state {
    as_loop *loop;
    int select_mode;
    int fd;    /* the channel being asked, for routing its error */
    int fatal; /* the error is the loop's, not the channel's */
} collect_state;

static int truthy_field(lua_State *L, int obj, const char *name)
{
    lua_getfield(L, obj, name);
    int truth = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return truth;
}

/* Asks obj readable() and writable(), skipping the call where the method is the
 * built-in default; returns the interest mask for this pass. */
static int interest_of(lua_State *L, int obj, int select_mode)
{
    int readable, writable;
    lua_getfield(L, obj, "readable");
    lua_getiuservalue(L, STATE, UV_READABLE);
    if (lua_rawequal(L, -1, -2)) {
        readable = 1;
        lua_pop(L, 2);
    } else {
        lua_pop(L, 1);
        lua_pushvalue(L, obj);
        lua_call(L, 1, 1);
        readable = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    lua_getfield(L, obj, "writable");
    lua_getiuservalue(L, STATE, UV_WRITABLE);
    lua_getiuservalue(L, STATE, UV_SEND_WRITABLE);
    if (lua_rawequal(L, -1, -3)) {
        lua_pop(L, 3);
        writable = !truthy_field(L, obj, "connected");
        if (!writable) {
            lua_getfield(L, obj, "out_buffer");
            writable = lua_rawlen(L, -1) > 0;
            lua_pop(L, 1);
        }
    } else if (lua_rawequal(L, -2, -3)) {
        lua_pop(L, 3);
        writable = 1;
    } else if (lua_tocfunction(L, -3) == as_chat_writable) {
        lua_pop(L, 3);
        writable = as_chat_wants_write(L, obj);
    } else {
        lua_pop(L, 2);
        lua_pushvalue(L, obj);
        lua_call(L, 1, 1);
        writable = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    int accepting = writable && truthy_field(L, obj, "accepting");
    int mask = 0;
    if (readable)
        mask |= select_mode ? AS_READ : AS_READ | AS_PRI;
    if (writable && !accepting)
        mask |= AS_WRITE;
    if (select_mode && (readable || writable))
        mask |= AS_PRI; /* select's exceptional set */
    return mask;
}

/* Under lua_pcall: 1 collect_state, 2 snapshot (fd -> channel), 3 map, 4 resume key.
 * Declares each channel's interest; an error names the channel in state->fd. */
static int collect_body(lua_State *L)
{
    collect_state *cs = lua_touserdata(L, 1);
    lua_settop(L, 4);
    while (lua_next(L, 2)) {
        int fd = (int)lua_tointeger(L, -2), obj = lua_gettop(L);
        cs->fd = fd;
        lua_rawgeti(L, 3, fd);
        int current = lua_rawequal(L, -1, obj);
        lua_pop(L, 1);
        int mask = current ? interest_of(L, obj, cs->select_mode) : 0;
        if (mask != 0) {
            /* its own readable() may have closed it */
            lua_rawgeti(L, 3, fd);
            current = lua_rawequal(L, -1, obj);
            lua_pop(L, 1);
        }
        if (mask != 0 && current && as_loop_watch(cs->loop, fd, mask) != 0) {
            cs->fatal = 1;
            if (errno == ERANGE)
                return luaL_error(L, "%s: fd %d is not below FD_SETSIZE (%d); use the poll or "
                                     "epoll backend",
                                  as_loop_backend_name(cs->loop), fd,
                                  as_loop_fd_limit(cs->loop) + 1);
            return as_raise(L, as_loop_backend_name(cs->loop), errno);
        }
        lua_settop(L, obj - 1);
    }
    return 0;
}

static void collect(lua_State *L, as_state *st, int select_mode, int snap, int map)
{
    collect_state cs = {st->loop, select_mode, -1, 0};
    int base = lua_gettop(L);
    lua_pushnil(L); /* the resume key */
    for (;;) {
        lua_getiuservalue(L, STATE, UV_MSGH);
        lua_pushvalue(L, STATE); /* interest_of reads the defaults from the state */
        lua_pushcclosure(L, collect_body, 1);
        lua_pushlightuserdata(L, &cs);
        lua_pushvalue(L, snap);
        lua_pushvalue(L, map);
        lua_pushvalue(L, base + 1);
        if (lua_pcall(L, 4, 0, base + 2) == LUA_OK)
            break;
        if (cs.fatal)
            lua_error(L);
        lua_rawgeti(L, snap, cs.fd);
        lua_replace(L, base + 2); /* the channel, in place of the handler; error above it */
        as_route_error(L, base + 2, 0);
        lua_settop(L, base);
        lua_pushinteger(L, cs.fd); /* go on after the channel that failed */
    }
    lua_settop(L, base);
}

/* A signal handler may have set a hook for Lua to run (the standalone
 * interpreter's Ctrl-C does: count 1); then the pass must not block. */
static int hook_pending(lua_State *L)
{
    return lua_gethook(L) != NULL && lua_gethookcount(L) == 1;
}

/* pass(timeout, map, backend): one pass, as Python's poll() (backend "select")
 * or poll2() (any other backend) */
int as_pass(lua_State *L)
{
    as_state *st = lua_touserdata(L, STATE);
    lua_Number timeout = luaL_checknumber(L, 1);
    luaL_argcheck(L, timeout >= 0, 1, "timeout must be a number >= 0");
    luaL_checktype(L, 2, LUA_TTABLE);
    const char *backend = luaL_checkstring(L, 3);
    lua_settop(L, 3);
    int select_mode = strcmp(backend, "select") == 0;

    lua_newtable(L); /* 4: snapshot of the map, fd -> channel */
    lua_pushnil(L);
    while (lua_next(L, 2)) {
        lua_Integer fd = lua_isinteger(L, -2) ? lua_tointeger(L, -2) : -1;
        if (fd < 0 || fd > INT_MAX)
            return luaL_error(L, "loop: map key %s is not a file descriptor",
                              luaL_tolstring(L, -2, NULL));
        lua_pushvalue(L, -2);
        lua_insert(L, -2);
        lua_rawset(L, 4);
    }
    lua_pushnil(L);
    if (!lua_next(L, 4))
        return 0; /* an empty map: Python's poll() and poll2() return at once */
    lua_settop(L, 4);

    if (as_loop_begin(st->loop, backend) != 0) {
        if (errno == ENOENT)
            return luaL_error(L, "loop: unknown backend '%s'", backend);
        return as_raise(L, "loop", errno);
    }
    collect(L, st, select_mode, 4, 2);

    as_event *fired;
    double wait = hook_pending(L) ? 0 : (timeout >= 1e18 ? -1 : (double)timeout);
    int n = as_loop_wait(st->loop, wait, &fired);
    if (n < 0) {
        if (errno == EINTR)
            return 0; /* Lua runs the hook, if any, as the pass returns */
        return as_raise(L, backend, errno);
    }
    if (n == 0)
        return 0;
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
                lua_rawgeti(L, 4, events[i].fd); /* 6 */
                lua_rawgeti(L, 2, events[i].fd);
                if (lua_rawequal(L, -1, -2))
                    run(L, phases[p].body, 6, 0, 0, -1, 0);
                lua_settop(L, 5);
            }
        }
    } else {
        for (int i = 0; i < n; i++) {
            lua_rawgeti(L, 4, events[i].fd);
            lua_rawgeti(L, 2, events[i].fd);
            if (lua_rawequal(L, -1, -2))
                run(L, readwrite_body, 6, events[i].events, 2, events[i].fd, 1);
            lua_settop(L, 5);
        }
    }
    return 0;
}
