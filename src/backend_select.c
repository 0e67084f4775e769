/* The select(2) backend: fd_sets rebuilt each pass; fds must be below FD_SETSIZE. */
#include <errno.h>
#include <stdlib.h>
#include <sys/select.h>

#include "backend.h"

typedef struct select_state {
    fd_set read, write, except;
    int maxfd;
    int *fds; /* watched fds in the order declared, each once */
    as_event *fired;
    int count, capacity;
} select_state;

static void select_clear(void *state)
{
    select_state *s = state;
    FD_ZERO(&s->read);
    FD_ZERO(&s->write);
    FD_ZERO(&s->except);
    s->maxfd = -1;
    s->count = 0;
}

static void *select_create(void)
{
    select_state *s = calloc(1, sizeof *s);
    if (s != NULL)
        select_clear(s);
    return s;
}

static void select_destroy(void *state)
{
    select_state *s = state;
    free(s->fds);
    free(s->fired);
    free(s);
}

static int grow(select_state *s)
{
    int capacity = s->capacity ? s->capacity * 2 : 64;
    int *fds = realloc(s->fds, (size_t)capacity * sizeof *fds);
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

static int select_watch(void *state, int fd, int mask)
{
    select_state *s = state;
    if (mask == 0)
        return 0;
    if (s->count == s->capacity && grow(s) != 0) {
        errno = ENOMEM;
        return -1;
    }
    s->fds[s->count++] = fd;
    if (mask & AS_READ)
        FD_SET(fd, &s->read);
    if (mask & AS_WRITE)
        FD_SET(fd, &s->write);
    if (mask & AS_PRI)
        FD_SET(fd, &s->except);
    if (fd > s->maxfd)
        s->maxfd = fd;
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
    int count = s->count;
    int n = select(s->maxfd + 1, &s->read, &s->write, &s->except, tvp);
    int nfired = 0;
    if (n > 0) {
        for (int i = 0; i < count; i++) {
            int fd = s->fds[i], events = 0;
            if (FD_ISSET(fd, &s->read))
                events |= AS_READ;
            if (FD_ISSET(fd, &s->write))
                events |= AS_WRITE;
            if (FD_ISSET(fd, &s->except))
                events |= AS_PRI;
            if (events == 0)
                continue;
            s->fired[nfired].fd = fd;
            s->fired[nfired].events = events;
            nfired++;
        }
    }
    int saved = errno;
    select_clear(s);
    errno = saved;
    *fired = s->fired;
    return n < 0 ? -1 : nfired;
}

const as_backend as_backend_select = {
    .name = "select",
    .fd_limit = FD_SETSIZE - 1,
    .create = select_create,
    .destroy = select_destroy,
    .clear = select_clear,
    .watch = select_watch,
    .wait = select_wait,
};
