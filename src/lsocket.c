/* The socket and file_wrapper userdata.  Socket methods return nil, message,
 * errno on OS failure (a closed socket fails with EBADF, as in Python);
 * file_wrapper methods raise, as Python's os.read/os.write do. */
#define _GNU_SOURCE /* accept4, SOCK_NONBLOCK, SOCK_CLOEXEC */
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <lualib.h>

#include "lcore.h"

/* An integer argument that must fit an int (fds, flags, option values):
 * larger ones are an error, never silently truncated. */
static int int_arg(lua_State *L, int arg)
{
    lua_Integer n = luaL_checkinteger(L, arg);
    luaL_argcheck(L, n >= INT_MIN && n <= INT_MAX, arg, "out of range for an int");
    return (int)n;
}

static int opt_int_arg(lua_State *L, int arg, int def)
{
    return lua_isnoneornil(L, arg) ? def : int_arg(L, arg);
}


as_handle *as_test_handle(lua_State *L, int idx)
{
    as_handle *h = luaL_testudata(L, idx, AS_SOCKET_MT);
    return h != NULL ? h : luaL_testudata(L, idx, AS_FILE_MT);
}

static as_handle *check_socket(lua_State *L)
{
    return luaL_checkudata(L, 1, AS_SOCKET_MT);
}

static int set_flag(int fd, int get, int set, int flag, int on)
{
    int flags = fcntl(fd, get);
    if (flags < 0)
        return -1;
    int wanted = on ? flags | flag : flags & ~flag;
    return wanted == flags ? 0 : fcntl(fd, set, wanted);
}

static as_handle *push_handle(lua_State *L, int fd, int family, int type, const char *mt)
{
    as_handle *h = lua_newuserdatauv(L, sizeof *h, 0);
    h->fd = fd;
    h->family = family;
    h->type = type;
    luaL_setmetatable(L, mt);
    return h;
}

/* Closes once: the handle is marked closed before close(2) runs. */
static int close_handle(as_handle *h)
{
    int fd = h->fd;
    h->fd = -1;
    return fd < 0 ? 0 : close(fd);
}

/* socket([family [, type]]) -> a non-blocking, close-on-exec socket */
int as_socket_new(lua_State *L)
{
    int family = opt_int_arg(L, 1, AF_INET);
    int type = opt_int_arg(L, 2, SOCK_STREAM);
    luaL_argcheck(L, family == AF_INET || family == AF_INET6 || family == AF_UNIX, 1,
                  "family must be AF_INET, AF_INET6 or AF_UNIX");
    luaL_argcheck(L, type == SOCK_STREAM || type == SOCK_DGRAM, 2,
                  "type must be SOCK_STREAM or SOCK_DGRAM");
#ifdef SOCK_NONBLOCK
    int fd = socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
#else
    int fd = socket(family, type, 0);
    if (fd >= 0 && (set_flag(fd, F_GETFL, F_SETFL, O_NONBLOCK, 1) != 0 ||
                    set_flag(fd, F_GETFD, F_SETFD, FD_CLOEXEC, 1) != 0)) {
        int err = errno;
        close(fd);
        errno = err;
        fd = -1;
    }
#endif
    if (fd < 0)
        return as_fail(L, "socket", errno);
#ifdef SO_NOSIGPIPE
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_NOSIGPIPE, &one, sizeof one);
#endif
    push_handle(L, fd, family, type, AS_SOCKET_MT);
    return 1;
}

static int s_fileno(lua_State *L)
{
    lua_pushinteger(L, check_socket(L)->fd);
    return 1;
}

static int s_close(lua_State *L)
{
    as_handle *h = check_socket(L);
    if (close_handle(h) != 0 && errno != EINTR)
        return as_fail(L, "close", errno);
    lua_pushboolean(L, 1);
    return 1;
}

static int s_gc(lua_State *L)
{
    close_handle(lua_touserdata(L, 1));
    return 0;
}

static const char *family_name(int family)
{
    switch (family) {
    case AF_INET: return "AF_INET";
    case AF_INET6: return "AF_INET6";
    case AF_UNIX: return "AF_UNIX";
    default: return "?";
    }
}

static int s_tostring(lua_State *L)
{
    as_handle *h = check_socket(L);
    if (h->fd < 0)
        lua_pushliteral(L, "asyncore.socket (closed)");
    else
        lua_pushfstring(L, "asyncore.socket (fd=%d, %s, %s)", h->fd, family_name(h->family),
                        h->type == SOCK_DGRAM ? "SOCK_DGRAM" : "SOCK_STREAM");
    return 1;
}

