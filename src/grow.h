/* Growing arrays: the one allocation pattern of the core, checked in one place. */
#ifndef AS_GROW_H
#define AS_GROW_H

#include <stddef.h>

/* Grows *array (of elem-byte items, *capacity of them) to hold at least need
 * items, doubling; new items are zeroed.  0, or -1 with errno ENOMEM. */
int as_grow(void **array, size_t *capacity, size_t need, size_t elem);

#endif
