/* The event loop core: the registry of interest by fd, the backend behind it,
 * and the wait.  Pure C; knows nothing of Lua.  Interest persists between
 * waits and reaches the backend only when it changes. */
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

/* Makes the named backend current.  Switching drops all interest (the caller
 * registers it again) and returns 1; staying returns 0; -1 with errno ENOENT
 * (no such backend) or what creating it failed with. */
int as_loop_use(as_loop *loop, const char *backend);
/* The current backend's name (NULL before the first as_loop_use). */
const char *as_loop_backend_name(const as_loop *loop);
/* The largest fd the current backend accepts, or -1 for no limit. */
int as_loop_fd_limit(const as_loop *loop);

/* fd's registered interest (0 if none). */
int as_loop_interest(const as_loop *loop, int fd);
/* Sets fd's interest (AS_READ|AS_WRITE|AS_PRI, 0 to drop it): 0, or -1 with
 * errno EBADF (negative fd), ERANGE (fd too large for the backend, e.g.
 * select's FD_SETSIZE), ENOMEM, or the backend's error.  An fd must be dropped
 * before it is closed. */
int as_loop_set(as_loop *loop, int fd, int mask);

/* Waits up to timeout seconds (negative: no limit).  Returns the number of
 * fired events and points *fired at them (valid until the next wait), or -1
 * with errno (EINTR when a signal arrived). */
int as_loop_wait(as_loop *loop, double timeout, as_event **fired);

#endif