/* An OS failure, with EBADF for a closed socket. */
#define FAIL_IF_CLOSED(L, h, call)                                                       \
    do {                                                                                 \
        if ((h)->fd < 0)                                                                 \
            return as_fail((L), (call), EBADF);                                          \
    } while (0)

static int s_setblocking(lua_State *L)
{
    as_handle *h = check_socket(L);
    luaL_checkany(L, 2);
    FAIL_IF_CLOSED(L, h, "setblocking");
    if (set_flag(h->fd, F_GETFL, F_SETFL, O_NONBLOCK, !lua_toboolean(L, 2)) != 0)
        return as_fail(L, "setblocking", errno);
    lua_pushboolean(L, 1);
    return 1;
}

static int s_getblocking(lua_State *L)
{
    as_handle *h = check_socket(L);
    FAIL_IF_CLOSED(L, h, "getblocking");
    int flags = fcntl(h->fd, F_GETFL);
    if (flags < 0)
        return as_fail(L, "getblocking", errno);
    lua_pushboolean(L, !(flags & O_NONBLOCK));
    return 1;
}

/* gettimeout() -> 0 for a non-blocking socket, nil for a blocking one (as Python) */
static int s_gettimeout(lua_State *L)
{
    int n = s_getblocking(L);
    if (n != 1)
        return n;
    if (lua_toboolean(L, -1))
        lua_pushnil(L);
    else
        lua_pushinteger(L, 0);
    return 1;
}

static int s_get_inheritable(lua_State *L)
{
    as_handle *h = check_socket(L);
    FAIL_IF_CLOSED(L, h, "get_inheritable");
    int flags = fcntl(h->fd, F_GETFD);
    if (flags < 0)
        return as_fail(L, "get_inheritable", errno);
    lua_pushboolean(L, !(flags & FD_CLOEXEC));
    return 1;
}

static int s_bind(lua_State *L)
{
    as_handle *h = check_socket(L);
    struct sockaddr_storage addr;
    socklen_t len;
    int rc = as_check_address(L, 2, h->family, h->type, 1, &addr, &len);
    if (rc != 0)
        return as_push_gaierror(L, "bind", rc);
    FAIL_IF_CLOSED(L, h, "bind");
    if (bind(h->fd, (struct sockaddr *)&addr, len) != 0)
        return as_fail(L, "bind", errno);
    lua_pushboolean(L, 1);
    return 1;
}

static int s_listen(lua_State *L)
{
    as_handle *h = check_socket(L);
    lua_Integer backlog = luaL_optinteger(L, 2, SOMAXCONN < 128 ? SOMAXCONN : 128);
    luaL_argcheck(L, backlog >= 0 && backlog <= 65535, 2, "backlog must be 0-65535");
    FAIL_IF_CLOSED(L, h, "listen");
    if (listen(h->fd, (int)backlog) != 0)
        return as_fail(L, "listen", errno);
    lua_pushboolean(L, 1);
    return 1;
}

/* connect_ex(address) -> errno of the attempt (0: connected), or nil, message for a
 * name that does not resolve */
static int s_connect_ex(lua_State *L)
{
    as_handle *h = check_socket(L);
    struct sockaddr_storage addr;
    socklen_t len;
    int rc = as_check_address(L, 2, h->family, h->type, 0, &addr, &len);
    if (rc != 0)
        return as_push_gaierror(L, "connect", rc);
    int err = EBADF;
    if (h->fd >= 0)
        err = connect(h->fd, (struct sockaddr *)&addr, len) == 0 ? 0 : errno;
    lua_pushinteger(L, err);
    return 1;
}

static int s_connect(lua_State *L)
{
    int n = s_connect_ex(L);
    if (lua_isnil(L, -n))
        return n;
    int err = (int)lua_tointeger(L, -1);
    if (err != 0)
        return as_fail(L, "connect", err);
    lua_pushboolean(L, 1);
    return 1;
}

