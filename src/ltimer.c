/* Timers as Lua objects: call_later, call_at, cancel, and the run of the due
 * ones at the end of each pass.  The heap itself is timers.c. */
#include <math.h>

#include "lcore.h"

#define TIMER_MT "asyncore.timer"

/* A timer's user values: the function and, when there are any, its arguments
 * packed in a table with n (both dropped once it runs or is cancelled), and
 * the state whose heap holds it, so its methods need no upvalue and the
 * state lives as long as any timer of it. */
enum { TIMER_FN = 1, TIMER_ARGS, TIMER_STATE, TIMER_NUV = TIMER_STATE };

typedef struct lua_timer {
    as_timer node; /* first, so a node pointer is the object's pointer */
    int queued;    /* taken out of the heap by a run, not yet called */
    int cancelled;
} lua_timer;

static lua_timer *check_timer(lua_State *L, int idx, const char *fname)
{
    lua_timer *t = luaL_testudata(L, idx, TIMER_MT);
    if (t == NULL)
        luaL_error(L, "bad argument 'self' to '%s' (asyncore.timer expected, got %s)", fname,
                   luaL_typename(L, idx));
    return t;
}

static int is_callable(lua_State *L, int idx)
{
    if (lua_isfunction(L, idx))
        return 1;
    int has_call = luaL_getmetafield(L, idx, "__call") != LUA_TNIL;
    if (has_call)
        lua_pop(L, 1);
    return has_call;
}

static lua_Number check_time(lua_State *L, const char *fname, const char *what, int at_least_zero)
{
    int isnum = lua_type(L, 1) == LUA_TNUMBER; /* a numeric string is a mistake here */
    lua_Number x = lua_tonumber(L, 1);
    if (!isnum || !isfinite(x) || (at_least_zero && x < 0))
        luaL_error(L, "bad argument '%s' to '%s' (finite number%s expected, got %s)", what, fname,
                   at_least_zero ? " >= 0" : "",
                   !isnum ? luaL_typename(L, 1) : x != x ? "nan" : lua_tostring(L, 1));
    return x;
}

/* Timers in the heap or queued by a run are anchored in the state's
 * UV_TIMERS table, keyed by address, so the heap's pointers stay valid
 * whatever the script drops.  state is the state's stack index. */
static void anchor(lua_State *L, int state, lua_timer *t, int timer)
{
    lua_getiuservalue(L, state, UV_TIMERS);
    if (timer)
        lua_pushvalue(L, timer);
    else
        lua_pushnil(L);
    lua_rawsetp(L, -2, t);
    lua_pop(L, 1);
}

static void release(lua_State *L, int timer)
{
    lua_pushnil(L);
    lua_setiuservalue(L, timer, TIMER_FN);
    lua_pushnil(L);
    lua_setiuservalue(L, timer, TIMER_ARGS);
}

/* Arguments: 1 time, 2 fn, 3... its arguments.  Returns the timer. */
static int schedule(lua_State *L, const char *fname, double due)
{
    as_state *st = as_live_state(L, fname);
    if (!is_callable(L, 2))
        return luaL_error(L, "bad argument 'fn' to '%s' (function expected, got %s)", fname,
                          luaL_typename(L, 2));
    int nargs = lua_gettop(L) - 2;
    lua_timer *t = lua_newuserdatauv(L, sizeof *t, TIMER_NUV);
    int timer = lua_gettop(L);
    t->node.slot = AS_TIMER_IDLE;
    t->queued = t->cancelled = 0;
    luaL_setmetatable(L, TIMER_MT);
    lua_pushvalue(L, 2);
    lua_setiuservalue(L, timer, TIMER_FN);
    if (nargs > 0) {
        lua_createtable(L, nargs, 1);
        for (int i = 1; i <= nargs; i++) {
            lua_pushvalue(L, 2 + i);
            lua_rawseti(L, -2, i);
        }
        lua_pushinteger(L, nargs);
        lua_setfield(L, -2, "n");
        lua_setiuservalue(L, timer, TIMER_ARGS);
    }
    lua_pushvalue(L, STATE);
    lua_setiuservalue(L, timer, TIMER_STATE);
    anchor(L, STATE, t, timer);
    if (as_timers_add(&st->timers, &t->node, due) < 0) {
        anchor(L, STATE, t, 0);
        return luaL_error(L, "%s: out of memory", fname);
    }
    return 1;
}

