/* The registry: which channels a pass looks at.  The loop's interest persists
 * between passes, so a pass asks only the channels whose readable()/writable()
 * the script overrode (their answers may change at any time), and the
 * channels something happened to since the last pass (events dispatched to
 * them, their methods called, added or removed).  A full look at the whole map
 * happens when loop() starts, when the map or the backend changes, and every
 * FULL_EVERY passes, which also catches fields a script set directly on
 * another channel. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "lcore.h"

#define FULL_EVERY 1024

enum {
    REG_DIRTY = 1,   /* in the dirty list */
    REG_QUEUED = 2,  /* in the current pass's work list */
    REG_RESTING = 4, /* not read in the next wait (accept ran out of fds) */
};

void as_registry_free(as_registry *reg)
{
    free(reg->flags);
    free(reg->polled);
    free(reg->dirty);
    free(reg->work);
    memset(reg, 0, sizeof *reg);
}

static int has_flags(as_registry *reg, int fd)
{
    return as_grow((void **)&reg->flags, &reg->flags_cap, (size_t)fd + 1, 1) == 0;
}

/* Appends fd to a list (*items, *n of them, *cap room) unless the flag bit
 * says it is there already. */
static int add_once(as_registry *reg, int fd, unsigned char bit, int **items, int *n, size_t *cap)
{
    if (!has_flags(reg, fd))
        return -1;
    if (reg->flags[fd] & bit)
        return 0;
    if (as_grow((void **)items, cap, (size_t)*n + 1, sizeof(int)) != 0)
        return -1;
    reg->flags[fd] |= bit;
    (*items)[(*n)++] = fd;
    return 0;
}

int as_registry_touch(as_registry *reg, int fd)
{
    if (fd < 0)
        return -1;
    return add_once(reg, fd, REG_DIRTY, &reg->dirty, &reg->ndirty, &reg->dirty_cap);
}

static int queue(as_registry *reg, int fd)
{
    return add_once(reg, fd, REG_QUEUED, &reg->work, &reg->nwork, &reg->work_cap);
}

static int ask(lua_State *L, int obj)
{
    lua_pushvalue(L, obj);
    lua_call(L, 1, 1);
    int truth = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return truth;
}

/* The interest of obj for a pass: built-in readable()/writable() are decided
 * here, without a call; *polled is set when the script overrode either, and
 * then they are called (and must be every pass). */
static int interest_of(lua_State *L, int obj, int select_mode, int *polled)
{
    lua_getfield(L, obj, "readable");
    lua_getiuservalue(L, STATE, UV_READABLE);
    int builtin_readable = lua_rawequal(L, -1, -2);
    lua_pop(L, 1);

    lua_getfield(L, obj, "writable");
    lua_getiuservalue(L, STATE, UV_WRITABLE);
    lua_getiuservalue(L, STATE, UV_SEND_WRITABLE);
    int kind; /* 0: overridden, 1: dispatcher's, 2: dispatcher_with_send's, 3: async_chat's */
    if (lua_rawequal(L, -3, -2))
        kind = 1;
    else if (lua_rawequal(L, -3, -1))
        kind = 2;
    else if (lua_tocfunction(L, -3) == as_chat_writable)
        kind = 3;
    else
        kind = 0;
    lua_pop(L, 2); /* readable, writable stay */

    *polled = !builtin_readable || kind == 0;
    int readable = builtin_readable ? 1 : (lua_pushvalue(L, -2), ask(L, obj));
    int writable;
    switch (kind) {
    case 1:
        writable = 1;
        break;
    case 2:
        writable = !as_truthy_field(L, obj, "connected");
        if (!writable) {
            lua_getfield(L, obj, "out_buffer");
            writable = lua_rawlen(L, -1) > 0;
            lua_pop(L, 1);
        }
        break;
    case 3:
        writable = as_chat_wants_write(L, obj);
        break;
    default:
        lua_pushvalue(L, -1);
        writable = ask(L, obj);
    }
    lua_pop(L, 2);
    int accepting = writable && as_truthy_field(L, obj, "accepting");
    int mask = 0;
    if (readable)
        mask |= select_mode ? AS_READ : AS_READ | AS_PRI;
    if (writable && !accepting)
        mask |= AS_WRITE;
    if (select_mode && (readable || writable))
        mask |= AS_PRI; /* select's exceptional set */
    return mask;
}

