/*
 * loadgen: a closed-loop request/response load generator for echo servers.
 *
 *   loadgen -h HOST -p PORT [-c CONNS] [-s MSGSIZE] [-d SECONDS] [-P PIPELINE]
 *           [-i IDLE] [-w WARMUP] [-t THREADS] [-S SERVER_PID] [-q]
 *
 * Each busy connection sends a batch of PIPELINE requests in one write; a
 * request is MSGSIZE bytes, MSGSIZE-1 filler bytes (never '\n') and a '\n', so
 * line-framed servers work.  The connection then waits for exactly
 * MSGSIZE*PIPELINE bytes back, checks that they are the bytes it sent, and
 * sends the next batch.  Request i of a batch completes when the first
 * (i+1)*MSGSIZE bytes of the answer have arrived; its latency is measured from
 * the moment the batch was written.
 *
 * IDLE connections are opened first and held open without traffic.  With -S,
 * loadgen waits until the server process holds them (counting the entries of
 * /proc/PID/fd), samples the server's RSS before and after, and samples the
 * server's CPU time (utime+stime) at the edges of the measured window.
 *
 * Then the busy connections open, each sending its first batch as soon as it
 * is connected; the setup ends when every one of them has been answered once
 * (at most 30 s: a server that accepts one connection per loop pass can take
 * seconds to reach the last of 1,000 busy connections).  The next WARMUP
 * seconds are not counted; then DURATION seconds are.  With -t, the busy
 * connections are shared among THREADS threads, each with its own epoll set.
 * The result is one line of key=value pairs on stdout:
 *
 *   rps=... p50_us=... p99_us=... p999_us=... max_us=... mean_us=... reqs=...
 *   errors=... stalled=... unprimed=... setup_s=... conns=... idle=... msg=...
 *   pipeline=... dur=...
 *   [srv_cpu_us=... srv_cpu_us_per_req=... srv_rss_kb=... srv_hwm_kb=...
 *    srv_rss0_kb=... [idle_rss_kb=... idle_bytes_per_conn=... idle_ok=... idle_open=...]]
 *
 * errors counts connections that failed (refused, reset, closed by the server,
 * or answered with bytes that were not the ones sent); stalled counts
 * connections still waiting at the end for a batch written more than a second
 * (or half the window) before; unprimed counts connections the setup gave up
 * on.  The first few failures are described on stderr (-q: no summary line).
 *
 * Exit status: 0 when the run completed (even with errors), 2 on bad usage,
 * 1 when nothing could be measured (no connection established).
 */
#define _POSIX_C_SOURCE 200809L

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* ---------------------------------------------------------------- options */

static const char *opt_host = "127.0.0.1";
static const char *opt_port = NULL;
static int opt_conns = 50;
static size_t opt_msg = 64;
static double opt_duration = 3.0;
static int opt_pipeline = 1;
static int opt_idle = 0;
static double opt_warmup = 1.0;
static int opt_threads = 1;
static long opt_server_pid = 0;
static int opt_quiet = 0;
static double setup_limit = 30.0;   /* seconds for every connection to be answered once */

static struct addrinfo *server_ai;

/* ------------------------------------------------------------------- time */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_until(uint64_t t)
{
    for (;;) {
        uint64_t n = now_ns();
        if (n >= t)
            return;
        uint64_t d = t - n;
        struct timespec ts;
        ts.tv_sec = (time_t)(d / 1000000000u);
        ts.tv_nsec = (long)(d % 1000000000u);
        nanosleep(&ts, NULL);
    }
}

static void sleep_ms(int ms)
{
    sleep_until(now_ns() + (uint64_t)ms * 1000000u);
}

/* --------------------------------------------------------------- messages */

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static int log_budget = 8;

static void warnx(const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&log_lock);
    if (log_budget > 0) {
        log_budget--;
        fputs("loadgen: ", stderr);
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        fputc('\n', stderr);
        if (log_budget == 0)
            fputs("loadgen: (further messages suppressed)\n", stderr);
    }
    pthread_mutex_unlock(&log_lock);
}

static void die(const char *fmt, ...)
{
    va_list ap;
    fputs("loadgen: ", stderr);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(1);
}

/* -------------------------------------------------------------- histogram */

/* Log-linear buckets over nanoseconds: values below 128 exactly, above that
 * 64 buckets per power of two (relative error under 1.6%, reported at the
 * bucket's middle, so under 0.8%). */
