/* The event loop core: backend selection, interest for one pass, and the wait.
 * Pure C; knows nothing of Lua.  A pass is: as_loop_begin, as_loop_watch for
 * each fd of interest, then as_loop_wait, which returns the fired events. */
#ifndef AS_LOOP_H
#define AS_LOOP_H

/* Interest and readiness bits; a backend translates its own flags to these. */
enum {
    AS_READ = 1,   /* POLLIN  */
    AS_WRITE = 2,  /* POLLOUT */
    AS_PRI = 4,    /* POLLPRI, or select's exceptional set */
    AS_HUP = 8,
    AS_ERR = 16,
    AS_NVAL = 32
};

typedef struct as_event {
    int fd;
    int events; /* AS_* bits */
} as_event;

typedef struct as_loop as_loop;
typedef struct as_backend as_backend;

/* NULL when out of memory. */
as_loop *as_loop_new(void);
void as_loop_free(as_loop *loop);

/* The backends compiled in, best first; NULL-terminated. */
const char *const *as_loop_backend_names(void);
/* The best backend for this platform. */
const char *as_loop_default_backend(void);

/* Starts a pass on the named backend: 0, or -1 with errno ENOENT (no such
 * backend) or ENOMEM.  Interest declared by an unfinished pass is dropped. */
int as_loop_begin(as_loop *loop, const char *backend);
/* The name of the backend of the current pass. */
const char *as_loop_backend_name(const as_loop *loop);
/* Declares interest (AS_READ|AS_WRITE|AS_PRI) in fd for this pass: 0, or -1
 * with errno EBADF (negative fd), ERANGE (fd too large for the backend, e.g.
 * select's FD_SETSIZE) or ENOMEM. */
int as_loop_watch(as_loop *loop, int fd, int mask);
/* The largest fd the current backend accepts, or -1 for no limit. */
int as_loop_fd_limit(const as_loop *loop);
/* Waits up to timeout seconds (negative: no limit).  Returns the number of
 * fired events and points *fired at them (valid until the next wait), or -1
 * with errno (EINTR when a signal arrived). */
int as_loop_wait(as_loop *loop, double timeout, as_event **fired);

#endif
