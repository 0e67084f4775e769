/* Byte buffers and the output queue. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"

/* An emptied buffer keeps at most this much storage, so idle channels stay small. */
#define KEEP_CAPACITY 4096
/* Pushes coalesce into the last run while it stays under this size, so many
 * small replies leave in one send. */
#define COALESCE_LIMIT 65536

int as_buf_append(as_buf *b, const char *p, size_t n)
{
    if (n == 0)
        return 0;
    size_t len = as_buf_len(b);
    if (b->cap - b->end < n) {
        if (b->start > 0 && b->cap - len >= n) {
            memmove(b->data, b->data + b->start, len); /* room at the front: slide */
        } else {
            if (n > ((size_t)-1) / 4 || len > ((size_t)-1) / 4 - n) {
                errno = ENOMEM;
                return -1;
            }
            size_t cap = b->cap ? b->cap : 256;
            while (cap < len + n)
                cap *= 2;
            char *data = malloc(cap);
            if (data == NULL)
                return -1;
            if (len > 0)
                memcpy(data, b->data + b->start, len);
            free(b->data);
            b->data = data;
            b->cap = cap;
        }
        b->start = 0;
        b->end = len;
    }
    memcpy(b->data + b->end, p, n);
    b->end += n;
    return 0;
}

void as_buf_consume(as_buf *b, size_t n)
{
    if (n >= as_buf_len(b)) {
        as_buf_clear(b);
        return;
    }
    b->start += n;
}

void as_buf_clear(as_buf *b)
{
    b->start = b->end = 0;
    if (b->cap > KEEP_CAPACITY)
        as_buf_free(b);
}

void as_buf_free(as_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->start = b->end = b->cap = 0;
}

/* ---- the output queue: a ring of entries ---- */

static as_out_entry *at(as_outq *q, size_t i)
{
    return &q->ring[(q->head + i) % q->cap];
}

static int reserve_entry(as_outq *q)
{
    if (q->count < q->cap)
        return 0;
    size_t cap = q->cap ? q->cap * 2 : 4;
    as_out_entry *ring = malloc(cap * sizeof *ring);
    if (ring == NULL)
        return -1;
    for (size_t i = 0; i < q->count; i++)
        ring[i] = *at(q, i);
    free(q->ring);
    q->ring = ring;
    q->cap = cap;
    q->head = 0;
    return 0;
}

static int push_run(as_outq *q, const char *p, size_t n, int front)
{
    if (reserve_entry(q) != 0)
        return -1;
    as_out_entry e = {AS_OUT_BYTES, 0, AS_BUF_INIT};
    if (as_buf_append(&e.bytes, p, n) != 0)
        return -1;
    if (front) {
        q->head = (q->head + q->cap - 1) % q->cap;
        q->ring[q->head] = e;
    } else {
        *at(q, q->count) = e;
    }
    q->count++;
    q->bytes += n;
    return 0;
}

int as_outq_push_bytes(as_outq *q, const char *p, size_t n)
{
    if (n == 0)
        return 0;
    as_out_entry *tail = q->count ? at(q, q->count - 1) : NULL;
    if (tail != NULL && tail->kind == AS_OUT_BYTES && as_buf_len(&tail->bytes) + n <= COALESCE_LIMIT) {
        if (as_buf_append(&tail->bytes, p, n) != 0)
            return -1;
        q->bytes += n;
        return 0;
    }
    return push_run(q, p, n, 0);
}

int as_outq_push_front_bytes(as_outq *q, const char *p, size_t n)
{
    return n == 0 ? 0 : push_run(q, p, n, 1);
}

int as_outq_push_token(as_outq *q, int token)
{
    if (reserve_entry(q) != 0)
        return -1;
    as_out_entry e = {AS_OUT_TOKEN, token, AS_BUF_INIT};
    *at(q, q->count) = e;
    q->count++;
    return 0;
}

void as_outq_consume(as_outq *q, size_t n)
{
    as_out_entry *e = as_outq_front(q);
    if (e == NULL || e->kind != AS_OUT_BYTES)
        return;
    size_t len = as_buf_len(&e->bytes);
    if (n >= len) {
        as_outq_pop(q);
        return;
    }
    as_buf_consume(&e->bytes, n);
    q->bytes -= n;
}

void as_outq_pop(as_outq *q)
{
    as_out_entry *e = as_outq_front(q);
    if (e == NULL)
        return;
    q->bytes -= as_buf_len(&e->bytes);
    as_buf_free(&e->bytes);
    q->head = (q->head + 1) % q->cap;
    q->count--;
}

void as_outq_clear(as_outq *q)
{
    while (q->count > 0)
        as_outq_pop(q);
}

void as_outq_free(as_outq *q)
{
    as_outq_clear(q);
    free(q->ring);
    q->ring = NULL;
    q->head = q->cap = 0;
}