#define SUB_BITS 7
#define SUB (1u << SUB_BITS)
#define HALF (SUB / 2)
#define NBUCKETS (SUB + (64 - SUB_BITS) * HALF)

struct hist {
    uint64_t count[NBUCKETS];
    uint64_t n;
    uint64_t max;
    double sum;
};

static int msb64(uint64_t v)
{
#if defined(__GNUC__)
    return 63 - __builtin_clzll(v);
#else
    int b = 0;
    while (v >>= 1)
        b++;
    return b;
#endif
}

static unsigned bucket_of(uint64_t v)
{
    if (v < SUB)
        return (unsigned)v;
    int msb = msb64(v);
    int shift = msb - (SUB_BITS - 1);
    return SUB + (unsigned)(msb - SUB_BITS) * HALF + (unsigned)((v >> shift) - HALF);
}

static double bucket_mid(unsigned b)
{
    if (b < SUB)
        return (double)b;
    unsigned k = b - SUB;
    unsigned oct = k / HALF;
    uint64_t m = (uint64_t)(k % HALF) + HALF;
    int shift = (int)oct + 1;
    double low = (double)(m << shift);
    return low + (double)((uint64_t)1 << shift) / 2.0;
}

static void hist_add(struct hist *h, uint64_t v)
{
    h->count[bucket_of(v)]++;
    h->n++;
    h->sum += (double)v;
    if (v > h->max)
        h->max = v;
}

static void hist_merge(struct hist *into, const struct hist *from)
{
    for (unsigned i = 0; i < NBUCKETS; i++)
        into->count[i] += from->count[i];
    into->n += from->n;
    into->sum += from->sum;
    if (from->max > into->max)
        into->max = from->max;
}

/* The value at quantile q (0..1), in nanoseconds. */
static double hist_quantile(const struct hist *h, double q)
{
    if (h->n == 0)
        return 0.0;
    uint64_t rank = (uint64_t)(q * (double)h->n + 0.999999);
    if (rank < 1)
        rank = 1;
    if (rank > h->n)
        rank = h->n;
    uint64_t seen = 0;
    for (unsigned i = 0; i < NBUCKETS; i++) {
        seen += h->count[i];
        if (seen >= rank) {
            double mid = bucket_mid(i);
            return mid > (double)h->max ? (double)h->max : mid;
        }
    }
    return (double)h->max;
}

/* ---------------------------------------------------------- /proc helpers */

/* utime+stime of a process, in microseconds; -1 if unreadable. */
static long long proc_cpu_us(long pid)
{
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (!p)
        return -1;
    /* After ") ": field 3 (state) ... field 14 utime, field 15 stime. */
    unsigned long long ut = 0, st = 0;
    p += 2;
    int field = 3;
    while (*p && field < 14) {
        if (*p == ' ')
            field++;
        p++;
    }
    if (sscanf(p, "%llu %llu", &ut, &st) != 2)
        return -1;
    long hz = sysconf(_SC_CLK_TCK);
    if (hz <= 0)
        hz = 100;
    return (long long)((ut + st) * 1000000ull / (unsigned long long)hz);
}

/* A "VmXXX:" line of /proc/PID/status, in kB; -1 if unreadable. */
static long proc_status_kb(long pid, const char *key)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t klen = strlen(key);
    long v = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
            v = strtol(line + klen + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return v;
}

