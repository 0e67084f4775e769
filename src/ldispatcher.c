/* dispatcher.send and dispatcher.recv: the socket calls of every read and write,
 * with Python asyncore's treatment of would-block and disconnection. */
#include <errno.h>
#include <sys/socket.h>
#include <unistd.h>

#include "lcore.h"

/* Errors that mean the peer is gone: the channel is closed, not failed. */
static int is_disconnect(int err)
{
    return err == ECONNRESET || err == ENOTCONN || err == ESHUTDOWN || err == ECONNABORTED ||
           err == EPIPE || err == EBADF;
}

static as_handle *handle_of(lua_State *L, const char *call)
{
    lua_getfield(L, 1, "socket");
    as_handle *h = as_test_handle(L, -1);
    if (h == NULL)
        luaL_error(L, "%s: the dispatcher has no socket (call create_socket or set_socket first)",
                   call);
    lua_pop(L, 1); /* the channel still references the socket */
    return h;
}

static void call_handle_close(lua_State *L)
{
    lua_getfield(L, 1, "handle_close");
    lua_pushvalue(L, 1);
    lua_call(L, 1, 0);
}

/* send(data) -> bytes sent; 0 when the socket would block or the peer is gone
 * (then handle_close has run). */
int as_dispatcher_send(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    as_handle *h = handle_of(L, "send");
    ssize_t n;
    do {
        if (h->fd < 0) {
            n = -1;
            errno = EBADF;
        } else if (h->family == 0) {
            n = write(h->fd, data, len);
        } else {
            n = send(h->fd, data, len, SEND_FLAGS);
        }
    } while (n < 0 && errno == EINTR);
    if (n >= 0) {
        lua_pushinteger(L, n);
        return 1;
    }
    int err = errno;
    if (err == EAGAIN || err == EWOULDBLOCK) {
        lua_pushinteger(L, 0);
        return 1;
    }
    if (is_disconnect(err)) {
        call_handle_close(L);
        lua_pushinteger(L, 0);
        return 1;
    }
    return as_raise(L, "send", err);
}

/* recv(n) -> up to n bytes; "" once the peer has closed or is gone (then
 * handle_close has run).  Would-block raises, as in Python. */
int as_dispatcher_recv(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    size_t size = as_check_size(L, 2);
    as_handle *h = handle_of(L, "recv");
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, size);
    ssize_t n;
    do {
        if (h->fd < 0) {
            n = -1;
            errno = EBADF;
        } else if (h->family == 0) {
            n = read(h->fd, p, size);
        } else {
            n = recv(h->fd, p, size, 0);
        }
    } while (n < 0 && errno == EINTR);
    int err = errno;
    if (n > 0) {
        luaL_pushresultsize(&b, (size_t)n);
        return 1;
    }
    if (n == 0 || is_disconnect(err)) {
        call_handle_close(L);
        lua_pushliteral(L, "");
        return 1;
    }
    return as_raise(L, "recv", err);
}
