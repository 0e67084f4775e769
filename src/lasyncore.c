/* luaopen_asyncore_core: the C core as a Lua module. */
/* SO_REUSEPORT is not POSIX: glibc hides it under _POSIX_C_SOURCE alone. */
#define _DEFAULT_SOURCE 1
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <time.h>

#include "lcore.h"

static int state_gc(lua_State *L)
{
    as_state *st = lua_touserdata(L, 1);
    as_loop_free(st->loop);
    st->loop = NULL;
    as_registry_free(&st->reg);
    as_timers_free(&st->timers);
    free(st->scratch);
    st->scratch = NULL;
    st->scratch_size = 0;
    return 0;
}

as_state *as_live_state(lua_State *L, const char *fname)
{
    as_state *st = lua_touserdata(L, STATE);
    if (st->loop == NULL)
        luaL_error(L, "%s: the asyncore core is closed (the Lua state is closing)", fname);
    return st;
}

/* set_defaults{readable=, writable=, send_writable=, timer_error=}: the
 * built-in methods the loop recognises, to decide interest without calling
 * them, and the function that reports a timer's error. */
static int l_set_defaults(lua_State *L)
{
    static const struct { const char *name; int slot; } slots[] = {
        {"readable", UV_READABLE},
        {"writable", UV_WRITABLE},
        {"send_writable", UV_SEND_WRITABLE},
        {"timer_error", UV_TIMER_ERROR},
    };
    luaL_checktype(L, 1, LUA_TTABLE);
    for (size_t i = 0; i < sizeof slots / sizeof slots[0]; i++) {
        lua_getfield(L, 1, slots[i].name);
        luaL_argcheck(L, lua_isfunction(L, -1), 1, "functions expected");
        lua_setiuservalue(L, STATE, slots[i].slot);
    }
    return 0;
}

static int l_backends(lua_State *L)
{
    const char *const *names = as_loop_backend_names();
    lua_newtable(L);
    for (int i = 0; names[i] != NULL; i++) {
        lua_pushstring(L, names[i]);
        lua_rawseti(L, -2, i + 1);
    }
    return 1;
}

static int l_default_backend(lua_State *L)
{
    lua_pushstring(L, as_loop_default_backend());
    return 1;
}

/* time() -> monotonic seconds, the clock of timers */
static int l_time(lua_State *L)
{
    lua_pushnumber(L, as_monotonic());
    return 1;
}

static const luaL_Reg functions[] = {
    {"socket", as_socket_new},
    {"file_wrapper", as_file_wrapper_new},
    {"set_blocking", as_set_blocking},
    {"fileno", as_fileno},
    {"pass", as_pass},
    {"touch", as_touch},
    {"reset", as_reset},
    {"rest", as_rest},
    {"read", as_read},
    {"write", as_write},
    {"_exception", as_exception},
    {"readwrite", as_readwrite},
    {"dispatcher_send", as_dispatcher_send},
    {"dispatcher_recv", as_dispatcher_recv},
    {"dispatcher_handle_read_event", as_dispatcher_handle_read_event},
    {"dispatcher_handle_write_event", as_dispatcher_handle_write_event},
    {"send_initiate_send", as_send_initiate_send},
    {"chat_set_terminator", as_chat_set_terminator},
    {"chat_get_terminator", as_chat_get_terminator},
    {"chat_collect", as_chat_collect},
    {"chat_get_data", as_chat_get_data},
    {"chat_handle_read", as_chat_handle_read},
    {"chat_handle_write", as_chat_handle_write},
    {"chat_flush", as_chat_flush},
    {"chat_push", as_chat_push},
    {"chat_push_with_producer", as_chat_push_with_producer},
    {"chat_close_when_done", as_chat_close_when_done},
    {"chat_initiate_send", as_chat_initiate_send},
    {"chat_writable", as_chat_writable},
    {"chat_discard_buffers", as_chat_discard_buffers},
    {"chat_out_buffered", as_chat_out_buffered},
    {"find_prefix_at_end", as_find_prefix_at_end},
    {"set_defaults", l_set_defaults},
    {"backends", l_backends},
    {"default_backend", l_default_backend},
    {"time", l_time},
    {"call_later", as_call_later},
    {"call_at", as_call_at},
    {NULL, NULL},
};

