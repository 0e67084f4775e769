#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "loop.h"

static const as_backend *const backends[] = {
    &as_backend_poll,
    &as_backend_select,
};
#define NBACKENDS (sizeof backends / sizeof backends[0])

static const char *const backend_names[] = {"poll", "select", NULL};

struct as_loop {
    void *state[NBACKENDS]; /* each backend's state, created on first use */
    int current;            /* index of the backend of the current pass, or -1 */
};

as_loop *as_loop_new(void)
{
    as_loop *loop = calloc(1, sizeof *loop);
    if (loop != NULL)
        loop->current = -1;
    return loop;
}

void as_loop_free(as_loop *loop)
{
    if (loop == NULL)
        return;
    for (size_t i = 0; i < NBACKENDS; i++)
        if (loop->state[i] != NULL)
            backends[i]->destroy(loop->state[i]);
    free(loop);
}

const char *const *as_loop_backend_names(void)
{
    return backend_names;
}

const char *as_loop_default_backend(void)
{
    return backends[0]->name;
}

int as_loop_begin(as_loop *loop, const char *backend)
{
    for (size_t i = 0; i < NBACKENDS; i++) {
        if (strcmp(backends[i]->name, backend) != 0)
            continue;
        if (loop->state[i] == NULL) {
            loop->state[i] = backends[i]->create();
            if (loop->state[i] == NULL) {
                errno = ENOMEM;
                return -1;
            }
        }
        backends[i]->clear(loop->state[i]);
        loop->current = (int)i;
        return 0;
    }
    errno = ENOENT;
    return -1;
}

const char *as_loop_backend_name(const as_loop *loop)
{
    return loop->current < 0 ? NULL : backends[loop->current]->name;
}

int as_loop_fd_limit(const as_loop *loop)
{
    return loop->current < 0 ? -1 : backends[loop->current]->fd_limit;
}

int as_loop_watch(as_loop *loop, int fd, int mask)
{
    if (loop->current < 0) {
        errno = EINVAL;
        return -1;
    }
    if (fd < 0) {
        errno = EBADF;
        return -1;
    }
    const as_backend *b = backends[loop->current];
    if (b->fd_limit >= 0 && fd > b->fd_limit) {
        errno = ERANGE;
        return -1;
    }
    return b->watch(loop->state[loop->current], fd, mask);
}

int as_loop_wait(as_loop *loop, double timeout, as_event **fired)
{
    if (loop->current < 0) {
        errno = EINVAL;
        return -1;
    }
    int n = backends[loop->current]->wait(loop->state[loop->current], timeout, fired);
    loop->current = -1;
    return n;
}
