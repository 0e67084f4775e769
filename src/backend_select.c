/* The select(2) backend: fd_sets kept between waits; fds below FD_SETSIZE. */
#include <errno.h>
#include <stdlib.h>
#include <sys/select.h>

#include "backend.h"

typedef struct select_state {
    fd_set read, write, except;
    int maxfd;
    as_event fired[FD_SETSIZE];
} select_state;

static void *select_create(void)
{
    select_state *s = malloc(sizeof *s);
    if (s == NULL)
        return NULL;
    FD_ZERO(&s->read);
    FD_ZERO(&s->write);
    FD_ZERO(&s->except);
    s->maxfd = -1;
    return s;
}

static void select_destroy(void *state)
{
    free(state);
}

static void put(fd_set *set, int fd, int on)
{
    if (on)
        FD_SET(fd, set);
    else
        FD_CLR(fd, set);
}

static int select_set(void *state, int fd, int old, int mask)
{
    select_state *s = state;
    (void)old;
    put(&s->read, fd, mask & AS_READ);
    put(&s->write, fd, mask & AS_WRITE);
    put(&s->except, fd, mask & AS_PRI);
    if (mask != 0 && fd > s->maxfd)
        s->maxfd = fd;
    while (s->maxfd >= 0 && !FD_ISSET(s->maxfd, &s->read) && !FD_ISSET(s->maxfd, &s->write) &&
           !FD_ISSET(s->maxfd, &s->except))
        s->maxfd--;
    return 0;
}

static int select_wait(void *state, double timeout, as_event **fired)
{
    select_state *s = state;
    struct timeval tv, *tvp = NULL;
    if (timeout >= 0 && timeout < 1e9) {
        tv.tv_sec = (time_t)timeout;
        tv.tv_usec = (suseconds_t)((timeout - (double)tv.tv_sec) * 1e6);
        tvp = &tv;
    }
    fd_set r = s->read, w = s->write, x = s->except;
    int n = select(s->maxfd + 1, &r, &w, &x, tvp);
    if (n < 0)
        return -1;
    int nfired = 0;
    for (int fd = 0; fd <= s->maxfd; fd++) {
        int events = (FD_ISSET(fd, &r) ? AS_READ : 0) | (FD_ISSET(fd, &w) ? AS_WRITE : 0) |
                     (FD_ISSET(fd, &x) ? AS_PRI : 0);
        if (events == 0)
            continue;
        s->fired[nfired].fd = fd;
        s->fired[nfired].events = events;
        nfired++;
    }
    *fired = s->fired;
    return nfired;
}

const as_backend as_backend_select = {
    .name = "select",
    .fd_limit = FD_SETSIZE - 1,
    .create = select_create,
    .destroy = select_destroy,
    .set = select_set,
    .wait = select_wait,
};
