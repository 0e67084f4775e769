/* Declarations shared by the Lua binding's files (the only C that sees Lua). */
#ifndef AS_LCORE_H
#define AS_LCORE_H

#include <sys/socket.h>

#include <lauxlib.h>
#include <lua.h>

#include "loop.h"
#include "timers.h"

#define AS_SOCKET_MT "asyncore.socket"
#define AS_FILE_MT "asyncore.file_wrapper"

/* Largest single recv: a caller asking for more gets at most this much. */
#define AS_RECV_MAX (1 << 20)

/* Flags for every send: a closed peer is an EPIPE error, never a SIGPIPE. */
#ifdef MSG_NOSIGNAL
#define SEND_FLAGS MSG_NOSIGNAL
#else
#define SEND_FLAGS 0
#endif

/* A socket or a file_wrapper: an fd, -1 once closed. */
typedef struct as_handle {
    int fd;
    int family; /* 0 for a file_wrapper */
    int type;
} as_handle;

/* The binding's per-Lua-state object, upvalue 1 of every core function.
 * Its user values hold Lua objects the loop needs (see enum below). */
/* Which channels a pass must look at (lregistry.c): the registry mirrors one
 * map; only channels with overridden readable/writable (polled) and channels
 * something happened to (dirty) are looked at, the rest keep their interest. */
typedef struct as_registry {
    unsigned char *flags; /* by fd: REG_* bits */
    size_t flags_cap;
    int *polled, npolled; /* fds asked readable()/writable() every pass */
    size_t polled_cap;
    int *dirty, ndirty; /* fds to look at in the next pass */
    size_t dirty_cap;
    int *work, nwork; /* the current pass's list */
    size_t work_cap;
    unsigned passes; /* since the last full look at the map */
} as_registry;

typedef struct as_state {
    as_loop *loop;
    as_registry reg;
    as_timers timers;
    char *scratch; /* where async_chat's reads land before framing */
    size_t scratch_size;
} as_state;

/* Every core function has the as_state userdata as its upvalue 1. */
#define STATE lua_upvalueindex(1)

/* lasyncore.c: the state of STATE, or an error naming fname once the
 * core's finalizer has freed it (a later finalizer may still call in while
 * the Lua state closes). */
as_state *as_live_state(lua_State *L, const char *fname);

enum {
    UV_TRACEBACK = 1, /* traceback of the last error caught by the loop */
    UV_EXITNOW,       /* the asyncore.ExitNow sentinel */
    UV_READABLE,      /* dispatcher.readable, for the fast path */
    UV_WRITABLE,      /* dispatcher.writable */
    UV_SEND_WRITABLE, /* dispatcher_with_send.writable */
    UV_MSGH,          /* the message handler of every protected handler call */
    UV_MIRROR,        /* the map the registry mirrors */
    UV_KNOWN,         /* fd -> channel as the registry last saw it */
    UV_TIMERS,        /* pending timers by address, keeping them alive */
    UV_TIMER_ERROR,   /* calls asyncore.handle_timer_error(err, traceback) */
    UV_COUNT = UV_TIMER_ERROR
};

/* lerror.c: OS errors as "<call>: <strerror> (<ERRNO_NAME>)". */
const char *as_push_oserror(lua_State *L, const char *call, int err);
int as_fail(lua_State *L, const char *call, int err); /* pushes nil, message, errno */
int as_raise(lua_State *L, const char *call, int err);
void as_open_errors(lua_State *L); /* sets errno, strerror, oserror on the table on top */

/* laddr.c: addresses as Lua values (host, port) or (path). */
/* Reads the address at arg (and arg+1 for IP families) into *addr.  Returns 0,
 * or a getaddrinfo error code with *addr untouched.  Bad arguments raise. */
int as_check_address(lua_State *L, int arg, int family, int socktype, int passive,
                     struct sockaddr_storage *addr, socklen_t *len);
int as_push_gaierror(lua_State *L, const char *call, int code); /* nil, message, code */
/* Pushes host, port (or path for AF_UNIX); returns how many values. */
int as_push_address(lua_State *L, const struct sockaddr *sa, socklen_t len);

