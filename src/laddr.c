/* Socket addresses as Lua values: host, port for AF_INET/AF_INET6, a path for AF_UNIX. */
#define _GNU_SOURCE /* EAI_ADDRFAMILY, EAI_NODATA, EAI_SYSTEM names */
#include <arpa/inet.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stddef.h>
#include <string.h>
#include <sys/un.h>

#include "lcore.h"

static int check_unix(lua_State *L, int arg, struct sockaddr_storage *addr, socklen_t *len)
{
    size_t pathlen;
    const char *path = luaL_checklstring(L, arg, &pathlen);
    struct sockaddr_un *un = (struct sockaddr_un *)addr;
    luaL_argcheck(L, pathlen < sizeof un->sun_path, arg, "path too long");
    /* A leading zero byte names a Linux abstract socket, whose name is all of
       its bytes, zeros included.  A file path stops at its first zero byte, so
       one inside it would bind or reach another file: refused. */
    luaL_argcheck(L, pathlen == 0 || path[0] == 0 || memchr(path, 0, pathlen) == NULL, arg,
                  "path contains a zero byte");
    memset(un, 0, sizeof *un);
    un->sun_family = AF_UNIX;
    memcpy(un->sun_path, path, pathlen);
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + pathlen + (path[0] != 0));
    return 0;
}

static int check_port(lua_State *L, int arg)
{
    lua_Integer port = luaL_checkinteger(L, arg);
    luaL_argcheck(L, port >= 0 && port <= 65535, arg, "port must be 0-65535");
    return (int)port;
}

int as_check_address(lua_State *L, int arg, int family, int socktype, int passive,
                     struct sockaddr_storage *addr, socklen_t *len)
{
    if (family == AF_UNIX) {
        /* a port here is a mistake that would bind a file named after the host */
        luaL_argcheck(L, lua_isnoneornil(L, arg + 1), arg + 1,
                      "an AF_UNIX address is a path alone, no port");
        return check_unix(L, arg, addr, len);
    }
    const char *host = luaL_optstring(L, arg, "");
    int port = check_port(L, arg + 1);
    memset(addr, 0, sizeof *addr);
    /* Numeric addresses skip the resolver. */
    if (family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)addr;
        in->sin_family = AF_INET;
        in->sin_port = htons((uint16_t)port);
        *len = sizeof *in;
        if (host[0] == 0 && passive) {
            in->sin_addr.s_addr = htonl(INADDR_ANY);
            return 0;
        }
        if (strcmp(host, "<broadcast>") == 0) { /* Python's name for INADDR_BROADCAST */
            in->sin_addr.s_addr = htonl(INADDR_BROADCAST);
            return 0;
        }
        if (inet_pton(AF_INET, host, &in->sin_addr) == 1)
            return 0;
    } else if (family == AF_INET6) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)addr;
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        *len = sizeof *in6;
        if (host[0] == 0 && passive) {
            in6->sin6_addr = in6addr_any;
            return 0;
        }
        if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1)
            return 0;
    }
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = family;
    hints.ai_socktype = socktype;
    hints.ai_flags = passive ? AI_PASSIVE : 0;
    int rc = getaddrinfo(host[0] ? host : NULL, "0", &hints, &res);
    if (rc != 0)
        return rc;
    if (res->ai_addrlen > sizeof *addr) {
        freeaddrinfo(res);
        return EAI_FAMILY;
    }
    memcpy(addr, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    if (family == AF_INET)
        ((struct sockaddr_in *)addr)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)addr)->sin6_port = htons((uint16_t)port);
    return 0;
}

static const char *gai_name(int code)
{
    switch (code) {
    case EAI_AGAIN: return "EAI_AGAIN";
    case EAI_BADFLAGS: return "EAI_BADFLAGS";
    case EAI_FAIL: return "EAI_FAIL";
    case EAI_FAMILY: return "EAI_FAMILY";
    case EAI_MEMORY: return "EAI_MEMORY";
    case EAI_NONAME: return "EAI_NONAME";
    case EAI_SERVICE: return "EAI_SERVICE";
    case EAI_SOCKTYPE: return "EAI_SOCKTYPE";
#ifdef EAI_ADDRFAMILY
    case EAI_ADDRFAMILY: return "EAI_ADDRFAMILY";
#endif
#ifdef EAI_NODATA
    case EAI_NODATA: return "EAI_NODATA";
#endif
#ifdef EAI_SYSTEM
    case EAI_SYSTEM: return "EAI_SYSTEM";
#endif
    default: return "EAI_UNKNOWN";
    }
}

int as_push_gaierror(lua_State *L, const char *call, int code)
{
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s (%s)", call, gai_strerror(code), gai_name(code));
    lua_pushinteger(L, code);
    return 3;
}

int as_push_address(lua_State *L, const struct sockaddr *sa, socklen_t len)
{
    if (sa->sa_family == AF_UNIX) {
        const struct sockaddr_un *un = (const struct sockaddr_un *)sa;
        size_t offset = offsetof(struct sockaddr_un, sun_path);
        size_t pathlen = len > offset ? len - offset : 0;
        if (pathlen > 0 && un->sun_path[0] != 0)
            pathlen = strnlen(un->sun_path, pathlen); /* drop the trailing zero */
        lua_pushlstring(L, un->sun_path, pathlen);
        return 1;
    }
    char host[INET6_ADDRSTRLEN + IF_NAMESIZE + 1]; /* address, '%', zone */
    int port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        port = ntohs(in->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        /* A scoped (link-local) address keeps its zone as "%eth0", so that
           the host given back reaches the same peer when passed to sendto or
           connect; getnameinfo writes it as Python's socket.getnameinfo does. */
        if (in6->sin6_scope_id == 0 ||
            getnameinfo(sa, len, host, sizeof host, NULL, 0, NI_NUMERICHOST) != 0)
            inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        port = ntohs(in6->sin6_port);
    } else {
        lua_pushnil(L);
        return 1;
    }
    lua_pushstring(L, host);
    lua_pushinteger(L, port);
    return 2;
}
