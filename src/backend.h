/* The interface every readiness backend implements: one file per backend.
 * A backend collects the interest declared for one pass and waits on it. */
#ifndef AS_BACKEND_H
#define AS_BACKEND_H

#include "loop.h"

struct as_backend {
    const char *name;
    /* Largest fd accepted, or -1 for none. */
    int fd_limit;
    /* NULL when out of memory. */
    void *(*create)(void);
    void (*destroy)(void *state);
    /* Forgets the interest declared so far. */
    void (*clear)(void *state);
    /* Declares interest for the next wait: 0, or -1 with errno. */
    int (*watch)(void *state, int fd, int mask);
    /* Waits; fills *fired (owned by the backend); clears the interest.
     * Returns the count, or -1 with errno. */
    int (*wait)(void *state, double timeout, as_event **fired);
};

extern const as_backend as_backend_select;
extern const as_backend as_backend_poll;

#endif