/* lsocket.c */
as_handle *as_test_handle(lua_State *L, int idx); /* socket or file_wrapper, else NULL */
void as_open_socket(lua_State *L);                /* registers metatables; state on top */
int as_socket_new(lua_State *L);
int as_file_wrapper_new(lua_State *L);
int as_set_blocking(lua_State *L);
int as_fileno(lua_State *L);
size_t as_check_size(lua_State *L, int arg); /* a positive size, capped at AS_RECV_MAX */

/* ldispatcher.c: the dispatcher methods that touch the socket on hot paths. */
int as_dispatcher_send(lua_State *L);
int as_dispatcher_recv(lua_State *L);
int as_is_disconnect(int err); /* errno means the peer is gone */
int as_dispatcher_handle_read_event(lua_State *L);
int as_dispatcher_handle_write_event(lua_State *L);
int as_send_initiate_send(lua_State *L); /* dispatcher_with_send's */
/* The handle of the channel at idx; raises, naming call, when it has no socket. */
as_handle *as_channel_handle(lua_State *L, int idx, const char *call);
/* One send or recv on h, retried on EINTR: bytes, or -1 with errno set. */
long as_handle_send(as_handle *h, const char *p, size_t n);
long as_handle_recv(as_handle *h, char *p, size_t n);
void as_call_method(lua_State *L, int obj, const char *name); /* obj:name(), unprotected */
int as_truthy_field(lua_State *L, int obj, const char *name);  /* obj[name] is not nil/false */

/* lpass.c: one loop pass and the event dispatch helpers. */
int as_pass(lua_State *L);
int as_read(lua_State *L);
int as_write(lua_State *L);
int as_exception(lua_State *L);
int as_readwrite(lua_State *L);
int as_message_handler(lua_State *L); /* upvalue 1: the state */
int as_ends_with(lua_State *L, int idx, const char *suffix); /* a string value ending so */
/* The error on top of the stack, raised by a handler of obj: propagate it (ExitNow,
 * Ctrl-C) or pass it to obj's handle_close (a disconnect, if asked) or handle_error. */
void as_route_error(lua_State *L, int obj, int disconnect_closes);
int as_must_propagate(lua_State *L, int err); /* ExitNow or Ctrl-C: leaves the loop */

/* ltimer.c: timers as Lua objects (STATE is upvalue 1 of each). */
void as_open_timers(lua_State *L); /* state on top: its timer table, the metatable */
int as_call_later(lua_State *L);
int as_call_at(lua_State *L);
/* Runs the timers due now; an error that must leave the loop propagates. */
void as_run_timers(lua_State *L);
/* wait (seconds, negative for no limit) shortened to end at the next timer. */
double as_next_timer_wait(lua_State *L, double wait);
int as_timers_pending(lua_State *L);

/* lregistry.c: the channels a pass looks at. */
void as_registry_free(as_registry *reg);
/* Marks fd to be looked at in the next pass (it changed, or had events). */
int as_registry_touch(as_registry *reg, int fd);
/* Brings the loop's interest up to date with map for one pass (all of it when
 * full); errors of readable()/writable() go to the channel's handle_error. */
void as_registry_update(lua_State *L, int map, int full);
int as_touch(lua_State *L);      /* touch(channel): its state changed */
int as_reset(lua_State *L);      /* reset(map, fd): fd joins or leaves the map */
int as_rest(lua_State *L);       /* rest(channel): not read in the next wait */
/* touch for a channel table at idx, via its _fileno: that fd, or -1 when it
 * has none; STATE is upvalue 1 */
int as_touch_channel(lua_State *L, int idx);

/* lchat.c: async_chat's framing and output queue. */
void as_open_chat(lua_State *L); /* registers the buffers' metatable */
int as_chat_wants_write(lua_State *L, int obj); /* async_chat.writable(), in C */
int as_chat_set_terminator(lua_State *L);
int as_chat_get_terminator(lua_State *L);
int as_chat_collect(lua_State *L);
int as_chat_get_data(lua_State *L);
int as_chat_handle_read(lua_State *L);
int as_chat_handle_write(lua_State *L);
int as_chat_flush(lua_State *L);
int as_chat_push(lua_State *L);
int as_chat_push_with_producer(lua_State *L);
int as_chat_close_when_done(lua_State *L);
int as_chat_initiate_send(lua_State *L);
int as_chat_writable(lua_State *L);
int as_chat_discard_buffers(lua_State *L);
int as_chat_out_buffered(lua_State *L);
int as_find_prefix_at_end(lua_State *L);

#endif