/* accept() -> socket, host, port (or socket, path); nil, message, errno on failure */
static int s_accept(lua_State *L)
{
    as_handle *h = check_socket(L);
    FAIL_IF_CLOSED(L, h, "accept");
    struct sockaddr_storage addr;
    socklen_t len = sizeof addr;
#ifdef SOCK_NONBLOCK
    int fd = accept4(h->fd, (struct sockaddr *)&addr, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
#else
    int fd = accept(h->fd, (struct sockaddr *)&addr, &len);
    if (fd >= 0) {
        set_flag(fd, F_GETFL, F_SETFL, O_NONBLOCK, 1);
        set_flag(fd, F_GETFD, F_SETFD, FD_CLOEXEC, 1);
    }
#endif
    if (fd < 0)
        return as_fail(L, "accept", errno);
    push_handle(L, fd, h->family, h->type, AS_SOCKET_MT);
    if (len == 0) { /* an unnamed AF_UNIX peer */
        lua_pushliteral(L, "");
        return 2;
    }
    return 1 + as_push_address(L, (struct sockaddr *)&addr, len);
}

static int s_send(lua_State *L)
{
    as_handle *h = check_socket(L);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    int flags = opt_int_arg(L, 3, 0);
    FAIL_IF_CLOSED(L, h, "send");
    ssize_t n = send(h->fd, data, len, flags | SEND_FLAGS);
    if (n < 0)
        return as_fail(L, "send", errno);
    lua_pushinteger(L, n);
    return 1;
}

size_t as_check_size(lua_State *L, int arg)
{
    lua_Integer n = luaL_checkinteger(L, arg);
    luaL_argcheck(L, n > 0, arg, "size must be positive");
    return n > AS_RECV_MAX ? AS_RECV_MAX : (size_t)n;
}

static int s_recv(lua_State *L)
{
    as_handle *h = check_socket(L);
    size_t size = as_check_size(L, 2);
    int flags = opt_int_arg(L, 3, 0);
    FAIL_IF_CLOSED(L, h, "recv");
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, size);
    ssize_t n = recv(h->fd, p, size, flags);
    if (n < 0)
        return as_fail(L, "recv", errno);
    luaL_pushresultsize(&b, (size_t)n);
    return 1;
}

/* sendto(data, address) -> bytes sent */
static int s_sendto(lua_State *L)
{
    as_handle *h = check_socket(L);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    struct sockaddr_storage addr;
    socklen_t addrlen;
    int rc = as_check_address(L, 3, h->family, h->type, 0, &addr, &addrlen);
    if (rc != 0)
        return as_push_gaierror(L, "sendto", rc);
    FAIL_IF_CLOSED(L, h, "sendto");
    ssize_t n = sendto(h->fd, data, len, SEND_FLAGS, (struct sockaddr *)&addr, addrlen);
    if (n < 0)
        return as_fail(L, "sendto", errno);
    lua_pushinteger(L, n);
    return 1;
}

/* recvfrom(n) -> data, host, port (or data, path) */
static int s_recvfrom(lua_State *L)
{
    as_handle *h = check_socket(L);
    size_t size = as_check_size(L, 2);
    FAIL_IF_CLOSED(L, h, "recvfrom");
    struct sockaddr_storage addr;
    socklen_t addrlen = sizeof addr;
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, size);
    ssize_t n = recvfrom(h->fd, p, size, 0, (struct sockaddr *)&addr, &addrlen);
    if (n < 0)
        return as_fail(L, "recvfrom", errno);
    luaL_pushresultsize(&b, (size_t)n);
    if (addrlen == 0) {
        lua_pushnil(L);
        return 2;
    }
    return 1 + as_push_address(L, (struct sockaddr *)&addr, addrlen);
}

static int push_name(lua_State *L, int peer)
{
    as_handle *h = check_socket(L);
    const char *call = peer ? "getpeername" : "getsockname";
    FAIL_IF_CLOSED(L, h, call);
    struct sockaddr_storage addr;
    socklen_t len = sizeof addr;
    int rc = peer ? getpeername(h->fd, (struct sockaddr *)&addr, &len)
                  : getsockname(h->fd, (struct sockaddr *)&addr, &len);
    if (rc != 0)
        return as_fail(L, call, errno);
    if (len == 0) {
        lua_pushliteral(L, "");
        return 1;
    }
    return as_push_address(L, (struct sockaddr *)&addr, len);
}

static int s_getsockname(lua_State *L)
{
    return push_name(L, 0);
}

static int s_getpeername(lua_State *L)
{
    return push_name(L, 1);
}

