/* The interface every readiness backend implements: one file per backend.
 * A backend holds the interest the loop registered, changed only when it
 * changes, and waits on it. */
#ifndef AS_BACKEND_H
#define AS_BACKEND_H

#include <stddef.h>

#include "grow.h"
#include "loop.h"

struct as_backend {
    const char *name;
    /* Largest fd accepted, or -1 for none. */
    int fd_limit;
    /* NULL, with errno, on failure. */
    void *(*create)(void);
    void (*destroy)(void *state);
    /* Changes fd's interest from old to mask (AS_READ|AS_WRITE|AS_PRI; either
     * may be 0, never both): 0, or -1 with errno. */
    int (*set)(void *state, int fd, int old, int mask);
    /* Waits; fills *fired (owned by the backend).  Returns the count, or -1
     * with errno. */
    int (*wait)(void *state, double timeout, as_event **fired);
};

extern const as_backend as_backend_select;
extern const as_backend as_backend_poll;
#ifdef __linux__
extern const as_backend as_backend_epoll;
#endif
#if defined(__APPLE__) || defined(__FreeBSD__) || defined(__OpenBSD__) || defined(__NetBSD__) || \
    defined(__DragonFly__)
#define AS_HAVE_KQUEUE 1
#endif
#ifdef AS_HAVE_KQUEUE
extern const as_backend as_backend_kqueue;
#endif

/* A wait's timeout in milliseconds, rounded up so that a short timeout never
 * turns into a busy wait; -1 (none) for a negative timeout, and a finite one
 * too long for an int is cut to the longest, so a far timer still wakes. */
int as_timeout_ms(double timeout);

#endif