/* call_later(delay, fn, ...) -> timer */
int as_call_later(lua_State *L)
{
    lua_Number delay = check_time(L, "call_later", "delay", 1);
    return schedule(L, "call_later", as_monotonic() + delay);
}

/* call_at(when, fn, ...) -> timer; when on the time() clock */
int as_call_at(lua_State *L)
{
    return schedule(L, "call_at", check_time(L, "call_at", "when", 0));
}

/* timer:cancel() -> true if it was pending */
static int timer_cancel(lua_State *L)
{
    lua_timer *t = check_timer(L, 1, "cancel");
    lua_getiuservalue(L, 1, TIMER_STATE); /* 2 */
    as_state *st = lua_touserdata(L, 2);
    if (t->queued)
        t->queued = 0; /* its run skips it */
    else if (st == NULL || !as_timers_remove(&st->timers, &t->node)) {
        lua_pushboolean(L, 0);
        return 1;
    }
    t->cancelled = 1;
    anchor(L, 2, t, 0);
    release(L, 1);
    lua_pushboolean(L, 1);
    return 1;
}

static int timer_cancelled(lua_State *L)
{
    lua_pushboolean(L, check_timer(L, 1, "cancelled")->cancelled);
    return 1;
}

static int timer_when(lua_State *L)
{
    lua_pushnumber(L, check_timer(L, 1, "when")->node.due);
    return 1;
}

static int timer_tostring(lua_State *L)
{
    lua_timer *t = check_timer(L, 1, "tostring");
    const char *state = as_timer_pending(&t->node) || t->queued ? "pending"
                        : t->cancelled                          ? "cancelled"
                                                                : "done";
    lua_pushfstring(L, "<asyncore.timer %s when=%f at %p>", state, (lua_Number)t->node.due,
                    (void *)t);
    return 1;
}

/* Runs under lua_pcall: 1 fn, 2 its packed arguments or nil. */
static int timer_body(lua_State *L)
{
    int nargs = 0;
    if (lua_type(L, 2) == LUA_TTABLE) {
        lua_getfield(L, 2, "n");
        nargs = (int)lua_tointeger(L, -1);
        lua_pop(L, 1);
        luaL_checkstack(L, nargs, "too many timer arguments");
        for (int i = 1; i <= nargs; i++)
            lua_rawgeti(L, 2, i);
    }
    lua_remove(L, 2); /* fn comes right below its arguments */
    lua_call(L, nargs, 0);
    return 0;
}

/* Calls the timer at idx.  Its error goes to the timer-error function; 0
 * with an error on top when it must leave the loop (ExitNow, Ctrl-C, or an
 * error of the timer-error function itself). */
static int fire(lua_State *L, int timer)
{
    int base = lua_gettop(L);
    lua_getiuservalue(L, STATE, UV_MSGH); /* base + 1 */
    lua_pushcfunction(L, timer_body);
    lua_getiuservalue(L, timer, TIMER_FN);
    lua_getiuservalue(L, timer, TIMER_ARGS);
    release(L, timer);
    if (lua_pcall(L, 2, 0, base + 1) == LUA_OK) {
        lua_settop(L, base);
        return 1;
    }
    if (as_must_propagate(L, lua_gettop(L)))
        return 0;
    if (lua_getiuservalue(L, STATE, UV_TIMER_ERROR) != LUA_TFUNCTION) {
        lua_pop(L, 1); /* the core used without asyncore.lua: nobody to report to */
        return 0;
    }
    lua_pushvalue(L, -2);
    lua_getiuservalue(L, STATE, UV_TRACEBACK);
    if (lua_pcall(L, 2, 0, 0) != LUA_OK)
        return 0; /* as handle_error's own errors do, it leaves the loop */
    lua_settop(L, base);
    return 1;
}

