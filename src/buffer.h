/* Byte buffers and the output queue of async_chat: pure C, no Lua. */
#ifndef AS_BUFFER_H
#define AS_BUFFER_H

#include <stddef.h>

/* A growable byte buffer consumed from the front: bytes [start, end) of data. */
typedef struct as_buf {
    char *data;
    size_t start, end, cap;
} as_buf;

#define AS_BUF_INIT {NULL, 0, 0, 0}

static inline size_t as_buf_len(const as_buf *b) { return b->end - b->start; }
static inline const char *as_buf_bytes(const as_buf *b) { return b->data ? b->data + b->start : ""; }

int as_buf_append(as_buf *b, const char *p, size_t n); /* 0, or -1 (ENOMEM) */
void as_buf_consume(as_buf *b, size_t n);              /* clamps at the length */
void as_buf_clear(as_buf *b);                          /* empty; large storage freed */
void as_buf_free(as_buf *b);

/* The output queue: byte runs in order, with tokens (producers, the close
 * marker) between them.  Tokens mean nothing here; the binding owns them. */
enum { AS_OUT_BYTES, AS_OUT_TOKEN };

typedef struct as_out_entry {
    int kind;
    int token;
    as_buf bytes;
} as_out_entry;

typedef struct as_outq {
    as_out_entry *ring;
    size_t head, count, cap;
    size_t bytes; /* queued bytes in all runs */
} as_outq;

#define AS_OUTQ_INIT {NULL, 0, 0, 0, 0}

static inline int as_outq_empty(const as_outq *q) { return q->count == 0; }
static inline as_out_entry *as_outq_front(as_outq *q) { return q->count ? &q->ring[q->head] : NULL; }

/* Each returns 0, or -1 with the queue unchanged when memory runs out. */
int as_outq_push_bytes(as_outq *q, const char *p, size_t n);
int as_outq_push_front_bytes(as_outq *q, const char *p, size_t n);
int as_outq_push_token(as_outq *q, int token);
void as_outq_consume(as_outq *q, size_t n); /* n bytes of the front run; pops it when spent */
void as_outq_pop(as_outq *q);
void as_outq_clear(as_outq *q);
void as_outq_free(as_outq *q);

#endif
