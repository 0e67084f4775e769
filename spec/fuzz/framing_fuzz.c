/* libFuzzer target for the pure-C framing and output queue (src/framing.c,
 * src/buffer.c).  It drives the terminator search the way async_chat's
 * handle_read does, over a byte stream cut into reads at fuzzed points, and
 * checks the (message, terminator found) events against a naive model that
 * scans the whole stream at once; then it runs fuzzed operations on the
 * output queue against a plain array model.  Any mismatch calls abort().
 *
 * Input layout (every field is optional: a short input ends early):
 *   byte 0   flags: bits 0-1 mode (0 string terminator, 1 byte count,
 *            2-3 none); bit 2 small alphabet (terminator and stream bytes
 *            become 'a' or 'b', so that self-overlapping terminators and
 *            partial matches are common)
 *   byte 1   string: terminator length 1 + (b & 7); count: 1 + (b & 63)
 *   ...      string mode: the terminator's bytes
 *   2 bytes  stream length, little-endian, modulo 4096 (capped by the input)
 *   ...      the stream
 *   1 byte   number of read splits (b & 31), then one byte per split: the
 *            size of that read is 1 + b; the rest of the stream is one read
 *   ...      output queue operations (see run_outq)
 *
 * Build: clang -fsanitize=fuzzer,address,undefined -Isrc src/framing.c
 *        src/buffer.c spec/fuzz/framing_fuzz.c
 * Standalone (no libFuzzer): add -DFRAMING_FUZZ_STANDALONE; the program runs
 * every file named on its command line once. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buffer.h"
#include "framing.h"

#define CHECK(cond)                                                                  \
    do {                                                                             \
        if (!(cond)) {                                                               \
            fprintf(stderr, "framing_fuzz: check failed at line %d: %s\n", __LINE__, \
                    #cond);                                                          \
            abort();                                                                 \
        }                                                                            \
    } while (0)

/* ---- a cursor over the fuzz input ---- */

typedef struct reader {
    const uint8_t *p;
    size_t n;
} reader;

static int take(reader *r, uint8_t *b)
{
    if (r->n == 0)
        return 0;
    *b = *r->p++;
    r->n--;
    return 1;
}

static uint8_t byte_or(reader *r, uint8_t dflt)
{
    uint8_t b;
    return take(r, &b) ? b : dflt;
}

/* ---- events: what the driver and the model report ---- */

typedef struct event {
    size_t off, len; /* the message, as a slice of the stream */
    int found;       /* 1: a terminator (or the count) ended it; 0: the tail at end of stream */
} event;

typedef struct events {
    event *v;
    size_t n, cap;
} events;

static void add_event(events *e, size_t off, size_t len, int found)
{
    if (e->n == e->cap) {
        e->cap = e->cap ? e->cap * 2 : 16;
        e->v = realloc(e->v, e->cap * sizeof *e->v);
        CHECK(e->v != NULL);
    }
    e->v[e->n++] = (event){off, len, found};
}

enum { MODE_STRING, MODE_COUNT, MODE_NONE };

/* The model: the whole stream at once, terminators found left to right
 * (non-overlapping, as a reader that consumes each one would see them). */
static void model(const char *s, size_t n, int mode, const char *term, size_t tlen, size_t count,
                  events *out)
{
    size_t start = 0;
    if (mode == MODE_STRING) {
        size_t i = 0;
        while (i + tlen <= n) {
            if (memcmp(s + i, term, tlen) == 0) {
                add_event(out, start, i - start, 1);
                i += tlen;
                start = i;
            } else {
                i++;
            }
        }
    } else if (mode == MODE_COUNT) {
        while (n - start >= count) {
            add_event(out, start, count, 1);
            start += count;
        }
    }
    add_event(out, start, n - start, 0);
}

/* Naive first occurrence and longest proper prefix at the end, to check the
 * library's answers call by call. */
static const char *naive_find(const char *h, size_t n, const char *t, size_t tl)
{
    for (size_t i = 0; i + tl <= n; i++)
        if (memcmp(h + i, t, tl) == 0)
            return h + i;
    return NULL;
}

static size_t naive_prefix_at_end(const char *h, size_t n, const char *t, size_t tl)
{
    for (size_t l = tl - 1 < n ? tl - 1 : n; l > 0; l--)
        if (memcmp(h + n - l, t, l) == 0)
            return l;
    return 0;
}

