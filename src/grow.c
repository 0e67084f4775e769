/* Growing arrays (see grow.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "grow.h"

int as_grow(void **array, size_t *capacity, size_t need, size_t elem)
{
    if (need <= *capacity)
        return 0;
    size_t cap = *capacity ? *capacity : 64;
    while (cap < need) {
        if (cap > ((size_t)-1) / 2 / elem) {
            errno = ENOMEM;
            return -1;
        }
        cap *= 2;
    }
    char *p = realloc(*array, cap * elem);
    if (p == NULL) {
        errno = ENOMEM;
        return -1;
    }
    memset(p + *capacity * elem, 0, (cap - *capacity) * elem);
    *array = p;
    *capacity = cap;
    return 0;
}
