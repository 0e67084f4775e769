/*
 * echo_epoll: the limit.  A single-threaded, level-triggered epoll echo server
 * with as little work per request as an echo server can do: one read of up to
 * 64 KiB per readable event, written straight back.  What the socket does not
 * take is kept for that connection, which then stops reading and waits for
 * EPOLLOUT until the rest is gone (so a client that does not read cannot make
 * it buffer without bound).
 *
 *   echo_epoll [PORT [HOST]]     PORT 0 (default) lets the system pick
 *
 * Prints "port N" once listening, then serves until killed.  Accepted sockets
 * get TCP_NODELAY, as in every server of the benchmark.
 */
#define _GNU_SOURCE   /* accept4 */

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUFSZ 65536

struct pending {   /* unsent bytes of one connection */
    char *data;
    size_t off, len;
};

static struct pending *pend;   /* indexed by fd, grown on demand */
static size_t npend;
static int ep;

static void die(const char *what)
{
    fprintf(stderr, "echo_epoll: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void drop(int fd)
{
    if ((size_t)fd < npend && pend[fd].data) {
        free(pend[fd].data);
        pend[fd].data = NULL;
    }
    close(fd);   /* also leaves the epoll set */
}

static void watch(int fd, unsigned events, int op)
{
    struct epoll_event ev;
    ev.events = events;
    ev.data.fd = fd;
    if (epoll_ctl(ep, op, fd, &ev) < 0)
        die("epoll_ctl");
}

static void keep(int fd, const char *data, size_t len)
{
    if ((size_t)fd >= npend) {
        size_t n = npend ? npend : 1024;
        while (n <= (size_t)fd)
            n *= 2;
        struct pending *p = realloc(pend, n * sizeof *p);
        if (!p)
            die("realloc");
        memset(p + npend, 0, (n - npend) * sizeof *p);
        pend = p;
        npend = n;
    }
    pend[fd].data = malloc(len);
    if (!pend[fd].data)
        die("malloc");
    memcpy(pend[fd].data, data, len);
    pend[fd].off = 0;
    pend[fd].len = len;
    watch(fd, EPOLLOUT, EPOLL_CTL_MOD);
}

/* Sends what is pending; back to reading once it is all gone. */
static void on_writable(int fd)
{
    struct pending *p = &pend[fd];
    while (p->off < p->len) {
        ssize_t n = send(fd, p->data + p->off, p->len - p->off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            drop(fd);
            return;
        }
        p->off += (size_t)n;
    }
    free(p->data);
    p->data = NULL;
    watch(fd, EPOLLIN, EPOLL_CTL_MOD);
}

static void on_readable(int fd)
{
    static char buf[BUFSZ];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
        drop(fd);
        return;
    }
    if (n < 0)
        return;
    size_t off = 0;
    while (off < (size_t)n) {
        ssize_t w = send(fd, buf + off, (size_t)n - off, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                keep(fd, buf + off, (size_t)n - off);
                return;
            }
            drop(fd);
            return;
        }
        off += (size_t)w;
    }
}

static void on_accept(int lfd)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            if (errno == EMFILE || errno == ENFILE) {
                fprintf(stderr, "echo_epoll: accept: %s\n", strerror(errno));
                return;
            }
            die("accept4");
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        watch(fd, EPOLLIN, EPOLL_CTL_ADD);
    }
}

int main(int argc, char **argv)
{
    int port = argc > 1 ? atoi(argv[1]) : 0;
    const char *host = argc > 2 ? argv[2] : "127.0.0.1";

    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (lfd < 0)
        die("socket");
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((unsigned short)port);
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
        fprintf(stderr, "echo_epoll: bad host %s\n", host);
        return 2;
    }
    if (bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0)
        die("bind");
    if (listen(lfd, 1024) < 0)
        die("listen");
    socklen_t len = sizeof sa;
    if (getsockname(lfd, (struct sockaddr *)&sa, &len) < 0)
        die("getsockname");

    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1");
    watch(lfd, EPOLLIN, EPOLL_CTL_ADD);

    printf("port %d\n", ntohs(sa.sin_port));
    fflush(stdout);

    struct epoll_event evs[512];
    for (;;) {
        int n = epoll_wait(ep, evs, 512, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd)
                on_accept(lfd);
            else if ((size_t)fd < npend && pend[fd].data)
                on_writable(fd);
            else
                on_readable(fd);
        }
    }
}
