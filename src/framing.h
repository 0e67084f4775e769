/* Terminator search for async_chat's framing: pure C, no Lua. */
#ifndef AS_FRAMING_H
#define AS_FRAMING_H

#include <stddef.h>

/* The next step over a buffer: pass its first `collect` bytes on, drop the
 * first `consume` (the collected bytes and any terminator), and say whether a
 * terminator ended the message.  Bytes past `consume` wait for more data. */
typedef struct as_frame {
    size_t collect;
    size_t consume;
    int found;
} as_frame;

/* A string terminator of tlen >= 1 bytes.  Without a whole terminator, all but
 * a trailing partial terminator is collected. */
as_frame as_frame_string(const char *p, size_t n, const char *term, size_t tlen);

/* The first occurrence of needle (nlen >= 1) in hay, or NULL. */
const char *as_find(const char *hay, size_t n, const char *needle, size_t nlen);

/* The length of the longest proper prefix of needle that hay ends with. */
size_t as_prefix_at_end(const char *hay, size_t n, const char *needle, size_t nlen);

#endif