typedef struct update_state {
    int next;        /* index in the work list */
    int fatal;       /* the loop's own error, not a channel's */
    int select_mode; /* interest as select takes it */
} update_state;

static int set_interest(lua_State *L, as_state *st, int fd, int mask, update_state *us)
{
    if (as_loop_set(st->loop, fd, mask) == 0)
        return 0;
    us->fatal = 1;
    const char *backend = as_loop_backend_name(st->loop);
    if (errno == ERANGE)
        return luaL_error(L, "%s: fd %d is not below FD_SETSIZE (%d); use the poll or epoll backend",
                          backend, fd, as_loop_fd_limit(st->loop) + 1);
    return as_raise(L, backend, errno);
}

/* Looks at fd: the channel the map holds for it now becomes the known one,
 * and its interest is brought up to date. */
static void look_at(lua_State *L, as_state *st, int fd, update_state *us)
{
    const int map = 1, known = 2;
    lua_rawgeti(L, map, fd);
    int obj = lua_gettop(L);
    lua_rawgeti(L, known, fd);
    if (!lua_rawequal(L, -1, obj))
        set_interest(L, st, fd, 0, us); /* a new channel: its fd may be a new file too */
    lua_pop(L, 1);
    lua_pushvalue(L, obj);
    lua_rawseti(L, known, fd);
    if (lua_isnil(L, obj)) {
        set_interest(L, st, fd, 0, us);
        lua_settop(L, obj - 1);
        return;
    }
    int polled;
    int mask = interest_of(L, obj, us->select_mode, &polled);
    if (polled) {
        as_registry *reg = &st->reg;
        if (as_grow((void **)&reg->polled, &reg->polled_cap, (size_t)reg->npolled + 1, sizeof(int)) != 0)
            luaL_error(L, "loop: out of memory");
        reg->polled[reg->npolled++] = fd;
    }
    lua_rawgeti(L, map, fd);
    int current = lua_rawequal(L, -1, obj); /* its own readable() may have closed it */
    if (st->reg.flags[fd] & REG_RESTING) {
        /* one wait without reading, then reading again: an accept that ran out
         * of fds is retried once a pass, not in a busy loop */
        st->reg.flags[fd] &= (unsigned char)~REG_RESTING;
        mask &= ~(AS_READ | AS_PRI);
        as_registry_touch(&st->reg, fd);
    }
    if (current)
        set_interest(L, st, fd, mask, us);
    lua_settop(L, obj - 1);
}

/* Under lua_pcall: 1 map, 2 known, 3 update_state; upvalue 1 the state. */
static int update_body(lua_State *L)
{
    as_state *st = lua_touserdata(L, STATE);
    update_state *us = lua_touserdata(L, 3);
    as_registry *reg = &st->reg;
    for (; us->next < reg->nwork; us->next++) {
        int fd = reg->work[us->next];
        reg->flags[fd] &= (unsigned char)~REG_QUEUED;
        look_at(L, st, fd, us);
    }
    return 0;
}

/* Work not done in this pass waits for the next one. */
static void postpone(as_registry *reg, int from)
{
    for (int i = from; i < reg->nwork; i++) {
        reg->flags[reg->work[i]] &= (unsigned char)~REG_QUEUED;
        as_registry_touch(reg, reg->work[i]);
    }
    reg->nwork = 0;
}

/* The work list: polled and dirty fds, and with full, every fd of the map and
 * every fd known from before. */
static void plan(lua_State *L, as_registry *reg, int map, int known, int full)
{
    int ok = 1;
    reg->nwork = 0;
    for (int i = 0; i < reg->npolled; i++)
        ok &= queue(reg, reg->polled[i]) == 0;
    reg->npolled = 0;
    for (int i = 0; i < reg->ndirty; i++) {
        reg->flags[reg->dirty[i]] &= (unsigned char)~REG_DIRTY;
        ok &= queue(reg, reg->dirty[i]) == 0;
    }
    reg->ndirty = 0;
    const char *bad_key = NULL;
    for (int t = 0; full && t < 2 && bad_key == NULL; t++) {
        lua_pushnil(L);
        while (lua_next(L, t == 0 ? map : known)) {
            lua_Integer fd = lua_isinteger(L, -2) ? lua_tointeger(L, -2) : -1;
            if (fd < 0 || fd > INT_MAX) {
                bad_key = luaL_tolstring(L, -2, NULL);
                break;
            }
            ok &= queue(reg, (int)fd) == 0;
            lua_pop(L, 1);
        }
    }
    if (full)
        reg->passes = 0;
    if (bad_key != NULL || !ok) {
        postpone(reg, 0);
        if (bad_key != NULL)
            luaL_error(L, "loop: map key %s is not a file descriptor", bad_key);
        luaL_error(L, "loop: out of memory");
    }
}

