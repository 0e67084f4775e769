/* OS failures as Lua values: "<call>: <strerror> (<ERRNO_NAME>)". */
#include <string.h>

#include "errnames.h"
#include "lcore.h"

const char *as_push_oserror(lua_State *L, const char *call, int err)
{
    const char *name = as_errname_of(err);
    if (name != NULL)
        return lua_pushfstring(L, "%s: %s (%s)", call, strerror(err), name);
    return lua_pushfstring(L, "%s: %s (errno %d)", call, strerror(err), err);
}

int as_fail(lua_State *L, const char *call, int err)
{
    lua_pushnil(L);
    as_push_oserror(L, call, err);
    lua_pushinteger(L, err);
    return 3;
}

int as_raise(lua_State *L, const char *call, int err)
{
    as_push_oserror(L, call, err);
    return lua_error(L);
}

static int l_strerror(lua_State *L)
{
    lua_pushstring(L, strerror((int)luaL_checkinteger(L, 1)));
    return 1;
}

/* oserror(call, errno) -> the message the library raises for that failure */
static int l_oserror(lua_State *L)
{
    const char *call = luaL_checkstring(L, 1);
    as_push_oserror(L, call, (int)luaL_checkinteger(L, 2));
    return 1;
}

void as_open_errors(lua_State *L)
{
    lua_newtable(L);
    for (const as_errname *e = as_errnames; e->name != NULL; e++) {
        lua_pushinteger(L, e->code);
        lua_setfield(L, -2, e->name);
    }
    lua_setfield(L, -2, "errno");
    lua_pushcfunction(L, l_strerror);
    lua_setfield(L, -2, "strerror");
    lua_pushcfunction(L, l_oserror);
    lua_setfield(L, -2, "oserror");
}