/* The driver: async_chat's handle_read loop over reads of the stream.  The
 * collected bytes gather in `incoming` (as _collect_incoming_data does); a
 * found terminator ends a message.  For a byte count, found_terminator sets
 * the same count again, as a protocol reading fixed-size records does.
 * Each message is located in the stream by the running offset of consumed
 * bytes, so the events compare as slices. */
static void driver(const char *s, size_t n, int mode, const char *term, size_t tlen, size_t count,
                   const size_t *splits, size_t nsplits, events *out)
{
    as_buf in = AS_BUF_INIT, incoming = AS_BUF_INIT;
    size_t msg_start = 0; /* stream offset where the current message began */
    size_t fed = 0;       /* bytes of the stream appended to `in` so far */
    size_t consumed = 0;  /* bytes of the stream dropped from `in` so far */
    size_t left = count;  /* count mode: bytes still wanted */

    for (size_t k = 0; fed < n; k++) {
        size_t chunk = k < nsplits ? splits[k] : n - fed;
        if (chunk > n - fed)
            chunk = n - fed;
        CHECK(as_buf_append(&in, s + fed, chunk) == 0);
        fed += chunk;
        CHECK(as_buf_len(&in) == fed - consumed);
        CHECK(memcmp(as_buf_bytes(&in), s + consumed, fed - consumed) == 0);

        while (as_buf_len(&in) > 0) {
            size_t avail = as_buf_len(&in);
            const char *p = as_buf_bytes(&in);
            if (mode == MODE_STRING) {
                as_frame f = as_frame_string(p, avail, term, tlen);
                const char *at = naive_find(p, avail, term, tlen);
                CHECK(as_find(p, avail, term, tlen) == at);
                CHECK(f.found == (at != NULL));
                CHECK(f.collect <= f.consume && f.consume <= avail);
                if (f.found) {
                    CHECK(f.collect == (size_t)(at - p) && f.consume == f.collect + tlen);
                } else {
                    size_t keep = naive_prefix_at_end(p, avail, term, tlen);
                    CHECK(as_prefix_at_end(p, avail, term, tlen) == keep);
                    CHECK(f.collect == avail - keep && f.consume == f.collect);
                }
                CHECK(as_buf_append(&incoming, p, f.collect) == 0);
                as_buf_consume(&in, f.consume);
                consumed += f.consume;
                if (!f.found) {
                    CHECK(as_buf_len(&in) < tlen);
                    break;
                }
                add_event(out, msg_start, as_buf_len(&incoming), 1);
                CHECK(memcmp(as_buf_bytes(&incoming), s + msg_start, as_buf_len(&incoming)) == 0);
                as_buf_clear(&incoming);
                msg_start = consumed;
            } else if (mode == MODE_COUNT) {
                size_t take_n = avail < left ? avail : left;
                CHECK(as_buf_append(&incoming, p, take_n) == 0);
                as_buf_consume(&in, take_n);
                consumed += take_n;
                left -= take_n;
                if (left == 0) {
                    add_event(out, msg_start, as_buf_len(&incoming), 1);
                    CHECK(memcmp(as_buf_bytes(&incoming), s + msg_start, as_buf_len(&incoming)) == 0);
                    as_buf_clear(&incoming);
                    msg_start = consumed;
                    left = count;
                }
            } else {
                CHECK(as_buf_append(&incoming, p, avail) == 0);
                as_buf_consume(&in, avail);
                consumed += avail;
            }
        }
    }
    /* End of stream: the tail is what was collected plus what waits in `in`
     * (at most a partial terminator). */
    CHECK(as_buf_append(&incoming, as_buf_bytes(&in), as_buf_len(&in)) == 0);
    consumed += as_buf_len(&in);
    CHECK(consumed == n);
    add_event(out, msg_start, as_buf_len(&incoming), 0);
    CHECK(memcmp(as_buf_bytes(&incoming), s + msg_start, as_buf_len(&incoming)) == 0);
    as_buf_free(&in);
    as_buf_free(&incoming);
}

