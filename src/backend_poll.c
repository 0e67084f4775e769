/* The poll(2) backend: a pollfd array with a slot per watched fd. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>

#include "backend.h"

typedef struct poll_state {
    struct pollfd *fds;
    size_t fds_cap;
    int count;
    int *slot_of; /* by fd: index in fds plus 1, 0 when unwatched */
    size_t slot_cap;
    as_event *fired;
    size_t fired_cap;
} poll_state;

static void *poll_create(void)
{
    return calloc(1, sizeof(poll_state));
}

static void poll_destroy(void *state)
{
    poll_state *s = state;
    free(s->fds);
    free(s->slot_of);
    free(s->fired);
    free(s);
}

static short poll_events(int mask)
{
    return (short)(((mask & AS_READ) ? POLLIN : 0) | ((mask & AS_WRITE) ? POLLOUT : 0) |
                   ((mask & AS_PRI) ? POLLPRI : 0));
}

static int poll_set(void *state, int fd, int old, int mask)
{
    poll_state *s = state;
    if (old == 0) {
        if (as_grow((void **)&s->slot_of, &s->slot_cap, (size_t)fd + 1, sizeof *s->slot_of) != 0 ||
            as_grow((void **)&s->fds, &s->fds_cap, (size_t)s->count + 1, sizeof *s->fds) != 0)
            return -1;
        s->fds[s->count].fd = fd;
        s->fds[s->count].events = poll_events(mask);
        s->slot_of[fd] = ++s->count;
        return 0;
    }
    int slot = s->slot_of[fd] - 1;
    if (mask != 0) {
        s->fds[slot].events = poll_events(mask);
        return 0;
    }
    /* the last slot fills the hole */
    s->fds[slot] = s->fds[--s->count];
    s->slot_of[s->fds[slot].fd] = slot + 1;
    s->slot_of[fd] = 0;
    return 0;
}

static int poll_wait(void *state, double timeout, as_event **fired)
{
    poll_state *s = state;
    if (as_grow((void **)&s->fired, &s->fired_cap, (size_t)s->count + 1, sizeof *s->fired) != 0)
        return -1;
    int n = poll(s->fds, (nfds_t)s->count, as_timeout_ms(timeout));
    if (n < 0)
        return -1;
    int nfired = 0;
    for (int i = 0; i < s->count && nfired < n; i++) {
        short r = s->fds[i].revents;
        if (r == 0)
            continue;
        s->fired[nfired].fd = s->fds[i].fd;
        s->fired[nfired].events = ((r & POLLIN) ? AS_READ : 0) | ((r & POLLOUT) ? AS_WRITE : 0) |
                                  ((r & POLLPRI) ? AS_PRI : 0) | ((r & POLLHUP) ? AS_HUP : 0) |
                                  ((r & POLLERR) ? AS_ERR : 0) | ((r & POLLNVAL) ? AS_NVAL : 0);
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
    .set = poll_set,
    .wait = poll_wait,
};
