/* The loop core: interest by fd, kept here and mirrored into the backend. */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "loop.h"

/* Best first: the first is the default. */
static const as_backend *const backends[] = {
#ifdef __linux__
    &as_backend_epoll,
#endif
#ifdef AS_HAVE_KQUEUE
    &as_backend_kqueue,
#endif
    &as_backend_poll,
    &as_backend_select,
};
#define NBACKENDS (sizeof backends / sizeof backends[0])

struct as_loop {
    const as_backend *backend; /* current, or NULL */
    void *state;               /* the current backend's */
    unsigned char *interest;   /* by fd */
    size_t capacity;
};

int as_timeout_ms(double timeout)
{
    if (timeout < 0)
        return -1;
    if (timeout * 1000.0 >= (double)INT32_MAX)
        return INT32_MAX;
    return (int)ceil(timeout * 1000.0);
}

as_loop *as_loop_new(void)
{
    return calloc(1, sizeof(as_loop));
}

void as_loop_free(as_loop *loop)
{
    if (loop == NULL)
        return;
    if (loop->backend != NULL)
        loop->backend->destroy(loop->state);
    free(loop->interest);
    free(loop);
}

const char *const *as_loop_backend_names(void)
{
    static const char *const names[] = {
#ifdef __linux__
        "epoll",
#endif
#ifdef AS_HAVE_KQUEUE
        "kqueue",
#endif
        "poll", "select", NULL};
    return names;
}

const char *as_loop_default_backend(void)
{
    return backends[0]->name;
}

int as_loop_use(as_loop *loop, const char *backend)
{
    if (loop->backend != NULL && strcmp(loop->backend->name, backend) == 0)
        return 0;
    for (size_t i = 0; i < NBACKENDS; i++) {
        if (strcmp(backends[i]->name, backend) != 0)
            continue;
        void *state = backends[i]->create();
        if (state == NULL)
            return -1;
        if (loop->backend != NULL)
            loop->backend->destroy(loop->state);
        loop->backend = backends[i];
        loop->state = state;
        if (loop->interest != NULL)
            memset(loop->interest, 0, loop->capacity);
        return 1;
    }
    errno = ENOENT;
    return -1;
}

const char *as_loop_backend_name(const as_loop *loop)
{
    return loop->backend ? loop->backend->name : NULL;
}

int as_loop_fd_limit(const as_loop *loop)
{
    return loop->backend ? loop->backend->fd_limit : -1;
}

int as_loop_interest(const as_loop *loop, int fd)
{
    return fd >= 0 && (size_t)fd < loop->capacity ? loop->interest[fd] : 0;
}

int as_loop_set(as_loop *loop, int fd, int mask)
{
    if (loop->backend == NULL) {
        errno = EINVAL;
        return -1;
    }
    if (fd < 0) {
        errno = EBADF;
        return -1;
    }
    mask &= AS_READ | AS_WRITE | AS_PRI;
    int old = as_loop_interest(loop, fd);
    if (old == mask)
        return 0;
    if (mask != 0 && loop->backend->fd_limit >= 0 && fd > loop->backend->fd_limit) {
        errno = ERANGE;
        return -1;
    }
    if (as_grow((void **)&loop->interest, &loop->capacity, (size_t)fd + 1, 1) != 0)
        return -1;
    if (loop->backend->set(loop->state, fd, old, mask) != 0)
        return -1;
    loop->interest[fd] = (unsigned char)mask;
    return 0;
}

int as_loop_wait(as_loop *loop, double timeout, as_event **fired)
{
    if (loop->backend == NULL) {
        errno = EINVAL;
        return -1;
    }
    return loop->backend->wait(loop->state, timeout, fired);
}