static void set_constants(lua_State *L)
{
    static const struct { const char *name; lua_Integer value; } constants[] = {
        {"AF_INET", AF_INET}, {"AF_INET6", AF_INET6}, {"AF_UNIX", AF_UNIX},
        {"SOCK_STREAM", SOCK_STREAM}, {"SOCK_DGRAM", SOCK_DGRAM},
        {"POLLIN", POLLIN}, {"POLLOUT", POLLOUT}, {"POLLPRI", POLLPRI},
        {"POLLHUP", POLLHUP}, {"POLLERR", POLLERR}, {"POLLNVAL", POLLNVAL},
        {"SOL_SOCKET", SOL_SOCKET}, {"SO_ERROR", SO_ERROR}, {"SO_REUSEADDR", SO_REUSEADDR},
#ifdef SO_REUSEPORT
        {"SO_REUSEPORT", SO_REUSEPORT},
#endif
        {"SO_BROADCAST", SO_BROADCAST}, {"SO_LINGER", SO_LINGER},
        {"SO_KEEPALIVE", SO_KEEPALIVE}, {"SO_RCVBUF", SO_RCVBUF},
        {"SO_SNDBUF", SO_SNDBUF}, {"SO_TYPE", SO_TYPE},
        {"IPPROTO_TCP", IPPROTO_TCP}, {"TCP_NODELAY", TCP_NODELAY},
        {"SHUT_RD", SHUT_RD}, {"SHUT_WR", SHUT_WR}, {"SHUT_RDWR", SHUT_RDWR},
        {"MSG_OOB", MSG_OOB}, {"MSG_PEEK", MSG_PEEK},
        {"FD_SETSIZE", FD_SETSIZE},
    };
    for (size_t i = 0; i < sizeof constants / sizeof constants[0]; i++) {
        lua_pushinteger(L, constants[i].value);
        lua_setfield(L, -2, constants[i].name);
    }
}

static int exit_now_tostring(lua_State *L)
{
    lua_pushliteral(L, "asyncore.ExitNow");
    return 1;
}

/* A unique value: error(ExitNow) leaves loop(), and callers compare with ==. */
static void push_exit_now(lua_State *L)
{
    lua_newtable(L);
    lua_newtable(L);
    lua_pushliteral(L, "asyncore.ExitNow");
    lua_setfield(L, -2, "__name");
    lua_pushcfunction(L, exit_now_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_setmetatable(L, -2);
}

int luaopen_asyncore_core(lua_State *L)
{
    luaL_checkversion(L);
    lua_newtable(L);

    as_state *st = lua_newuserdatauv(L, sizeof *st, UV_COUNT);
    memset(st, 0, sizeof *st);
    lua_newtable(L);
    lua_pushcfunction(L, state_gc);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    st->loop = as_loop_new();
    if (st->loop == NULL)
        return luaL_error(L, "asyncore.core: out of memory");

    push_exit_now(L);
    lua_pushvalue(L, -1);
    lua_setiuservalue(L, -3, UV_EXITNOW);
    lua_setfield(L, -3, "ExitNow");

    lua_pushvalue(L, -1);
    lua_pushcclosure(L, as_message_handler, 1);
    lua_setiuservalue(L, -2, UV_MSGH);

    as_open_timers(L);
    luaL_setfuncs(L, functions, 1); /* pops the state, each function's upvalue */
    as_open_errors(L);
    set_constants(L);
    as_open_socket(L);
    as_open_chat(L);

    /* As Python does at start-up: a write to a closed pipe or socket is an EPIPE
     * error, not the death of the process.  A handler the host set is kept. */
    struct sigaction sa;
    if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
        sa.sa_handler = SIG_IGN;
        sigaction(SIGPIPE, &sa, NULL);
    }
    return 1;
}
