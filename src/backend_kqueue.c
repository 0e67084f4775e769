/* The kqueue(2) backend (BSD, macOS): like epoll, interest lives in the kernel
 * and changes only when the loop changes it.  kqueue has a filter per
 * direction, so a change of interest is one or two changes of filters. */
#include "backend.h"

#ifdef AS_HAVE_KQUEUE
#include <errno.h>
#include <stdlib.h>
#include <sys/types.h>
#include <sys/event.h>
#include <sys/time.h>
#include <unistd.h>

/* Most events taken from the kernel per wait; more stay for the next one. */
#define MAX_BATCH 1024

typedef struct kqueue_state {
    int kq;
    struct kevent *events;
    size_t events_cap;
    as_event *fired;
    size_t fired_cap;
    int watched;
} kqueue_state;

static void *kqueue_create_state(void)
{
    kqueue_state *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->kq = kqueue();
    if (s->kq < 0) {
        int err = errno;
        free(s);
        errno = err;
        return NULL;
    }
    return s;
}

static void kqueue_destroy_state(void *state)
{
    kqueue_state *s = state;
    close(s->kq);
    free(s->events);
    free(s->fired);
    free(s);
}

static int kqueue_set(void *state, int fd, int old, int mask)
{
    kqueue_state *s = state;
    struct kevent changes[2];
    int n = 0;
    /* AS_PRI rides on the read filter: kqueue reports out-of-band data there */
    int was_read = (old & (AS_READ | AS_PRI)) != 0, read = (mask & (AS_READ | AS_PRI)) != 0;
    int was_write = (old & AS_WRITE) != 0, write = (mask & AS_WRITE) != 0;
    if (read != was_read)
        EV_SET(&changes[n++], fd, EVFILT_READ, read ? EV_ADD : EV_DELETE, 0, 0, NULL);
    if (write != was_write)
        EV_SET(&changes[n++], fd, EVFILT_WRITE, write ? EV_ADD : EV_DELETE, 0, 0, NULL);
    for (int i = 0; i < n; i++) {
        /* one at a time: a delete of a filter the kernel already dropped (the fd
         * was closed) is not an error here */
        if (kevent(s->kq, &changes[i], 1, NULL, 0, NULL) != 0 &&
            !(changes[i].flags == EV_DELETE && (errno == ENOENT || errno == EBADF)))
            return -1;
    }
    s->watched += (mask != 0) - (old != 0);
    return 0;
}

static int kqueue_wait_state(void *state, double timeout, as_event **fired)
{
    kqueue_state *s = state;
    size_t batch = 2 * (size_t)(s->watched > 0 ? s->watched : 0) + 1;
    if (batch > MAX_BATCH)
        batch = MAX_BATCH;
    if (as_grow((void **)&s->events, &s->events_cap, batch, sizeof *s->events) != 0 ||
        as_grow((void **)&s->fired, &s->fired_cap, batch, sizeof *s->fired) != 0)
        return -1;
    struct timespec ts, *tsp = NULL;
    if (timeout >= 0 && timeout < 1e9) {
        ts.tv_sec = (time_t)timeout;
        ts.tv_nsec = (long)((timeout - (double)ts.tv_sec) * 1e9);
        tsp = &ts;
    }
    int n = kevent(s->kq, NULL, 0, s->events, (int)batch, tsp);
    if (n < 0)
        return -1;
    /* one fd may come twice (read and write): its events are merged */
    int nfired = 0;
    for (int i = 0; i < n; i++) {
        const struct kevent *ev = &s->events[i];
        int fd = (int)ev->ident, events = 0;
        if (ev->flags & EV_ERROR)
            events |= AS_ERR;
        else if (ev->filter == EVFILT_READ)
            events |= AS_READ;
        else if (ev->filter == EVFILT_WRITE)
            events |= AS_WRITE;
        if ((ev->flags & EV_EOF) && ev->filter == EVFILT_READ)
            events |= AS_HUP;
        int j = 0;
        while (j < nfired && s->fired[j].fd != fd)
            j++;
        if (j == nfired) {
            s->fired[nfired].fd = fd;
            s->fired[nfired].events = 0;
            nfired++;
        }
        s->fired[j].events |= events;
    }
    *fired = s->fired;
    return nfired;
}

const as_backend as_backend_kqueue = {
    .name = "kqueue",
    .fd_limit = -1,
    .create = kqueue_create_state,
    .destroy = kqueue_destroy_state,
    .set = kqueue_set,
    .wait = kqueue_wait_state,
};
#else
/* Not BSD or macOS: this backend is not built (ISO C wants a declaration here). */
typedef int as_backend_kqueue_absent;
#endif