/* An error is leaving the loop from a run: the timers of batch (stack index)
 * from first to n that have not been called go back in the heap, in their
 * place, so the next pass runs them. */
static void requeue(lua_State *L, as_state *st, int batch, int first, int n)
{
    for (int i = first; i <= n; i++) {
        lua_rawgeti(L, batch, i);
        lua_timer *t = lua_touserdata(L, -1);
        if (t->queued) {
            t->queued = 0;
            if (as_timers_restore(&st->timers, &t->node) < 0) {
                t->cancelled = 1; /* it can no longer run: say so rather than lose it quietly */
                anchor(L, STATE, t, 0);
            } else {
                anchor(L, STATE, t, lua_gettop(L));
            }
        }
        lua_pop(L, 1);
    }
}

void as_run_timers(lua_State *L)
{
    as_state *st = lua_touserdata(L, STATE);
    as_timer *first = as_timers_first(&st->timers);
    double now;
    if (first == NULL || first->due > (now = as_monotonic()))
        return;
    /* Every timer due now leaves the heap before any runs: the ones made or
     * re-armed meanwhile wait for a later pass, whatever their due time, so
     * a timer that re-arms itself can hold back neither I/O nor other timers. */
    int base = lua_gettop(L);
    lua_getiuservalue(L, STATE, UV_TIMERS); /* base + 1 */
    lua_newtable(L);                        /* base + 2: the batch, in due order */
    int n = 0;
    while ((first = as_timers_first(&st->timers)) != NULL && first->due <= now) {
        as_timers_remove(&st->timers, first);
        ((lua_timer *)first)->queued = 1;
        lua_rawgetp(L, base + 1, first);
        lua_rawseti(L, base + 2, ++n);
    }
    for (int i = 1; i <= n; i++) {
        lua_rawgeti(L, base + 2, i); /* base + 3 */
        lua_timer *t = lua_touserdata(L, base + 3);
        if (t->queued) {
            t->queued = 0;
            anchor(L, STATE, t, 0);
            if (!fire(L, base + 3)) {
                requeue(L, st, base + 2, i + 1, n);
                lua_error(L);
            }
        }
        lua_settop(L, base + 2);
    }
    /* A table emptied by a burst keeps its size: start afresh when no timer
     * is left in the heap (queued ones, of an outer run, are on its stack
     * and anchored again if they go back). */
    if (st->timers.count == 0) {
        lua_newtable(L);
        lua_setiuservalue(L, STATE, UV_TIMERS);
    }
    lua_settop(L, base);
}

double as_next_timer_wait(lua_State *L, double wait)
{
    as_state *st = lua_touserdata(L, STATE);
    as_timer *first = as_timers_first(&st->timers);
    if (first == NULL)
        return wait;
    double until = first->due - as_monotonic();
    if (until < 0)
        until = 0;
    return (wait < 0 || until < wait) ? until : wait;
}

int as_timers_pending(lua_State *L)
{
    as_state *st = lua_touserdata(L, STATE);
    return st->timers.count > 0;
}

void as_open_timers(lua_State *L)
{
    static const luaL_Reg methods[] = {
        {"cancel", timer_cancel},
        {"cancelled", timer_cancelled},
        {"when", timer_when},
        {NULL, NULL},
    };
    int state = lua_gettop(L);
    lua_newtable(L);
    lua_setiuservalue(L, state, UV_TIMERS);
    if (luaL_newmetatable(L, TIMER_MT)) { /* shared by every core loaded: no state in it */
        lua_pushcfunction(L, timer_tostring);
        lua_setfield(L, -2, "__tostring");
        luaL_newlib(L, methods);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
}
