/* Terminator search: memchr for the first byte, memcmp for the rest. */
#include <string.h>

#include "framing.h"

const char *as_find(const char *hay, size_t n, const char *needle, size_t nlen)
{
    if (nlen > n)
        return NULL;
    const char *p = hay, *last = hay + (n - nlen);
    while (p <= last) {
        p = memchr(p, (unsigned char)needle[0], (size_t)(last - p) + 1);
        if (p == NULL)
            return NULL;
        if (memcmp(p + 1, needle + 1, nlen - 1) == 0)
            return p;
        p++;
    }
    return NULL;
}

size_t as_prefix_at_end(const char *hay, size_t n, const char *needle, size_t nlen)
{
    size_t l = nlen > 0 ? nlen - 1 : 0;
    if (l > n)
        l = n;
    while (l > 0 && memcmp(hay + n - l, needle, l) != 0)
        l--;
    return l;
}

as_frame as_frame_string(const char *p, size_t n, const char *term, size_t tlen)
{
    as_frame f;
    const char *at = as_find(p, n, term, tlen);
    if (at != NULL) {
        f.collect = (size_t)(at - p);
        f.consume = f.collect + tlen;
        f.found = 1;
    } else {
        f.collect = n - as_prefix_at_end(p, n, term, tlen);
        f.consume = f.collect;
        f.found = 0;
    }
    return f;
}