static void run_framing(reader *r)
{
    uint8_t flags = byte_or(r, 0), param = byte_or(r, 0);
    int mode = (flags & 3) >= 2 ? MODE_NONE : (flags & 3);
    int small = (flags & 4) != 0;
    char term[8];
    size_t tlen = 0, count = 0;
    if (mode == MODE_STRING) {
        tlen = 1 + (param & 7);
        for (size_t i = 0; i < tlen; i++) {
            uint8_t b = byte_or(r, (uint8_t)'\n');
            term[i] = small ? (char)('a' + (b & 1)) : (char)b;
        }
    } else if (mode == MODE_COUNT) {
        count = 1 + (param & 63);
    }

    size_t len = (size_t)byte_or(r, 0) | (size_t)byte_or(r, 0) << 8;
    len %= 4096;
    if (len > r->n)
        len = r->n;
    char *stream = malloc(len ? len : 1);
    CHECK(stream != NULL);
    for (size_t i = 0; i < len; i++)
        stream[i] = small ? (char)('a' + (r->p[i] & 1)) : (char)r->p[i];
    r->p += len;
    r->n -= len;

    size_t splits[31], nsplits = byte_or(r, 0) & 31;
    for (size_t i = 0; i < nsplits; i++)
        splits[i] = 1 + (size_t)byte_or(r, 0);

    events want = {0}, got = {0};
    model(stream, len, mode, term, tlen, count, &want);
    driver(stream, len, mode, term, tlen, count, splits, nsplits, &got);
    CHECK(want.n == got.n);
    for (size_t i = 0; i < want.n; i++) {
        CHECK(want.v[i].off == got.v[i].off);
        CHECK(want.v[i].len == got.v[i].len);
        CHECK(want.v[i].found == got.v[i].found);
    }
    free(want.v);
    free(got.v);
    free(stream);
}

/* ---- the output queue against an array model ---- */

#define COALESCE_LIMIT 65536 /* as in src/buffer.c: pushes join the last run below this */
#define MAX_QUEUED (4u << 20) /* keep a run bounded in time and memory */

typedef struct mentry {
    int kind, token;
    char *data;
    size_t len;
} mentry;

typedef struct mqueue {
    mentry *v; /* v[0] is the front */
    size_t n, cap, bytes;
} mqueue;

static void m_insert(mqueue *m, size_t at, mentry e)
{
    if (m->n == m->cap) {
        m->cap = m->cap ? m->cap * 2 : 8;
        m->v = realloc(m->v, m->cap * sizeof *m->v);
        CHECK(m->v != NULL);
    }
    memmove(m->v + at + 1, m->v + at, (m->n - at) * sizeof *m->v);
    m->v[at] = e;
    m->n++;
}

static void m_pop(mqueue *m)
{
    if (m->n == 0)
        return;
    m->bytes -= m->v[0].len;
    free(m->v[0].data);
    memmove(m->v, m->v + 1, (m->n - 1) * sizeof *m->v);
    m->n--;
}

static char *dup_bytes(const char *p, size_t n)
{
    char *d = malloc(n ? n : 1);
    CHECK(d != NULL);
    memcpy(d, p, n);
    return d;
}

static void m_push(mqueue *m, const char *p, size_t n, int front)
{
    if (n == 0)
        return;
    mentry *tail = m->n ? &m->v[m->n - 1] : NULL;
    if (!front && tail && tail->kind == AS_OUT_BYTES && tail->len + n <= COALESCE_LIMIT) {
        tail->data = realloc(tail->data, tail->len + n);
        CHECK(tail->data != NULL);
        memcpy(tail->data + tail->len, p, n);
        tail->len += n;
    } else {
        m_insert(m, front ? 0 : m->n, (mentry){AS_OUT_BYTES, 0, dup_bytes(p, n), n});
    }
    m->bytes += n;
}

static void m_consume(mqueue *m, size_t n)
{
    if (m->n == 0 || m->v[0].kind != AS_OUT_BYTES)
        return;
    mentry *e = &m->v[0];
    if (n >= e->len) {
        m_pop(m);
        return;
    }
    memmove(e->data, e->data + n, e->len - n);
    e->len -= n;
    m->bytes -= n;
}

