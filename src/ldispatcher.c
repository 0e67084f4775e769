/* dispatcher.send and dispatcher.recv: the socket calls of every read and write,
 * with Python asyncore's treatment of would-block and disconnection. */
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lcore.h"

/* Errors that mean the peer is gone: the channel is closed, not failed. */
int as_is_disconnect(int err)
{
    return err == ECONNRESET || err == ENOTCONN || err == ESHUTDOWN || err == ECONNABORTED ||
           err == EPIPE || err == EBADF;
}

as_handle *as_channel_handle(lua_State *L, int idx, const char *call)
{
    lua_getfield(L, idx, "socket");
    as_handle *h = as_test_handle(L, -1);
    if (h == NULL)
        luaL_error(L, "%s: the dispatcher has no socket (call create_socket or set_socket first)",
                   call);
    lua_pop(L, 1); /* the channel still references the socket */
    return h;
}

void as_call_method(lua_State *L, int obj, const char *name)
{
    lua_getfield(L, obj, name);
    lua_pushvalue(L, obj);
    lua_call(L, 1, 0);
}

long as_handle_send(as_handle *h, const char *p, size_t n)
{
    ssize_t sent;
    do {
        if (h->fd < 0) {
            sent = -1;
            errno = EBADF;
        } else if (h->family == 0) {
            sent = write(h->fd, p, n);
        } else {
            sent = send(h->fd, p, n, SEND_FLAGS);
        }
    } while (sent < 0 && errno == EINTR);
    return (long)sent;
}

long as_handle_recv(as_handle *h, char *p, size_t n)
{
    ssize_t got;
    do {
        if (h->fd < 0) {
            got = -1;
            errno = EBADF;
        } else if (h->family == 0) {
            got = read(h->fd, p, n);
        } else {
            got = recv(h->fd, p, n, 0);
        }
    } while (got < 0 && errno == EINTR);
    return (long)got;
}

/* What dispatcher.send makes of a send by the channel at 1 that gave n: the
 * bytes sent, or 0 when the socket would block or the peer is gone (then
 * handle_close has run); any other failure raises. */
static long send_outcome(lua_State *L, long n)
{
    if (n >= 0)
        return n;
    int err = errno;
    if (err == EAGAIN || err == EWOULDBLOCK)
        return 0;
    if (!as_is_disconnect(err))
        as_raise(L, "send", err);
    as_call_method(L, 1, "handle_close");
    return 0;
}

/* send(data) -> bytes sent; 0 when the socket would block or the peer is gone
 * (then handle_close has run). */
int as_dispatcher_send(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    as_handle *h = as_channel_handle(L, 1, "send");
    lua_pushinteger(L, send_outcome(L, as_handle_send(h, data, len)));
    return 1;
}

/* recv(n) -> up to n bytes; "" once the peer has closed or is gone (then
 * handle_close has run).  Would-block raises, as in Python. */
int as_dispatcher_recv(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    size_t size = as_check_size(L, 2);
    as_handle *h = as_channel_handle(L, 1, "recv");
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, size);
    long n = as_handle_recv(h, p, size);
    int err = errno;
    if (n > 0) {
        luaL_pushresultsize(&b, (size_t)n);
        return 1;
    }
    if (n == 0 || as_is_disconnect(err)) {
        as_call_method(L, 1, "handle_close");
        lua_pushliteral(L, "");
        return 1;
    }
    return as_raise(L, "recv", err);
}

int as_truthy_field(lua_State *L, int obj, const char *name)
{
    lua_getfield(L, obj, name);
    int truth = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return truth;
}

/* handle_read_event(): Python's, in C: the loop calls it for every read. */
int as_dispatcher_handle_read_event(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    if (as_truthy_field(L, 1, "accepting")) {
        /* accepting sockets are never connected: they make new sockets */
        as_call_method(L, 1, "handle_accept");
        return 0;
    }
    if (!as_truthy_field(L, 1, "connected") && as_truthy_field(L, 1, "connecting"))
        as_call_method(L, 1, "handle_connect_event");
    as_call_method(L, 1, "handle_read");
    return 0;
}

/* handle_write_event(): Python's, in C. */
int as_dispatcher_handle_write_event(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    if (as_truthy_field(L, 1, "accepting"))
        return 0; /* an accepting socket gets no write event: pretend none came */
    if (!as_truthy_field(L, 1, "connected") && as_truthy_field(L, 1, "connecting"))
        as_call_method(L, 1, "handle_connect_event");
    as_call_method(L, 1, "handle_write");
    return 0;
}

/* dispatcher_with_send.initiate_send(): one send of at most 64 KiB of
 * out_buffer, through dispatcher.send's rules (as Python's). */
int as_send_initiate_send(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    lua_getfield(L, 1, "out_buffer");
    size_t len;
    const char *buffer = lua_tolstring(L, 2, &len);
    if (buffer == NULL)
        return luaL_error(L, "initiate_send: out_buffer must be a string");
    as_handle *h = as_channel_handle(L, 1, "send");
    long n = send_outcome(L, as_handle_send(h, buffer, len > 65536 ? 65536 : len));
    if (n > 0) {
        lua_pushlstring(L, buffer + n, len - (size_t)n);
        lua_setfield(L, 1, "out_buffer");
    }
    return 0;
}
