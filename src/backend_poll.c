/* The poll(2) backend: a pollfd array rebuilt each pass. */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>

#include "backend.h"

typedef struct poll_state {
    struct pollfd *fds;
    as_event *fired;
    int count, capacity;
} poll_state;

static void *poll_create(void)
{
    return calloc(1, sizeof(poll_state));
}

static void poll_destroy(void *state)
{
    poll_state *s = state;
    free(s->fds);
    free(s->fired);
    free(s);
}

static void poll_clear(void *state)
{
    ((poll_state *)state)->count = 0;
}

static int grow(poll_state *s)
{
    int capacity = s->capacity ? s->capacity * 2 : 64;
    struct pollfd *fds = realloc(s->fds, (size_t)capacity * sizeof *fds);
    if (fds == NULL)
        return -1;
    s->fds = fds;
    as_event *fired = realloc(s->fired, (size_t)capacity * sizeof *fired);
    if (fired == NULL)
        return -1;
    s->fired = fired;
    s->capacity = capacity;
    return 0;
}

static int poll_watch(void *state, int fd, int mask)
{
    poll_state *s = state;
    if (s->count == s->capacity && grow(s) != 0) {
        errno = ENOMEM;
        return -1;
    }
    short events = 0;
    if (mask & AS_READ)
        events |= POLLIN;
    if (mask & AS_WRITE)
        events |= POLLOUT;
    if (mask & AS_PRI)
        events |= POLLPRI;
    s->fds[s->count].fd = fd;
    s->fds[s->count].events = events;
    s->fds[s->count].revents = 0;
    s->count++;
    return 0;
}

/* Rounds up so that a short timeout never turns into a busy poll. */
static int timeout_ms(double timeout)
{
    if (timeout < 0 || timeout * 1000.0 >= (double)INT32_MAX)
        return -1;
    return (int)ceil(timeout * 1000.0);
}

static int poll_wait(void *state, double timeout, as_event **fired)
{
    poll_state *s = state;
    int count = s->count;
    s->count = 0;
    int n = poll(s->fds, (nfds_t)count, timeout_ms(timeout));
    if (n < 0)
        return -1;
    int nfired = 0;
    for (int i = 0; i < count && nfired < n; i++) {
        short r = s->fds[i].revents;
        if (r == 0)
            continue;
        int events = 0;
        if (r & POLLIN)
            events |= AS_READ;
        if (r & POLLOUT)
            events |= AS_WRITE;
        if (r & POLLPRI)
            events |= AS_PRI;
        if (r & POLLHUP)
            events |= AS_HUP;
        if (r & POLLERR)
            events |= AS_ERR;
        if (r & POLLNVAL)
            events |= AS_NVAL;
        s->fired[nfired].fd = s->fds[i].fd;
        s->fired[nfired].events = events;
        nfired++;
    }
    *fired = s->fired;
    return nfired;
}

const as_backend as_backend_poll = {
    .name = "poll",
    .fd_limit = -1,
    .create = poll_create,
    .destroy = poll_destroy,
    .clear = poll_clear,
    .watch = poll_watch,
    .wait = poll_wait,
};