void as_registry_update(lua_State *L, int map, int full)
{
    as_state *st = lua_touserdata(L, STATE);
    as_registry *reg = &st->reg;
    int base = lua_gettop(L);
    lua_getiuservalue(L, STATE, UV_MIRROR);
    if (!lua_rawequal(L, -1, map)) {
        full = 1;
        lua_pushvalue(L, map);
        lua_setiuservalue(L, STATE, UV_MIRROR);
    }
    if (++reg->passes >= FULL_EVERY)
        full = 1;
    lua_getiuservalue(L, STATE, UV_KNOWN); /* base + 2 */
    if (lua_isnil(L, -1)) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setiuservalue(L, STATE, UV_KNOWN);
    }
    int known = base + 2;
    plan(L, reg, map, known, full);

    update_state us = {0, 0, strcmp(as_loop_backend_name(st->loop), "select") == 0};
    for (;;) {
        lua_settop(L, known);
        lua_getiuservalue(L, STATE, UV_MSGH);
        lua_pushvalue(L, STATE);
        lua_pushcclosure(L, update_body, 1);
        lua_pushvalue(L, map);
        lua_pushvalue(L, known);
        lua_pushlightuserdata(L, &us);
        if (lua_pcall(L, 3, 0, known + 1) == LUA_OK)
            break;
        int fd = reg->work[us.next];
        us.next++;
        if (us.fatal) {
            postpone(reg, us.next - 1);
            lua_error(L);
        }
        as_registry_touch(reg, fd); /* asked again next pass */
        lua_rawgeti(L, known, fd);
        lua_replace(L, known + 1); /* the channel, in place of the handler */
        as_route_error(L, known + 1, 0);
    }
    lua_settop(L, base);
}

int as_touch_channel(lua_State *L, int idx)
{
    lua_getfield(L, idx, "_fileno");
    lua_Integer fd = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : -1;
    lua_pop(L, 1);
    if (fd < 0 || fd > INT_MAX)
        return -1;
    as_state *st = lua_touserdata(L, STATE);
    if (st->loop == NULL)
        return -1; /* the core is closed: no registry left to keep */
    if (as_registry_touch(&st->reg, (int)fd) != 0)
        luaL_error(L, "loop: out of memory");
    return (int)fd;
}

/* touch(channel) */
int as_touch(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    as_touch_channel(L, 1);
    return 0;
}

/* reset(map, fd): fd joins or leaves the map.  Its interest goes at once, so
 * that epoll hears of it while the fd is still open (before del_channel's
 * close), and a new file on a reused fd number is registered afresh; the next
 * pass looks at it. */
int as_reset(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_Integer fd = luaL_checkinteger(L, 2);
    as_state *st = lua_touserdata(L, STATE);
    lua_getiuservalue(L, STATE, UV_MIRROR);
    if (fd < 0 || fd > INT_MAX || !lua_rawequal(L, -1, 1) || st->loop == NULL)
        return 0;
    as_loop_set(st->loop, (int)fd, 0); /* a failure leaves it to the next pass */
    if (as_registry_touch(&st->reg, (int)fd) != 0)
        return luaL_error(L, "loop: out of memory");
    /* the registry lets go of the channel now, so that a dropped one can be
     * collected; a pass under way dispatches nothing more to this fd */
    lua_getiuservalue(L, STATE, UV_KNOWN);
    if (lua_istable(L, -1)) {
        lua_pushnil(L);
        lua_rawseti(L, -2, fd);
    }
    return 0;
}

/* rest(channel): its fd is not read in the next wait (accept hit EMFILE) */
int as_rest(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    int fd = as_touch_channel(L, 1);
    if (fd >= 0) {
        as_state *st = lua_touserdata(L, STATE);
        st->reg.flags[fd] |= REG_RESTING;
    }
    return 0;
}
