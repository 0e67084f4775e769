/* The timer heap: a binary min-heap of caller-owned timer nodes ordered by due
 * time, ties by creation.  Pure C; knows nothing of Lua.  Adding, removing and
 * taking the first timer each cost O(log n). */
#ifndef AS_TIMERS_H
#define AS_TIMERS_H

#include <stddef.h>

/* Embedded in the caller's timer object, which must not move while pending. */
typedef struct as_timer {
    double due;              /* on the monotonic clock, seconds */
    unsigned long long seq;  /* creation order: breaks ties in due */
    size_t slot;             /* index in the heap; AS_TIMER_IDLE when not pending */
} as_timer;

#define AS_TIMER_IDLE ((size_t)-1)

typedef struct as_timers {
    as_timer **heap;
    size_t count, capacity;
    unsigned long long next_seq;
} as_timers;

/* A zeroed as_timers is an empty heap; free releases its array only. */
void as_timers_free(as_timers *timers);

/* Makes timer pending, due at due: 0, or -1 with errno ENOMEM. */
int as_timers_add(as_timers *timers, as_timer *timer, double due);
/* Puts back a timer taken out, with its due time and place in the order:
 * 0, or -1 with errno ENOMEM. */
int as_timers_restore(as_timers *timers, as_timer *timer);
/* Takes timer out of the heap: 1 if it was pending, else 0. */
int as_timers_remove(as_timers *timers, as_timer *timer);
/* The first timer to come due, or NULL when none is pending. */
as_timer *as_timers_first(const as_timers *timers);

static inline int as_timer_pending(const as_timer *timer)
{
    return timer->slot != AS_TIMER_IDLE;
}

/* The monotonic clock, in seconds. */
double as_monotonic(void);

#endif
