/* The timer heap (see timers.h). */
#include <errno.h>
#include <stdlib.h>
#include <time.h>

#include "grow.h"
#include "timers.h"

double as_monotonic(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void as_timers_free(as_timers *timers)
{
    free(timers->heap);
    timers->heap = NULL;
    timers->count = timers->capacity = 0;
}

static int before(const as_timer *a, const as_timer *b)
{
    return a->due < b->due || (a->due == b->due && a->seq < b->seq);
}

static void place(as_timers *timers, as_timer *timer, size_t slot)
{
    timers->heap[slot] = timer;
    timer->slot = slot;
}

static void sift_up(as_timers *timers, size_t slot)
{
    as_timer *timer = timers->heap[slot];
    while (slot > 0) {
        size_t parent = (slot - 1) / 2;
        if (!before(timer, timers->heap[parent]))
            break;
        place(timers, timers->heap[parent], slot);
        slot = parent;
    }
    place(timers, timer, slot);
}

static void sift_down(as_timers *timers, size_t slot)
{
    as_timer *timer = timers->heap[slot];
    for (;;) {
        size_t child = 2 * slot + 1;
        if (child >= timers->count)
            break;
        if (child + 1 < timers->count && before(timers->heap[child + 1], timers->heap[child]))
            child++;
        if (!before(timers->heap[child], timer))
            break;
        place(timers, timers->heap[child], slot);
        slot = child;
    }
    place(timers, timer, slot);
}

int as_timers_restore(as_timers *timers, as_timer *timer)
{
    if (as_grow((void **)&timers->heap, &timers->capacity, timers->count + 1,
                sizeof *timers->heap) < 0)
        return -1;
    place(timers, timer, timers->count++);
    sift_up(timers, timer->slot);
    return 0;
}

int as_timers_add(as_timers *timers, as_timer *timer, double due)
{
    timer->due = due;
    timer->seq = timers->next_seq++;
    return as_timers_restore(timers, timer);
}

int as_timers_remove(as_timers *timers, as_timer *timer)
{
    size_t slot = timer->slot;
    if (slot == AS_TIMER_IDLE || slot >= timers->count || timers->heap[slot] != timer)
        return 0;
    timer->slot = AS_TIMER_IDLE;
    as_timer *last = timers->heap[--timers->count];
    if (last != timer) {
        /* the last timer fills the hole, then moves whichever way it must */
        place(timers, last, slot);
        if (slot > 0 && before(last, timers->heap[(slot - 1) / 2]))
            sift_up(timers, slot);
        else
            sift_down(timers, slot);
    }
    return 1;
}

as_timer *as_timers_first(const as_timers *timers)
{
    return timers->count ? timers->heap[0] : NULL;
}