static int s_shutdown(lua_State *L)
{
    as_handle *h = check_socket(L);
    lua_Integer how = luaL_checkinteger(L, 2);
    luaL_argcheck(L, how == SHUT_RD || how == SHUT_WR || how == SHUT_RDWR, 2,
                  "how must be SHUT_RD, SHUT_WR or SHUT_RDWR");
    FAIL_IF_CLOSED(L, h, "shutdown");
    if (shutdown(h->fd, (int)how) != 0)
        return as_fail(L, "shutdown", errno);
    lua_pushboolean(L, 1);
    return 1;
}

/* setsockopt(level, name, value) for integer options; SO_LINGER takes onoff, seconds */
static int s_setsockopt(lua_State *L)
{
    as_handle *h = check_socket(L);
    int level = int_arg(L, 2), name = int_arg(L, 3);
    int value = lua_isboolean(L, 4) ? lua_toboolean(L, 4) : int_arg(L, 4);
    FAIL_IF_CLOSED(L, h, "setsockopt");
    int rc;
    if (level == SOL_SOCKET && name == SO_LINGER) {
        struct linger lg = {.l_onoff = value, .l_linger = opt_int_arg(L, 5, 0)};
        rc = setsockopt(h->fd, level, name, &lg, sizeof lg);
    } else {
        rc = setsockopt(h->fd, level, name, &value, sizeof value);
    }
    if (rc != 0)
        return as_fail(L, "setsockopt", errno);
    lua_pushboolean(L, 1);
    return 1;
}

static int s_getsockopt(lua_State *L)
{
    as_handle *h = check_socket(L);
    int level = int_arg(L, 2), name = int_arg(L, 3);
    FAIL_IF_CLOSED(L, h, "getsockopt");
    if (level == SOL_SOCKET && name == SO_LINGER) {
        struct linger lg;
        socklen_t len = sizeof lg;
        if (getsockopt(h->fd, level, name, &lg, &len) != 0)
            return as_fail(L, "getsockopt", errno);
        lua_pushinteger(L, lg.l_onoff);
        lua_pushinteger(L, lg.l_linger);
        return 2;
    }
    int value = 0;
    socklen_t len = sizeof value;
    if (getsockopt(h->fd, level, name, &value, &len) != 0)
        return as_fail(L, "getsockopt", errno);
    lua_pushinteger(L, value);
    return 1;
}

/* Fields read as attributes, as on a Python socket: family, type. */
static int s_index(lua_State *L)
{
    as_handle *h = check_socket(L);
    lua_pushvalue(L, 2);
    if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL)
        return 1;
    const char *key = lua_tostring(L, 2);
    if (key != NULL && strcmp(key, "family") == 0)
        lua_pushinteger(L, h->family);
    else if (key != NULL && strcmp(key, "type") == 0)
        lua_pushinteger(L, h->type);
    else
        lua_pushnil(L);
    return 1;
}

static const luaL_Reg socket_methods[] = {
    {"fileno", s_fileno},
    {"close", s_close},
    {"setblocking", s_setblocking},
    {"getblocking", s_getblocking},
    {"gettimeout", s_gettimeout},
    {"get_inheritable", s_get_inheritable},
    {"bind", s_bind},
    {"listen", s_listen},
    {"connect", s_connect},
    {"connect_ex", s_connect_ex},
    {"accept", s_accept},
    {"send", s_send},
    {"recv", s_recv},
    {"sendto", s_sendto},
    {"recvfrom", s_recvfrom},
    {"getsockname", s_getsockname},
    {"getpeername", s_getpeername},
    {"shutdown", s_shutdown},
    {"setsockopt", s_setsockopt},
    {"getsockopt", s_getsockopt},
    {NULL, NULL},
};

/* ---- file_wrapper: an fd dup'd from a file, looking enough like a socket ---- */

static as_handle *check_file(lua_State *L)
{
    return luaL_checkudata(L, 1, AS_FILE_MT);
}

/* The fd of an integer or a Lua file at arg. */
static int fd_arg(lua_State *L, int arg)
{
    if (lua_isinteger(L, arg)) {
        lua_Integer fd = lua_tointeger(L, arg);
        luaL_argcheck(L, fd <= INT_MAX, arg, "not a file descriptor");
        return fd < 0 ? -1 : (int)fd; /* the call fails with EBADF, as os.dup(-1) */
    }
    luaL_Stream *stream = luaL_testudata(L, arg, LUA_FILEHANDLE);
    if (stream == NULL)
        luaL_typeerror(L, arg, "integer fd or file");
    if (stream->closef == NULL || stream->f == NULL)
        luaL_argerror(L, arg, "attempt to use a closed file");
    return fileno(stream->f);
}