static void compare(as_outq *q, const mqueue *m)
{
    CHECK(q->count == m->n);
    CHECK(q->bytes == m->bytes);
    CHECK(as_outq_empty(q) == (m->n == 0));
    CHECK((as_outq_front(q) == NULL) == (m->n == 0));
    size_t total = 0;
    for (size_t i = 0; i < m->n; i++) {
        const as_out_entry *e = &q->ring[(q->head + i) % q->cap];
        CHECK(e->kind == m->v[i].kind);
        if (e->kind == AS_OUT_TOKEN) {
            CHECK(e->token == m->v[i].token);
            CHECK(as_buf_len(&e->bytes) == 0);
        } else {
            CHECK(as_buf_len(&e->bytes) == m->v[i].len);
            CHECK(m->v[i].len > 0);
            CHECK(memcmp(as_buf_bytes(&e->bytes), m->v[i].data, m->v[i].len) == 0);
        }
        total += as_buf_len(&e->bytes);
    }
    CHECK(total == q->bytes);
}

/* Operations, one byte each plus arguments:
 *   0 push n bytes      (n: 1 byte, or 3 for a large run when the byte is odd)
 *   1 push_front n bytes
 *   2 push a token      (token: 1 byte)
 *   3 consume n         (n: 2 bytes)
 *   4 pop
 *   5 clear (every 8th time: free, then start over) */
static void run_outq(reader *r)
{
    as_outq q = AS_OUTQ_INIT;
    mqueue m = {0};
    static char pattern[70000 + 256];
    static int pattern_ready;
    if (!pattern_ready) {
        for (size_t i = 0; i < sizeof pattern; i++)
            pattern[i] = (char)(i * 31 + (i >> 8));
        pattern_ready = 1;
    }
    uint8_t op;
    unsigned clears = 0, seq = 0;
    while (take(r, &op)) {
        switch (op % 6) {
        case 0:
        case 1: {
            uint8_t b = byte_or(r, 0);
            size_t n = b;
            if (b & 1) /* a large run, near the coalescing limit */
                n = ((size_t)byte_or(r, 0) << 8 | byte_or(r, 0)) % 70000;
            if (q.bytes + n > MAX_QUEUED)
                n = 0;
            const char *p = pattern + (seq++ % 256);
            if (op % 6 == 0) {
                CHECK(as_outq_push_bytes(&q, p, n) == 0);
                m_push(&m, p, n, 0);
            } else {
                CHECK(as_outq_push_front_bytes(&q, p, n) == 0);
                m_push(&m, p, n, 1);
            }
            break;
        }
        case 2: {
            int token = byte_or(r, 0);
            CHECK(as_outq_push_token(&q, token) == 0);
            m_insert(&m, m.n, (mentry){AS_OUT_TOKEN, token, NULL, 0});
            break;
        }
        case 3: {
            size_t n = (size_t)byte_or(r, 0) << 8 | byte_or(r, 0);
            as_outq_consume(&q, n);
            m_consume(&m, n);
            break;
        }
        case 4:
            as_outq_pop(&q);
            m_pop(&m);
            break;
        default:
            if (++clears % 8 == 0) {
                as_outq_free(&q);
                CHECK(q.ring == NULL && q.count == 0);
            } else {
                as_outq_clear(&q);
            }
            while (m.n)
                m_pop(&m);
            break;
        }
        compare(&q, &m);
    }
    as_outq_free(&q);
    while (m.n)
        m_pop(&m);
    free(m.v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    reader r = {data, size};
    run_framing(&r);
    run_outq(&r);
    return 0;
}

#ifdef FRAMING_FUZZ_STANDALONE
/* Runs each file named on the command line once (a regression run over the
 * corpus); any mismatch aborts. */
int main(int argc, char **argv)
{
    int ran = 0;
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (f == NULL) {
            perror(argv[i]);
            return 2;
        }
        uint8_t *buf = NULL;
        size_t n = 0, cap = 0, got;
        do {
            if (n == cap) {
                cap = cap ? cap * 2 : 4096;
                buf = realloc(buf, cap);
                CHECK(buf != NULL);
            }
            got = fread(buf + n, 1, cap - n, f);
            n += got;
        } while (got > 0);
        fclose(f);
        LLVMFuzzerTestOneInput(buf, n);
        free(buf);
        ran++;
    }
    printf("framing_fuzz: %d input(s) passed\n", ran);
    return 0;
}
#endif
