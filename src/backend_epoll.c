/* The epoll(7) backend (Linux): interest lives in the kernel and changes only
 * when the loop changes it, so a wait costs what the ready fds cost. */
#ifdef __linux__
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "backend.h"

/* Most events taken from the kernel per wait; more stay for the next one. */
#define MAX_BATCH 1024

typedef struct epoll_state {
    int epfd;
    struct epoll_event *events;
    size_t events_cap;
    as_event *fired;
    size_t fired_cap;
    int watched;
    /* fds epoll refuses (regular files): always ready, as poll reports them */
    as_event *plain;
    size_t plain_cap;
    int nplain;
} epoll_state;

static void *epoll_create_state(void)
{
    epoll_state *s = calloc(1, sizeof *s);
    if (s == NULL)
        return NULL;
    s->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (s->epfd < 0) {
        int err = errno;
        free(s);
        errno = err;
        return NULL;
    }
    return s;
}

static void epoll_destroy_state(void *state)
{
    epoll_state *s = state;
    close(s->epfd);
    free(s->events);
    free(s->fired);
    free(s->plain);
    free(s);
}

static uint32_t epoll_bits(int mask)
{
    return ((mask & AS_READ) ? EPOLLIN : 0) | ((mask & AS_WRITE) ? EPOLLOUT : 0) |
           ((mask & AS_PRI) ? EPOLLPRI : 0);
}

static int find_plain(epoll_state *s, int fd)
{
    for (int i = 0; i < s->nplain; i++)
        if (s->plain[i].fd == fd)
            return i;
    return -1;
}

static int set_plain(epoll_state *s, int fd, int mask)
{
    int i = find_plain(s, fd);
    if (i < 0) {
        if (mask == 0)
            return 0;
        if (as_grow((void **)&s->plain, &s->plain_cap, (size_t)s->nplain + 1, sizeof *s->plain) != 0)
            return -1;
        i = s->nplain++;
        s->plain[i].fd = fd;
    }
    if (mask == 0)
        s->plain[i] = s->plain[--s->nplain];
    else
        s->plain[i].events = mask & (AS_READ | AS_WRITE);
    return 0;
}

static int epoll_set(void *state, int fd, int old, int mask)
{
    epoll_state *s = state;
    if (s->nplain > 0 && find_plain(s, fd) >= 0)
        return set_plain(s, fd, mask);
    struct epoll_event ev = {0};
    ev.events = epoll_bits(mask);
    ev.data.fd = fd;
    int op = old == 0 ? EPOLL_CTL_ADD : mask == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
    int rc = epoll_ctl(s->epfd, op, fd, &ev);
    if (rc != 0 && op == EPOLL_CTL_MOD && errno == ENOENT)
        rc = epoll_ctl(s->epfd, op = EPOLL_CTL_ADD, fd, &ev); /* closed and reopened */
    else if (rc != 0 && op == EPOLL_CTL_ADD && errno == EEXIST)
        rc = epoll_ctl(s->epfd, op = EPOLL_CTL_MOD, fd, &ev);
    if (rc != 0 && op == EPOLL_CTL_DEL && (errno == ENOENT || errno == EBADF))
        rc = 0; /* closed already: the kernel dropped it */
    if (rc != 0 && op == EPOLL_CTL_ADD && errno == EPERM)
        return set_plain(s, fd, mask);
    if (rc != 0)
        return -1;
    if (op == EPOLL_CTL_ADD)
        s->watched++;
    else if (op == EPOLL_CTL_DEL)
        s->watched--;
    return 0;
}

static int epoll_wait_state(void *state, double timeout, as_event **fired)
{
    epoll_state *s = state;
    size_t batch = (size_t)s->watched + 1;
    if (batch > MAX_BATCH)
        batch = MAX_BATCH;
    if (as_grow((void **)&s->events, &s->events_cap, batch, sizeof *s->events) != 0 ||
        as_grow((void **)&s->fired, &s->fired_cap, batch + (size_t)s->nplain, sizeof *s->fired) != 0)
        return -1;
    int n = epoll_wait(s->epfd, s->events, (int)batch, s->nplain > 0 ? 0 : as_timeout_ms(timeout));
    if (n < 0)
        return -1;
    for (int i = 0; i < n; i++) {
        uint32_t r = s->events[i].events;
        s->fired[i].fd = s->events[i].data.fd;
        s->fired[i].events = ((r & EPOLLIN) ? AS_READ : 0) | ((r & EPOLLOUT) ? AS_WRITE : 0) |
                             ((r & EPOLLPRI) ? AS_PRI : 0) | ((r & EPOLLHUP) ? AS_HUP : 0) |
                             ((r & EPOLLERR) ? AS_ERR : 0);
    }
    for (int i = 0; i < s->nplain; i++)
        s->fired[n++] = s->plain[i];
    *fired = s->fired;
    return n;
}

const as_backend as_backend_epoll = {
    .name = "epoll",
    .fd_limit = -1,
    .create = epoll_create_state,
    .destroy = epoll_destroy_state,
    .set = epoll_set,
    .wait = epoll_wait_state,
};
#else
/* Not Linux: this backend is not built (ISO C wants a declaration here). */
typedef int as_backend_epoll_absent;
#endif