int as_fileno(lua_State *L)
{
    lua_pushinteger(L, fd_arg(L, 1));
    return 1;
}

/* set_blocking(fd_or_file, flag) */
int as_set_blocking(lua_State *L)
{
    int fd = fd_arg(L, 1);
    luaL_checkany(L, 2);
    if (set_flag(fd, F_GETFL, F_SETFL, O_NONBLOCK, !lua_toboolean(L, 2)) != 0)
        return as_raise(L, "set_blocking", errno);
    return 0;
}

int as_file_wrapper_new(lua_State *L)
{
    int fd = fd_arg(L, 1);
    int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (copy < 0)
        return as_raise(L, "file_wrapper", errno);
    push_handle(L, copy, 0, 0, AS_FILE_MT);
    return 1;
}

static int f_recv(lua_State *L)
{
    as_handle *h = check_file(L);
    size_t size = as_check_size(L, 2);
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, size);
    ssize_t n = h->fd < 0 ? (errno = EBADF, -1) : read(h->fd, p, size);
    if (n < 0)
        return as_raise(L, "read", errno);
    luaL_pushresultsize(&b, (size_t)n);
    return 1;
}

static int f_send(lua_State *L)
{
    as_handle *h = check_file(L);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    ssize_t n = h->fd < 0 ? (errno = EBADF, -1) : write(h->fd, data, len);
    if (n < 0)
        return as_raise(L, "write", errno);
    lua_pushinteger(L, n);
    return 1;
}

static int f_close(lua_State *L)
{
    if (close_handle(check_file(L)) != 0 && errno != EINTR)
        return as_raise(L, "close", errno);
    lua_pushboolean(L, 1);
    return 1;
}

static int f_fileno(lua_State *L)
{
    lua_pushinteger(L, check_file(L)->fd);
    return 1;
}

/* Only what asyncore asks of a socket: SO_ERROR, always 0. */
static int f_getsockopt(lua_State *L)
{
    check_file(L);
    lua_Integer level = luaL_checkinteger(L, 2), name = luaL_checkinteger(L, 3);
    if (level != SOL_SOCKET || name != SO_ERROR)
        return luaL_error(L, "getsockopt: a file_wrapper has only SOL_SOCKET, SO_ERROR");
    lua_pushinteger(L, 0);
    return 1;
}

static int f_tostring(lua_State *L)
{
    as_handle *h = check_file(L);
    if (h->fd < 0)
        lua_pushliteral(L, "asyncore.file_wrapper (closed)");
    else
        lua_pushfstring(L, "asyncore.file_wrapper (fd=%d)", h->fd);
    return 1;
}

static int f_index(lua_State *L)
{
    as_handle *h = check_file(L);
    lua_pushvalue(L, 2);
    if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL)
        return 1;
    const char *key = lua_tostring(L, 2);
    if (key != NULL && strcmp(key, "fd") == 0)
        lua_pushinteger(L, h->fd);
    else
        lua_pushnil(L);
    return 1;
}

static const luaL_Reg file_methods[] = {
    {"recv", f_recv},
    {"read", f_recv},
    {"send", f_send},
    {"write", f_send},
    {"close", f_close},
    {"fileno", f_fileno},
    {"getsockopt", f_getsockopt},
    {NULL, NULL},
};

static void new_type(lua_State *L, const char *name, const luaL_Reg *methods,
                     lua_CFunction index, lua_CFunction tostring, lua_CFunction gc)
{
    luaL_newmetatable(L, name);
    lua_newtable(L);
    luaL_setfuncs(L, methods, 0);
    lua_pushcclosure(L, index, 1);
    lua_setfield(L, -2, "__index");
    lua_pushcfunction(L, tostring);
    lua_setfield(L, -2, "__tostring");
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, gc);
    lua_setfield(L, -2, "__close");
    lua_pop(L, 1);
}

void as_open_socket(lua_State *L)
{
    new_type(L, AS_SOCKET_MT, socket_methods, s_index, s_tostring, s_gc);
    new_type(L, AS_FILE_MT, file_methods, f_index, f_tostring, s_gc);
}