/* Number of open descriptors of a process; -1 if unreadable. */
static long proc_fd_count(long pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/fd", pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    long n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

/* ------------------------------------------------------------ connections */

enum { C_CONNECTING, C_ACTIVE, C_DEAD };

struct conn {
    int fd;
    int state;
    int want_out;       /* EPOLLOUT is registered */
    size_t sent;        /* bytes of the current batch written */
    size_t recvd;       /* bytes of the current batch received */
    size_t done;        /* requests of the current batch completed */
    uint64_t t_batch;   /* when the current batch was first written */
    uint64_t batches;   /* batches completed */
};

static unsigned char *batch;   /* opt_msg * opt_pipeline bytes, shared */
static size_t batch_len;

static void build_batch(void)
{
    batch_len = opt_msg * (size_t)opt_pipeline;
    batch = malloc(batch_len);
    if (!batch)
        die("out of memory");
    for (size_t i = 0; i < batch_len; i++) {
        size_t in_msg = i % opt_msg;
        batch[i] = in_msg == opt_msg - 1 ? '\n'
                 : (unsigned char)('a' + (i * 7 + i / opt_msg) % 26);
    }
}

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* Starts a non-blocking connect; returns the fd or -1. */
static int start_connect(void)
{
    int fd = socket(server_ai->ai_family, SOCK_STREAM, 0);
    if (fd < 0) {
        warnx("socket: %s", strerror(errno));
        return -1;
    }
    if (set_nonblock(fd) < 0) {
        close(fd);
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, server_ai->ai_addr, server_ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
        warnx("connect: %s", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static int connect_error(int fd)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return errno;
    return err;
}

/* ---------------------------------------------------------------- threads */

struct worker {
    pthread_t tid;
    int index;
    struct conn *conns;
    int nconns;
    int ep;
    int alive;                 /* connections not dead */
    uint64_t reqs;             /* completed inside the window */
    uint64_t errors;
    uint64_t stalled;
    int primed;                /* connections that have completed a batch */
    int unprimed;              /* live connections never answered in setup */
    struct hist hist;
    unsigned char *rbuf;
    size_t rbuf_len;
};

static pthread_barrier_t start_barrier;
static volatile uint64_t t_start, t_end;   /* written by main between barriers */

static void conn_fail(struct worker *w, struct conn *c, const char *what, int err)
{
    if (c->state == C_DEAD)
        return;
    if (err)
        warnx("connection %d: %s: %s", (int)(c - w->conns), what, strerror(err));
    else
        warnx("connection %d: %s", (int)(c - w->conns), what);
    epoll_ctl(w->ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->state = C_DEAD;
    w->errors++;
    w->alive--;
}

static void set_out(struct worker *w, struct conn *c, int on)
{
    if (c->want_out == on)
        return;
    struct epoll_event ev;
    ev.events = EPOLLIN | (on ? EPOLLOUT : 0);
    ev.data.ptr = c;
    epoll_ctl(w->ep, EPOLL_CTL_MOD, c->fd, &ev);
    c->want_out = on;
}

/* Writes what is left of the current batch. */
static void conn_flush(struct worker *w, struct conn *c)
{
    while (c->sent < batch_len) {
        ssize_t n = write(c->fd, batch + c->sent, batch_len - c->sent);
        if (n > 0) {
            c->sent += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            set_out(w, c, 1);
            return;
        }
        conn_fail(w, c, "write", n < 0 ? errno : 0);
        return;
    }
    set_out(w, c, 0);
}

static void conn_start_batch(struct worker *w, struct conn *c, uint64_t now)
{
    c->sent = c->recvd = c->done = 0;
    c->t_batch = now;
    conn_flush(w, c);
}

static void conn_read(struct worker *w, struct conn *c)
{
    for (;;) {
        size_t want = batch_len - c->recvd;
        if (want > w->rbuf_len)
            want = w->rbuf_len;
        ssize_t n = read(c->fd, w->rbuf, want);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            conn_fail(w, c, "read", errno);
            return;
        }
        if (n == 0) {
            conn_fail(w, c, "closed by the server", 0);
            return;
        }
        if (c->recvd + (size_t)n > c->sent) {
            conn_fail(w, c, "the server sent bytes before they were sent to it", 0);
            return;
        }
        if (memcmp(w->rbuf, batch + c->recvd, (size_t)n) != 0) {
            conn_fail(w, c, "the echo differs from what was sent", 0);
            return;
        }
        c->recvd += (size_t)n;
        uint64_t now = now_ns();
        int counting = now >= t_start && now < t_end;
        while (c->done < (size_t)opt_pipeline && c->recvd >= (c->done + 1) * opt_msg) {
            c->done++;
            if (counting) {
                w->reqs++;
                hist_add(&w->hist, now - c->t_batch);
            }
        }
        if (c->recvd == batch_len) {
            if (c->batches++ == 0)
                w->primed++;
            if (now >= t_end)
                return;
            conn_start_batch(w, c, now);
            if (c->state == C_DEAD)
                return;
        }
        /* Level-triggered: reading until EAGAIN is not needed, but a short
         * read of a long batch usually has more behind it. */
        if ((size_t)n < want)
            return;
    }
}

/* Runs the event loop until `until` (or, with prime set, until every live
 * connection has completed its first batch). */
static void event_loop(struct worker *w, uint64_t until, int prime)
{
    struct epoll_event evs[256];
    while (w->alive > 0 && !(prime && w->primed >= w->alive)) {
        uint64_t now = now_ns();
        uint64_t stop = until < t_end ? until : t_end;
        if (now >= stop)
            break;
        int timeout = (int)((stop - now) / 1000000u) + 1;
        if (timeout > 100)
            timeout = 100;
        int n = epoll_wait(w->ep, evs, 256, timeout);
        if (n < 0 && errno != EINTR)
            die("epoll_wait: %s", strerror(errno));
        for (int k = 0; k < n; k++) {
            struct conn *c = evs[k].data.ptr;
            if (c->state == C_CONNECTING) {
                int err = connect_error(c->fd);
                if (err) {
                    conn_fail(w, c, "connect", err);
                    continue;
                }
                c->state = C_ACTIVE;
                conn_start_batch(w, c, now_ns());
                continue;
            }
            if (c->state != C_ACTIVE)
                continue;
            if (evs[k].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                conn_read(w, c);
            if (c->state == C_ACTIVE && (evs[k].events & EPOLLOUT) && c->sent < batch_len)
                conn_flush(w, c);
        }
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;

    /* Connect every connection of this worker; each sends its first batch as
     * soon as it is connected. */
    for (int i = 0; i < w->nconns; i++) {
        struct conn *c = &w->conns[i];
        c->fd = start_connect();
        c->want_out = 1;
        if (c->fd < 0) {
            c->state = C_DEAD;
            w->errors++;
            continue;
        }
        c->state = C_CONNECTING;
        struct epoll_event ev;
        ev.events = EPOLLIN | EPOLLOUT;
        ev.data.ptr = c;
        epoll_ctl(w->ep, EPOLL_CTL_ADD, c->fd, &ev);
        w->alive++;
    }

    /* Setup: wait until every connection has had one answer, so that the
     * warmup and the window see the steady state (a server that accepts one
     * connection per pass may take a while to serve them all). */
    event_loop(w, now_ns() + (uint64_t)(setup_limit * 1e9), 1);
    for (int i = 0; i < w->nconns; i++) {
        struct conn *c = &w->conns[i];
        if (c->state == C_CONNECTING)
            conn_fail(w, c, "connect timed out", 0);
        else if (c->state == C_ACTIVE && c->batches == 0)
            w->unprimed++;
    }

    pthread_barrier_wait(&start_barrier);   /* all have been answered once */
    pthread_barrier_wait(&start_barrier);   /* main has set t_start, t_end */

    event_loop(w, UINT64_MAX, 0);

    /* Connections still waiting for an old batch. */
    uint64_t now = now_ns();
    uint64_t window = t_end - t_start;
    uint64_t limit = window / 2 < 1000000000u ? window / 2 : 1000000000u;
    for (int i = 0; i < w->nconns; i++) {
        struct conn *c = &w->conns[i];
        if (c->state == C_ACTIVE && c->recvd < batch_len && now - c->t_batch > limit)
            w->stalled++;
    }
    return NULL;
}

/* -------------------------------------------------------- idle connections */

static int *idle_fds;
static int idle_open;

/* Opens opt_idle connections, in chunks, waiting for each chunk to connect
 * and, with -S, for the server to hold them.  Returns 1 when the server was
 * seen to hold all of them (or when that cannot be checked), 0 otherwise. */
static int open_idle(void)
{
    if (opt_idle <= 0)
        return 1;
    idle_fds = calloc((size_t)opt_idle, sizeof *idle_fds);
    if (!idle_fds)
        die("out of memory");
    int ep = epoll_create1(0);
    if (ep < 0)
        die("epoll_create1: %s", strerror(errno));
    long base = opt_server_pid ? proc_fd_count(opt_server_pid) : -1;
    int all_held = 1;
    const int chunk = 500;
    uint64_t give_up = now_ns() + 120ull * 1000000000u;   /* for the whole of them */
    struct epoll_event evs[256];
    while (idle_open < opt_idle) {
        int first = idle_open, pending = 0;
        int last = first + chunk < opt_idle ? first + chunk : opt_idle;
        for (int i = first; i < last; i++) {
            int fd = start_connect();
            if (fd < 0)
                die("could not open idle connection %d", i);
            struct epoll_event ev;
            ev.events = EPOLLOUT;
            ev.data.fd = fd;
            epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
            idle_fds[i] = fd;
            pending++;
        }
        uint64_t deadline = now_ns() + 10ull * 1000000000u;
        while (pending > 0) {
            if (now_ns() > deadline)
                die("idle connections do not complete (%d pending)", pending);
            int n = epoll_wait(ep, evs, 256, 100);
            for (int k = 0; k < n; k++) {
                int fd = evs[k].data.fd;
                int err = connect_error(fd);
                if (err)
                    die("idle connection: connect: %s", strerror(err));
                epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
                pending--;
            }
        }
        idle_open = last;
        if (now_ns() > give_up && idle_open < opt_idle) {
            warnx("gave up opening idle connections after 120 s, at %d", idle_open);
            all_held = 0;
            break;
        }
        if (base >= 0) {
            /* Let the server accept this chunk before the next one, so that
             * its listen queue never overflows. */
            deadline = now_ns() + 20ull * 1000000000u;
            for (;;) {
                long have = proc_fd_count(opt_server_pid);
                if (have < 0 || have - base >= idle_open)
                    break;
                if (now_ns() > deadline || now_ns() > give_up) {
                    warnx("the server holds %ld of %d idle connections", have - base, idle_open);
                    all_held = 0;
                    break;
                }
                sleep_ms(2);
            }
        }
    }
    close(ep);
    return all_held;
}

/* ------------------------------------------------------------------- main */

static void usage(void)
{
    fputs("usage: loadgen -h HOST -p PORT [-c CONNS] [-s MSGSIZE] [-d SECONDS] [-P PIPELINE]\n"
          "               [-i IDLE] [-w WARMUP] [-t THREADS] [-S SERVER_PID] [-q]\n", stderr);
    exit(2);
}

static long parse_long(const char *s, long lo, long hi)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi)
        usage();
    return v;
}

static double parse_double(const char *s, double lo)
{
    char *end;
    double v = strtod(s, &end);
    if (*end || end == s || !(v >= lo))
        usage();
    return v;
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv)
{
    int ch;
    while ((ch = getopt(argc, argv, "h:p:c:s:d:P:i:w:t:S:q")) != -1) {
        switch (ch) {
        case 'h': opt_host = optarg; break;
        case 'p': opt_port = optarg; break;
        case 'c': opt_conns = (int)parse_long(optarg, 1, 1000000); break;
        case 's': opt_msg = (size_t)parse_long(optarg, 1, 64L << 20); break;
        case 'd': opt_duration = parse_double(optarg, 0.001); break;
        case 'P': opt_pipeline = (int)parse_long(optarg, 1, 1 << 16); break;
        case 'i': opt_idle = (int)parse_long(optarg, 0, 10000000); break;
        case 'w': opt_warmup = parse_double(optarg, 0.0); break;
        case 't': opt_threads = (int)parse_long(optarg, 1, 1024); break;
        case 'S': opt_server_pid = parse_long(optarg, 1, 1L << 30); break;
        case 'q': opt_quiet = 1; break;
        default: usage();
        }
    }
    if (!opt_port || optind != argc)
        usage();
    if (opt_threads > opt_conns)
        opt_threads = opt_conns;

    signal(SIGPIPE, SIG_IGN);
    raise_nofile();

    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    int gai = getaddrinfo(opt_host, opt_port, &hints, &server_ai);
    if (gai != 0)
        die("%s port %s: %s", opt_host, opt_port, gai_strerror(gai));

    build_batch();

    long srv_rss0 = -1, idle_rss = -1;
    if (opt_server_pid)
        srv_rss0 = proc_status_kb(opt_server_pid, "VmRSS");

    int idle_ok = open_idle();
    if (opt_idle > 0 && opt_server_pid) {
        sleep_ms(200);   /* let the server settle after the last accept */
        idle_rss = proc_status_kb(opt_server_pid, "VmRSS");
    }

    /* Busy connections, split between the workers. */
    struct worker *ws = calloc((size_t)opt_threads, sizeof *ws);
    struct conn *conns = calloc((size_t)opt_conns, sizeof *conns);
    if (!ws || !conns)
        die("out of memory");
    pthread_barrier_init(&start_barrier, NULL, (unsigned)opt_threads + 1);
    t_start = t_end = UINT64_MAX;
    int given = 0;
    for (int i = 0; i < opt_threads; i++) {
        struct worker *w = &ws[i];
        w->index = i;
        w->nconns = opt_conns / opt_threads + (i < opt_conns % opt_threads);
        w->conns = conns + given;
        given += w->nconns;
        w->ep = epoll_create1(0);
        if (w->ep < 0)
            die("epoll_create1: %s", strerror(errno));
        w->rbuf_len = batch_len < 256 * 1024 ? batch_len : 256 * 1024;
        if (w->rbuf_len < 4096)
            w->rbuf_len = 4096;
        w->rbuf = malloc(w->rbuf_len);
        if (!w->rbuf)
            die("out of memory");
        int rc = pthread_create(&w->tid, NULL, worker_main, w);
        if (rc)
            die("pthread_create: %s", strerror(rc));
    }

    uint64_t t_setup = now_ns();
    pthread_barrier_wait(&start_barrier);
    uint64_t t0 = now_ns();
    double setup_s = (double)(t0 - t_setup) / 1e9;
    t_start = t0 + (uint64_t)(opt_warmup * 1e9);
    t_end = t_start + (uint64_t)(opt_duration * 1e9);
    pthread_barrier_wait(&start_barrier);

    long long cpu0 = -1, cpu1 = -1;
    long rss = -1, hwm = -1;
    sleep_until(t_start);
    if (opt_server_pid)
        cpu0 = proc_cpu_us(opt_server_pid);
    sleep_until(t_end);
    if (opt_server_pid) {
        cpu1 = proc_cpu_us(opt_server_pid);
        rss = proc_status_kb(opt_server_pid, "VmRSS");
        hwm = proc_status_kb(opt_server_pid, "VmHWM");
    }

    struct hist *all = calloc(1, sizeof *all);
    if (!all)
        die("out of memory");
    uint64_t reqs = 0, errors = 0, stalled = 0;
    int alive = 0, unprimed = 0;
    for (int i = 0; i < opt_threads; i++) {
        pthread_join(ws[i].tid, NULL);
        hist_merge(all, &ws[i].hist);
        reqs += ws[i].reqs;
        errors += ws[i].errors;
        stalled += ws[i].stalled;
        alive += ws[i].alive;
        unprimed += ws[i].unprimed;
    }
    double dur = opt_duration;
    double rps = (double)reqs / dur;

    printf("rps=%.1f p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f mean_us=%.1f"
           " reqs=%llu errors=%llu stalled=%llu unprimed=%d setup_s=%.3f"
           " conns=%d idle=%d msg=%zu pipeline=%d dur=%.3f",
           rps, hist_quantile(all, 0.50) / 1e3, hist_quantile(all, 0.99) / 1e3,
           hist_quantile(all, 0.999) / 1e3, (double)all->max / 1e3,
           all->n ? all->sum / (double)all->n / 1e3 : 0.0,
           (unsigned long long)reqs, (unsigned long long)errors, (unsigned long long)stalled,
           unprimed, setup_s, opt_conns, opt_idle, opt_msg, opt_pipeline, dur);
    if (opt_server_pid) {
        long long cpu = (cpu0 >= 0 && cpu1 >= 0) ? cpu1 - cpu0 : -1;
        printf(" srv_cpu_us=%lld srv_cpu_us_per_req=%.3f srv_rss_kb=%ld srv_hwm_kb=%ld srv_rss0_kb=%ld",
               cpu, (cpu >= 0 && reqs) ? (double)cpu / (double)reqs : -1.0, rss, hwm, srv_rss0);
        if (opt_idle > 0)
            printf(" idle_rss_kb=%ld idle_bytes_per_conn=%.1f idle_ok=%d idle_open=%d", idle_rss,
                   (idle_rss >= 0 && srv_rss0 >= 0 && idle_open > 0)
                       ? (double)(idle_rss - srv_rss0) * 1024.0 / (double)idle_open : -1.0,
                   idle_ok, idle_open);
    }
    putchar('\n');
    fflush(stdout);
    if (!opt_quiet && errors)
        fprintf(stderr, "loadgen: %llu of %d connections failed\n",
                (unsigned long long)errors, opt_conns);

    for (int i = 0; i < idle_open; i++)
        close(idle_fds[i]);
    (void)alive;
    return reqs == 0 && alive == 0 ? 1 : 0;
}
