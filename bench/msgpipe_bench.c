/*
 * msgpipe_bench.c - msgpipe against the raw kernel transport, nng and
 * ZeroMQ, in one run on one machine.  Never a pass/fail test.
 *
 *   msgpipe_bench [--quick] [--csv] [--csv-file=PATH] [--transports=LIST]
 *                 [--cases=LIST] [--reps=N] [--idle=LIST] [--idle-reps=N]
 *                 [--spin-us=N]
 *                 [--pp-sizes=LIST] [--st-sizes=LIST] [--time=SECONDS]
 *                 [--count=N] [--pin] [--list]
 *
 * Every ping-pong and stream case runs --reps times (default 5; 3 with
 * --quick, 1 with --count), the transports interleaved: for each size,
 * msgpipe, raw, nng, zmq, then again msgpipe, raw, ... - so that a machine
 * that is busier for a while slows all of them alike.  Each figure
 * reported is the median of those runs, with the spread (min-max); every
 * ratio is a ratio of medians.  (Stream counts are chosen by the pilot of
 * the first run and kept for the others.)
 *
 * Cases (every transport runs the same ones):
 *
 *   pingpong  one message in flight: the measuring peer sends a message of
 *             SIZE bytes, the other peer sends it back; a monotonic clock is
 *             read once per round trip and every round trip after the
 *             warm-up is kept, sorted, and reported as p50, p99 and p99.9.
 *             Sizes 16 B, 256 B, 4 KiB, 64 KiB.
 *   stream    one-way throughput: one peer sends messages of SIZE bytes as
 *             fast as it can, the other receives them, checks each one's
 *             length and sequence number, and counts them.  The rate is
 *             taken over a fixed count of messages after a warm-up of a
 *             tenth as many; the count is chosen from a short pilot run so
 *             that the measured part lasts about --time seconds.
 *             Sizes 64 B, 4 KiB, 64 KiB, 1 MiB.
 *   idle      (--cases=idle, POSIX, not run by default) one polling echo
 *             server holding N idle clients (--idle=0,1000,10000) and one
 *             active client doing 16-byte ping-pong: p50/p99 round trip
 *             and the server's CPU time per message, msgpipe_poller
 *             against a raw epoll loop; --idle-reps runs of each, the
 *             two interleaved; medians with min-max.  See "Idle clients"
 *             below.
 *   spin      (--cases=spin, POSIX, not run by default) 16-byte ping-pong
 *             with msgpipe_options.spin_us against raw blocking and raw
 *             spinning sockets, on two CPUs and on one, with each side's
 *             CPU time per round trip.  See "Spinning" below.
 *
 * Transports:
 *
 *   msgpipe   this library, whatever it was built with: labelled "msgpipe"
 *             (posix-socket), "msgpipe-fifo" (posix-fifo) or
 *             "msgpipe-win32" (win32-pipe).
 *   raw       AF_UNIX SOCK_STREAM with plain read()/write() and no framing
 *             (POSIX): the limit.  Ping-pong reads exactly SIZE bytes;
 *             streaming writes SIZE-byte blocks and reads in 256 KiB chunks
 *             (or SIZE, if larger) until the byte count.
 *   rawfifo   two FIFOs (mkfifo), plain read()/write(), no framing (POSIX):
 *             the limit of the FIFO transport.  On by default only when
 *             msgpipe is the FIFO build.
 *   rawpoll   raw, but with a non-blocking descriptor and a poll() before
 *             every read (POSIX): what msgpipe's waiting pattern costs by
 *             itself.  Only when asked for (--transports=...,rawpoll).
 *   nng       nng pair1 over ipc:// (nng_send/nng_recv into the caller's
 *             buffer), when built with nng.
 *   zmq       ZeroMQ PAIR over ipc:// (zmq_send/zmq_recv), when built with
 *             libzmq.
 *
 * The two peers are separate processes: on POSIX two fork()ed children of
 * a coordinator that never touches a transport (nng and ZeroMQ start
 * threads, which a fork would not carry over); on Windows the benchmark
 * itself plus a copy started with CreateProcess (msgpipe only there).
 *
 * Output: a table of medians with the spread, and each transport's ratio
 * of medians to raw (latency: transport/raw, throughput: transport/raw);
 * with --csv, lines "transport,case,size,metric,value" after one header
 * line: metric p50_us, p99_us, p999_us, msgs_per_s or mib_per_s with the
 * median of the runs as value, each followed by the same metric with
 * _min and _max appended (e.g. p50_us_min, p50_us_max): the spread.
 * Progress (every run's figures) goes to stderr.
 */
#include "msgpipe.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32
#include <windows.h>
#else
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#endif

#ifdef MSGPIPE_BENCH_NNG
#include <nng/nng.h>
#include <nng/protocol/pair1/pair.h>
#endif
#ifdef MSGPIPE_BENCH_ZMQ
#include <zmq.h>
#endif

/* ---- Transports, cases, sizes ------------------------------------------ */

enum kind { K_MSGPIPE, K_RAW, K_RAWFIFO, K_NNG, K_ZMQ, K_RAWPOLL, K_COUNT };
enum bcase { C_PINGPONG, C_STREAM };

static const char *const kind_names[K_COUNT] = {"msgpipe", "raw", "rawfifo",
                                                "nng",     "zmq", "rawpoll"};

static int kind_available(int k)
{
    switch (k) {
    case K_MSGPIPE:
        return 1;
#ifndef _WIN32
    case K_RAW:
    case K_RAWFIFO:
    case K_RAWPOLL:
        return 1;
#endif
#ifdef MSGPIPE_BENCH_NNG
    case K_NNG:
        return 1;
#endif
#ifdef MSGPIPE_BENCH_ZMQ
    case K_ZMQ:
        return 1;
#endif
    default:
        return 0;
    }
}

/* msgpipe_options.spin_us of the pipes the peers make: 0 but in the
 * msgpipe-spin runs of --cases=spin (set in their forked children). */
static int64_t g_mp_spin_us;

/* --batch=N: msgpipe's stream sender uses msgpipe_send_batch() with N
 * messages per call (1: msgpipe_send() for each).  POSIX only (the jobs
 * are forked children that inherit it). */
static long g_batch = 1;

/* The label of a transport in the output. */
static const char *kind_label(int k)
{
    if (k == K_MSGPIPE) {
        const char *b = msgpipe_backend();
        int fifo = strcmp(b, "posix-fifo") == 0;
        if (g_batch > 1)
            return fifo ? "msgpipe-fifo-batch" : "msgpipe-batch";
        if (fifo)
            return "msgpipe-fifo";
        if (strcmp(b, "win32-pipe") == 0)
            return "msgpipe-win32";
        return "msgpipe";
    }
    return kind_names[k];
}

#define MAX_SIZES 16
static size_t pp_sizes[MAX_SIZES] = {16, 256, 4096, 65536};
static int n_pp_sizes = 4;
static size_t st_sizes[MAX_SIZES] = {64, 4096, 65536, 1048576};
static int n_st_sizes = 4;

/* Raw streaming reads this much at a time (or the block size if larger). */
#define RAW_CHUNK (256 * 1024)

/* ---- Settings ------------------------------------------------------------ */

static struct {
    int quick;
    int csv;
    int pin;
    double pp_seconds;  /* measured part of each ping-pong case */
    double pp_warm;     /* its warm-up */
    double st_seconds;  /* measured part of each stream case */
    long count;         /* --count: fixed round trips / messages */
    int kinds[K_COUNT]; /* which transports to run */
    int cases[2];
    int idle; /* --cases=idle */
    int spin; /* --cases=spin */
} cfg;

/* ---- Clock ----------------------------------------------------------------
 */

static uint64_t now_ns(void)
{
#ifdef _WIN32
    static LARGE_INTEGER freq;
    LARGE_INTEGER c;
    if (freq.QuadPart == 0)
        QueryPerformanceFrequency(&freq);
    QueryPerformanceCounter(&c);
    return (uint64_t)((double)c.QuadPart * 1e9 / (double)freq.QuadPart);
#else
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
#endif
}

#ifndef _WIN32
static void sleep_ms(int ms)
{
    poll(NULL, 0, ms);
}
#endif

static long my_pid(void)
{
#ifdef _WIN32
    return (long)GetCurrentProcessId();
#else
    return (long)getpid();
#endif
}

/* ---- A job: one transport, one case, one size ------------------------------
 */

typedef struct job {
    int kind;
    int bcase;
    size_t size;
    double seconds; /* ping-pong: measured time; warm-up pp_warm */
    double warm_seconds;
    long count;     /* stream: measured messages */
    long warm;      /* stream: messages before the clock starts */
    char addr[200]; /* msgpipe name, socket path, FIFO base path or URL */
} job;

typedef struct result {
    int ok;
    char err[160];
    long samples; /* round trips measured, or messages counted */
    double p50_us, p99_us, p999_us;
    double msgs_per_s, mib_per_s;
    double seconds;
} result;

static void fail(result *r, const char *fmt, ...)
{
    va_list ap;
    r->ok = 0;
    va_start(ap, fmt);
    vsnprintf(r->err, sizeof(r->err), fmt, ap);
    va_end(ap);
}

/* ---- Peers
 * ------------------------------------------------------------------- */

typedef struct peer {
    int kind;
    msgpipe_server *srv;
    msgpipe *mp;
    int fd, rfd, wfd; /* raw: fd; rawfifo: rfd/wfd */
#ifdef MSGPIPE_BENCH_NNG
    nng_socket ns;
#endif
#ifdef MSGPIPE_BENCH_ZMQ
    void *zctx, *zs;
#endif
    char err[120];
} peer;

static int perr(peer *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->err, sizeof(p->err), fmt, ap);
    va_end(ap);
    return -1;
}

#ifndef _WIN32
/* Wait for fd (rawpoll: a non-blocking descriptor, as msgpipe uses). */
static int wait_fd(int fd, short ev)
{
    struct pollfd pf;
    pf.fd = fd;
    pf.events = ev;
    pf.revents = 0;
    while (poll(&pf, 1, -1) < 0)
        if (errno != EINTR)
            return -1;
    return 0;
}

static int write_all(int fd, const void *buf, size_t n)
{
    const char *b = (const char *)buf;
    while (n > 0) {
        ssize_t k = write(fd, b, n);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            if ((errno == EAGAIN || errno == EWOULDBLOCK) &&
                wait_fd(fd, POLLOUT) == 0)
                continue;
            return -1;
        }
        b += k;
        n -= (size_t)k;
    }
    return 0;
}

/* Read exactly n bytes.  poll_first (rawpoll): wait with poll() before
 * every read, the pattern of a receiver on a non-blocking descriptor. */
static int read_exact(int fd, void *buf, size_t n, int poll_first)
{
    char *b = (char *)buf;
    while (n > 0) {
        ssize_t k;
        if (poll_first && wait_fd(fd, POLLIN) != 0)
            return -1;
        k = read(fd, b, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && poll_first)
            continue;
        if (k <= 0)
            return -1;
        b += k;
        n -= (size_t)k;
    }
    return 0;
}

static void fifo_paths(const char *base, char *c2s, char *s2c, size_t cap)
{
    snprintf(c2s, cap, "%s.c2s", base);
    snprintf(s2c, cap, "%s.s2c", base);
}
#endif

/* Open a peer: the server listens and accepts one client, the client
 * connects (retrying until the server is there, 10 s at most). */
static int peer_open(peer *p, int kind, int server, const char *addr)
{
    msgpipe_options mo;
    int rc;
#ifndef _WIN32
    uint64_t until = now_ns() + 10000000000ull;
#endif

    memset(p, 0, sizeof(*p));
    p->kind = kind;
    p->fd = p->rfd = p->wfd = -1;
    switch (kind) {
    case K_MSGPIPE:
        msgpipe_options_init(&mo);
        mo.spin_us = g_mp_spin_us;
        if (server) {
            rc = msgpipe_listen(addr, &mo, &p->srv);
            if (rc != MSGPIPE_OK)
                return perr(p, "msgpipe_listen: %s", msgpipe_strerror(rc));
            rc = msgpipe_accept(p->srv, 20000, &p->mp);
            if (rc != MSGPIPE_OK)
                return perr(p, "msgpipe_accept: %s", msgpipe_strerror(rc));
        } else {
            rc = msgpipe_connect(addr, &mo, 10000, &p->mp);
            if (rc != MSGPIPE_OK)
                return perr(p, "msgpipe_connect: %s", msgpipe_strerror(rc));
        }
        return 0;
#ifndef _WIN32
    case K_RAW:
    case K_RAWPOLL: {
        struct sockaddr_un sa;
        int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        if (fd < 0)
            return perr(p, "socket: %s", strerror(errno));
        memset(&sa, 0, sizeof(sa));
        sa.sun_family = AF_UNIX;
        snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", addr);
        if (server) {
            unlink(addr);
            if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 ||
                listen(fd, 4) < 0)
                return perr(p, "bind/listen %s: %s", addr, strerror(errno));
            p->fd = accept(fd, NULL, NULL);
            close(fd);
            unlink(addr);
            if (p->fd < 0)
                return perr(p, "accept: %s", strerror(errno));
        } else {
            while (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
                if ((errno != ENOENT && errno != ECONNREFUSED) ||
                    now_ns() > until)
                    return perr(p, "connect %s: %s", addr, strerror(errno));
                sleep_ms(1);
            }
            p->fd = fd;
        }
        if (kind == K_RAWPOLL)
            fcntl(p->fd, F_SETFL, fcntl(p->fd, F_GETFL) | O_NONBLOCK);
        return 0;
    }
    case K_RAWFIFO: {
        /* The coordinator made both FIFOs; both sides open c2s first. */
        char c2s[256], s2c[256];
        fifo_paths(addr, c2s, s2c, sizeof(c2s));
        if (server) {
            p->rfd = open(c2s, O_RDONLY);
            p->wfd = p->rfd < 0 ? -1 : open(s2c, O_WRONLY);
        } else {
            p->wfd = open(c2s, O_WRONLY);
            p->rfd = p->wfd < 0 ? -1 : open(s2c, O_RDONLY);
        }
        if (p->rfd < 0 || p->wfd < 0)
            return perr(p, "open fifo %s: %s", addr, strerror(errno));
        return 0;
    }
#endif
#ifdef MSGPIPE_BENCH_NNG
    case K_NNG:
        if ((rc = nng_pair1_open(&p->ns)) != 0)
            return perr(p, "nng_pair1_open: %s", nng_strerror(rc));
        /* No receive limit (the default, 1 MiB, would drop 1 MiB
         * messages: nng counts its own header). */
        nng_socket_set_size(p->ns, NNG_OPT_RECVMAXSZ, 0);
        if (server) {
            if ((rc = nng_listen(p->ns, addr, NULL, 0)) != 0)
                return perr(p, "nng_listen %s: %s", addr, nng_strerror(rc));
        } else {
            while ((rc = nng_dial(p->ns, addr, NULL, 0)) != 0) {
                if (now_ns() > until)
                    return perr(p, "nng_dial %s: %s", addr, nng_strerror(rc));
                sleep_ms(1);
            }
        }
        return 0;
#endif
#ifdef MSGPIPE_BENCH_ZMQ
    case K_ZMQ: {
        int linger = 0;
        p->zctx = zmq_ctx_new();
        p->zs = p->zctx ? zmq_socket(p->zctx, ZMQ_PAIR) : NULL;
        if (p->zs == NULL)
            return perr(p, "zmq_socket: %s", zmq_strerror(zmq_errno()));
        zmq_setsockopt(p->zs, ZMQ_LINGER, &linger, sizeof(linger));
        if (server)
            rc = zmq_bind(p->zs, addr);
        else
            rc = zmq_connect(p->zs, addr);
        if (rc != 0)
            return perr(p, "zmq %s %s: %s", server ? "bind" : "connect", addr,
                        zmq_strerror(zmq_errno()));
        return 0;
    }
#endif
    default:
        return perr(p, "transport %d not built in", kind);
    }
}

static void peer_close(peer *p)
{
    switch (p->kind) {
    case K_MSGPIPE:
        msgpipe_close(p->mp);
        msgpipe_server_close(p->srv);
        break;
#ifndef _WIN32
    case K_RAW:
    case K_RAWPOLL:
        if (p->fd >= 0)
            close(p->fd);
        break;
    case K_RAWFIFO:
        if (p->rfd >= 0)
            close(p->rfd);
        if (p->wfd >= 0)
            close(p->wfd);
        break;
#endif
#ifdef MSGPIPE_BENCH_NNG
    case K_NNG:
        nng_close(p->ns);
        break;
#endif
#ifdef MSGPIPE_BENCH_ZMQ
    case K_ZMQ:
        if (p->zs)
            zmq_close(p->zs);
        if (p->zctx)
            zmq_ctx_term(p->zctx);
        break;
#endif
    default:
        break;
    }
}

/* Send one message of n bytes.  0 or -1 (p->err says why). */
static int peer_send(peer *p, const void *buf, size_t n)
{
    int rc;
    switch (p->kind) {
    case K_MSGPIPE:
        rc = msgpipe_send(p->mp, buf, n, MSGPIPE_INFINITE);
        return rc == MSGPIPE_OK
                   ? 0
                   : perr(p, "msgpipe_send: %s", msgpipe_strerror(rc));
#ifndef _WIN32
    case K_RAW:
    case K_RAWPOLL:
        return write_all(p->fd, buf, n) == 0
                   ? 0
                   : perr(p, "write: %s", strerror(errno));
    case K_RAWFIFO:
        return write_all(p->wfd, buf, n) == 0
                   ? 0
                   : perr(p, "write: %s", strerror(errno));
#endif
#ifdef MSGPIPE_BENCH_NNG
    case K_NNG:
        rc = nng_send(p->ns, (void *)buf, n, 0);
        return rc == 0 ? 0 : perr(p, "nng_send: %s", nng_strerror(rc));
#endif
#ifdef MSGPIPE_BENCH_ZMQ
    case K_ZMQ:
        rc = zmq_send(p->zs, buf, n, 0);
        return rc == (int)n
                   ? 0
                   : perr(p, "zmq_send: %s", zmq_strerror(zmq_errno()));
#endif
    default:
        return perr(p, "bad transport");
    }
}

/* Receive one message into buf (capacity cap); *n its length.  The raw
 * transports have no messages: they read exactly `want` bytes. */
static int peer_recv(peer *p, void *buf, size_t cap, size_t want, size_t *n)
{
    int rc;
    (void)want;
    switch (p->kind) {
    case K_MSGPIPE:
        rc = msgpipe_recv(p->mp, buf, cap, n, MSGPIPE_INFINITE);
        return rc == MSGPIPE_OK
                   ? 0
                   : perr(p, "msgpipe_recv: %s", msgpipe_strerror(rc));
#ifndef _WIN32
    case K_RAW:
    case K_RAWPOLL:
    case K_RAWFIFO:
        *n = want;
        return read_exact(p->kind == K_RAWFIFO ? p->rfd : p->fd, buf, want,
                          p->kind == K_RAWPOLL) == 0
                   ? 0
                   : perr(p, "read: %s", errno ? strerror(errno) : "EOF");
#endif
#ifdef MSGPIPE_BENCH_NNG
    case K_NNG:
        *n = cap;
        rc = nng_recv(p->ns, buf, n, 0);
        return rc == 0 ? 0 : perr(p, "nng_recv: %s", nng_strerror(rc));
#endif
#ifdef MSGPIPE_BENCH_ZMQ
    case K_ZMQ:
        rc = zmq_recv(p->zs, buf, cap, 0);
        if (rc < 0)
            return perr(p, "zmq_recv: %s", zmq_strerror(zmq_errno()));
        *n = (size_t)rc;
        return 0;
#endif
    default:
        return perr(p, "bad transport");
    }
}

/* Block until the other side goes away (or forever: the coordinator ends
 * this process once the measuring side has reported). */
static void peer_wait_end(peer *p)
{
    char b[64];
    size_t n;
    while (peer_recv(p, b, sizeof(b), 1, &n) == 0)
        ;
}

/* ---- The two roles
 * ------------------------------------------------------------ */

static void put_seq(unsigned char *b, size_t size, uint64_t v)
{
    if (size >= 8)
        memcpy(b, &v, 8);
}

static int seq_ok(const unsigned char *b, size_t size, uint64_t v)
{
    uint64_t got;
    if (size < 8)
        return 1;
    memcpy(&got, b, 8);
    return got == v;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of a sorted array, in microseconds. */
static double pct_us(const uint64_t *v, long n, double q)
{
    long k = (long)ceil(q * (double)n) - 1;
    if (k < 0)
        k = 0;
    if (k >= n)
        k = n - 1;
    return (double)v[k] / 1000.0;
}

/* The measuring side: ping-pong sender, stream receiver.  The server. */
static void run_server(const job *j, result *r)
{
    peer p;
    size_t cap = j->size, n = 0;
    unsigned char *buf;
    uint64_t seq = 0;

    memset(r, 0, sizeof(*r));
    if (j->bcase == C_STREAM &&
        (j->kind == K_RAW || j->kind == K_RAWFIFO || j->kind == K_RAWPOLL) &&
        cap < RAW_CHUNK)
        cap = RAW_CHUNK;
    buf = (unsigned char *)malloc(cap);
    if (buf == NULL) {
        fail(r, "out of memory");
        return;
    }
    memset(buf, 0x5a, cap);
    if (peer_open(&p, j->kind, 1, j->addr) != 0) {
        fail(r, "%s", p.err);
        free(buf);
        return;
    }
    r->ok = 1;
    if (j->bcase == C_PINGPONG) {
        long cap_samples = 2000000, ns = 0;
        uint64_t *s = (uint64_t *)malloc((size_t)cap_samples * sizeof(*s));
        uint64_t t0, t1, end;
        if (s == NULL) {
            fail(r, "out of memory");
            goto out;
        }
        memset(s, 0, (size_t)cap_samples * sizeof(*s)); /* fault it in */
        /* Warm-up: not recorded. */
        end = now_ns() + (uint64_t)(j->warm_seconds * 1e9);
        while (j->warm_seconds > 0) {
            put_seq(buf, j->size, seq);
            if (peer_send(&p, buf, j->size) != 0 ||
                peer_recv(&p, buf, cap, j->size, &n) != 0) {
                fail(r, "%s", p.err);
                break;
            }
            seq++;
            if (now_ns() >= end)
                break;
        }
        /* Then for a time, or (--count) a fixed number of round trips. */
        if (j->count > 0 && j->count < cap_samples)
            cap_samples = j->count;
        t0 = now_ns();
        end = j->count > 0 ? UINT64_MAX : t0 + (uint64_t)(j->seconds * 1e9);
        while (r->ok && ns < cap_samples) {
            put_seq(buf, j->size, seq);
            if (peer_send(&p, buf, j->size) != 0 ||
                peer_recv(&p, buf, cap, j->size, &n) != 0) {
                fail(r, "%s", p.err);
                break;
            }
            t1 = now_ns();
            if (n != j->size || !seq_ok(buf, j->size, seq)) {
                fail(r, "round trip %ld: got %lu bytes or a wrong echo", ns,
                     (unsigned long)n);
                break;
            }
            seq++;
            s[ns++] = t1 - t0;
            t0 = t1;
            if (t1 >= end)
                break;
        }
        if (r->ok && ns > 0) {
            qsort(s, (size_t)ns, sizeof(*s), cmp_u64);
            r->samples = ns;
            r->p50_us = pct_us(s, ns, 0.50);
            r->p99_us = pct_us(s, ns, 0.99);
            r->p999_us = pct_us(s, ns, 0.999);
        }
        free(s);
    } else {
        uint64_t t0 = 0, t1;
        long i, total = j->warm + j->count;
#ifndef _WIN32
        if (j->kind == K_RAW || j->kind == K_RAWFIFO || j->kind == K_RAWPOLL) {
            /* Raw: no messages, a byte count. */
            int fd = j->kind == K_RAWFIFO ? p.rfd : p.fd;
            uint64_t want = (uint64_t)total * j->size, got = 0;
            uint64_t warm_bytes = (uint64_t)j->warm * j->size;
            if (j->warm == 0)
                t0 = now_ns();
            while (got < want) {
                uint64_t left = want - got;
                ssize_t k;
                if (j->kind == K_RAWPOLL && wait_fd(fd, POLLIN) != 0) {
                    fail(r, "poll: %s", strerror(errno));
                    break;
                }
                k = read(fd, buf, left < cap ? (size_t)left : cap);
                if (k < 0 && errno == EINTR)
                    continue;
                if (k < 0 && j->kind == K_RAWPOLL &&
                    (errno == EAGAIN || errno == EWOULDBLOCK))
                    continue;
                if (k <= 0) {
                    fail(r, "read after %llu of %llu bytes: %s",
                         (unsigned long long)got, (unsigned long long)want,
                         k == 0 ? "EOF" : strerror(errno));
                    break;
                }
                if (got < warm_bytes && got + (uint64_t)k >= warm_bytes)
                    t0 = now_ns();
                got += (uint64_t)k;
            }
        } else
#endif
        {
            for (i = 0; i < total; i++) {
                if (i == j->warm)
                    t0 = now_ns();
                if (peer_recv(&p, buf, cap, j->size, &n) != 0) {
                    fail(r, "message %ld: %s", i, p.err);
                    break;
                }
                if (n != j->size || !seq_ok(buf, j->size, (uint64_t)i)) {
                    fail(r, "message %ld: %lu bytes or out of sequence", i,
                         (unsigned long)n);
                    break;
                }
            }
        }
        t1 = now_ns();
        if (r->ok) {
            double sec = (double)(t1 - t0) / 1e9;
            r->samples = j->count;
            r->seconds = sec;
            r->msgs_per_s = (double)j->count / sec;
            r->mib_per_s =
                (double)j->count * (double)j->size / sec / (1024.0 * 1024.0);
        }
    }
out:
    peer_close(&p);
    free(buf);
}

/* The other side: ping-pong echo, stream sender.  The client. */
static int run_client(const job *j)
{
    peer p;
    size_t n = 0;
    unsigned char *buf = (unsigned char *)malloc(j->size ? j->size : 1);
    long i;

    if (buf == NULL)
        return 1;
    memset(buf, 0xa5, j->size);
    if (peer_open(&p, j->kind, 0, j->addr) != 0) {
        fprintf(stderr, "msgpipe_bench: client: %s\n", p.err);
        free(buf);
        return 1;
    }
    if (j->bcase == C_PINGPONG) {
        /* Echo until the measuring side closes (or the process is ended). */
        while (peer_recv(&p, buf, j->size, j->size, &n) == 0 &&
               peer_send(&p, buf, n) == 0)
            ;
    } else if (j->kind == K_MSGPIPE && g_batch > 1) {
        /* N messages, each with its own sequence number, per call. */
        long total = j->warm + j->count, b, k;
        size_t sz = j->size ? j->size : 1;
        msgpipe_msg *mm = (msgpipe_msg *)malloc((size_t)g_batch * sizeof(*mm));
        unsigned char *bb = (unsigned char *)malloc((size_t)g_batch * sz);
        if (bb != NULL)
            memset(bb, 0xa5, (size_t)g_batch * sz);
        for (i = 0; mm != NULL && bb != NULL && i < total; i += k) {
            int rc;
            k = total - i < g_batch ? total - i : g_batch;
            for (b = 0; b < k; b++) {
                put_seq(bb + (size_t)b * sz, j->size, (uint64_t)(i + b));
                mm[b].data = bb + (size_t)b * sz;
                mm[b].len = j->size;
            }
            rc =
                msgpipe_send_batch(p.mp, mm, (size_t)k, NULL, MSGPIPE_INFINITE);
            if (rc != MSGPIPE_OK) {
                fprintf(stderr, "msgpipe_bench: sender: %s\n",
                        msgpipe_strerror(rc));
                break;
            }
        }
        free(mm);
        free(bb);
        peer_wait_end(&p);
    } else {
        long total = j->warm + j->count;
        for (i = 0; i < total; i++) {
            put_seq(buf, j->size, (uint64_t)i);
            if (peer_send(&p, buf, j->size) != 0) {
                fprintf(stderr, "msgpipe_bench: sender: %s\n", p.err);
                break;
            }
        }
        peer_wait_end(&p);
    }
    peer_close(&p);
    free(buf);
    return 0;
}

/* ---- Running a job in two processes
 * ------------------------------------------- */

static unsigned long job_serial;

static void make_addr(job *j)
{
    const char *dir = NULL;
    char base[160];
#ifndef _WIN32
    dir = getenv("XDG_RUNTIME_DIR");
    if (dir == NULL || dir[0] != '/' || strlen(dir) > 60)
        dir = "/tmp";
#endif
    job_serial++;
    switch (j->kind) {
    case K_MSGPIPE:
        /* A plain name: msgpipe maps it (XDG_RUNTIME_DIR or /tmp; \\.\pipe). */
        snprintf(j->addr, sizeof(j->addr), "mpbench-%ld-%lu", my_pid(),
                 job_serial);
        break;
    case K_NNG:
    case K_ZMQ:
        snprintf(base, sizeof(base), "%s/mpbench-%s-%ld-%lu", dir,
                 kind_names[j->kind], my_pid(), job_serial);
        snprintf(j->addr, sizeof(j->addr), "ipc://%s", base);
        break;
    default:
        snprintf(j->addr, sizeof(j->addr), "%s/mpbench-%s-%ld-%lu", dir,
                 kind_names[j->kind], my_pid(), job_serial);
        break;
    }
}

#ifndef _WIN32
static void pin_cpu(int which)
{
#if defined(__linux__) && defined(CPU_SET)
    cpu_set_t set;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (!cfg.pin || n < 2)
        return;
    CPU_ZERO(&set);
    CPU_SET(which % (int)n, &set);
    sched_setaffinity(0, sizeof(set), &set);
#else
    (void)which;
#endif
}

static void run_job(job *j, result *r)
{
    int pfd[2];
    pid_t s, c;
    char c2s[256], s2c[256];
    struct pollfd pf;
    ssize_t k;
    int status;
    double limit = 60.0 + (j->bcase == C_PINGPONG ? j->seconds + j->warm_seconds
                                                  : 10.0 * cfg.st_seconds);
    if (cfg.count > 0)
        limit = 3600; /* a fixed count, perhaps under strace */

    memset(r, 0, sizeof(*r));
    make_addr(j);
    if (j->kind == K_RAWFIFO) {
        fifo_paths(j->addr, c2s, s2c, sizeof(c2s));
        unlink(c2s);
        unlink(s2c);
        if (mkfifo(c2s, 0600) != 0 || mkfifo(s2c, 0600) != 0) {
            fail(r, "mkfifo %s: %s", j->addr, strerror(errno));
            return;
        }
    }
    if (pipe(pfd) != 0) {
        fail(r, "pipe: %s", strerror(errno));
        return;
    }
    fflush(stdout);
    fflush(stderr);
    s = fork();
    if (s == 0) {
        result rr;
        close(pfd[0]);
        pin_cpu(0);
        run_server(j, &rr);
        if (write(pfd[1], &rr, sizeof(rr)) != (ssize_t)sizeof(rr))
            _exit(2);
        _exit(0);
    }
    c = s < 0 ? -1 : fork();
    if (c == 0) {
        close(pfd[0]);
        close(pfd[1]);
        pin_cpu(1);
        _exit(run_client(j));
    }
    close(pfd[1]);
    if (s < 0 || c < 0) {
        fail(r, "fork: %s", strerror(errno));
    } else {
        pf.fd = pfd[0];
        pf.events = POLLIN;
        if (poll(&pf, 1, (int)(limit * 1000)) <= 0) {
            fail(r, "no result after %.0f s: stopped", limit);
        } else {
            size_t got = 0;
            while (got < sizeof(*r)) {
                k = read(pfd[0], (char *)r + got, sizeof(*r) - got);
                if (k < 0 && errno == EINTR)
                    continue;
                if (k <= 0)
                    break;
                got += (size_t)k;
            }
            if (got != sizeof(*r))
                fail(r, "the measuring process died");
        }
    }
    close(pfd[0]);
    /* The client has done its part once the server has reported. */
    if (c > 0) {
        kill(c, SIGKILL);
        waitpid(c, &status, 0);
    }
    if (s > 0) {
        if (!r->ok)
            kill(s, SIGKILL);
        waitpid(s, &status, 0);
    }
    if (j->kind == K_RAWFIFO) {
        unlink(c2s);
        unlink(s2c);
    } else if (j->kind == K_RAW || j->kind == K_RAWPOLL) {
        unlink(j->addr);
    } else if (j->kind == K_NNG || j->kind == K_ZMQ) {
        unlink(j->addr + 6);
    }
}
#else /* _WIN32 */

/* "<self> --peer KIND CASE SIZE WARM COUNT ADDR": the client side. */
static int peer_main(int argc, char **argv)
{
    job j;
    if (argc < 8)
        return 2;
    memset(&j, 0, sizeof(j));
    j.kind = atoi(argv[2]);
    j.bcase = atoi(argv[3]);
    j.size = (size_t)strtoul(argv[4], NULL, 10);
    j.warm = atol(argv[5]);
    j.count = atol(argv[6]);
    snprintf(j.addr, sizeof(j.addr), "%s", argv[7]);
    return run_client(&j);
}

static void run_job(job *j, result *r)
{
    char self[MAX_PATH], cmd[MAX_PATH + 300];
    STARTUPINFOA si;
    PROCESS_INFORMATION pi;

    memset(r, 0, sizeof(*r));
    make_addr(j);
    if (GetModuleFileNameA(NULL, self, sizeof(self)) == 0) {
        fail(r, "GetModuleFileName: %lu", (unsigned long)GetLastError());
        return;
    }
    snprintf(cmd, sizeof(cmd), "\"%s\" --peer %d %d %lu %ld %ld %s", self,
             j->kind, j->bcase, (unsigned long)j->size, j->warm, j->count,
             j->addr);
    memset(&si, 0, sizeof(si));
    si.cb = sizeof(si);
    fflush(stdout);
    fflush(stderr);
    if (!CreateProcessA(NULL, cmd, NULL, NULL, FALSE, 0, NULL, NULL, &si,
                        &pi)) {
        fail(r, "CreateProcess: %lu", (unsigned long)GetLastError());
        return;
    }
    run_server(j, r);
    /* The server has closed its pipe: the client sees the end and exits. */
    if (WaitForSingleObject(pi.hProcess, 10000) != WAIT_OBJECT_0) {
        TerminateProcess(pi.hProcess, 1);
        WaitForSingleObject(pi.hProcess, INFINITE);
    }
    CloseHandle(pi.hThread);
    CloseHandle(pi.hProcess);
}
#endif

/* ---- Measurements, one after another
 * --------------------------------------------- */

typedef struct meas {
    int kind, bcase;
    size_t size;
    int rep;
    result r;
} meas;

/* --reps=N: runs of each ping-pong and stream case, the transports
 * interleaved (msgpipe, raw, msgpipe, raw, ...), so that a machine that is
 * busier for a while slows them alike.  Reported: medians, with the
 * spread (min-max); ratios are of medians. */
#define MAX_REPS 31
static int g_reps = -1; /* -1: default (5; 3 with --quick; 1 with --count) */

static meas results[K_COUNT * 2 * MAX_SIZES * MAX_REPS];
static int n_results;

enum metric { M_P50, M_P99, M_P999, M_MSGS, M_MIB, M_COUNT };

typedef struct spread {
    int n; /* runs that worked */
    double med, lo, hi;
} spread;

static double metric_of(const result *r, int m)
{
    switch (m) {
    case M_P50:
        return r->p50_us;
    case M_P99:
        return r->p99_us;
    case M_P999:
        return r->p999_us;
    case M_MSGS:
        return r->msgs_per_s;
    default:
        return r->mib_per_s;
    }
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Sort v[0..n) (n > 0) and give its median, minimum and maximum. */
static void med_range(double *v, int n, double *med, double *lo, double *hi)
{
    qsort(v, (size_t)n, sizeof(v[0]), cmp_dbl);
    *med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
    *lo = v[0];
    *hi = v[n - 1];
}

/* Median and spread of metric m over the runs of one case that worked. */
static spread agg(int kind, int bcase, size_t size, int m)
{
    double v[MAX_REPS];
    spread st;
    int i, k = 0;

    memset(&st, 0, sizeof(st));
    for (i = 0; i < n_results && k < MAX_REPS; i++)
        if (results[i].kind == kind && results[i].bcase == bcase &&
            results[i].size == size && results[i].r.ok)
            v[k++] = metric_of(&results[i].r, m);
    if (k == 0)
        return st;
    st.n = k;
    med_range(v, k, &st.med, &st.lo, &st.hi);
    return st;
}

static void fmt_size(char *b, size_t cap, size_t s)
{
    if (s >= 1048576 && s % 1048576 == 0)
        snprintf(b, cap, "%lu MiB", (unsigned long)(s / 1048576));
    else if (s >= 1024 && s % 1024 == 0)
        snprintf(b, cap, "%lu KiB", (unsigned long)(s / 1024));
    else
        snprintf(b, cap, "%lu B", (unsigned long)s);
}

static void measure_pingpong(int kind, size_t size, int rep)
{
    meas *m = &results[n_results++];
    job j;
    char sz[32];

    memset(&j, 0, sizeof(j));
    j.kind = kind;
    j.bcase = C_PINGPONG;
    j.size = size;
    j.seconds = cfg.pp_seconds;
    j.warm_seconds = cfg.pp_warm;
    if (cfg.count > 0) {
        j.count = cfg.count;
        j.warm_seconds = 0;
    }
    fmt_size(sz, sizeof(sz), size);
    fprintf(stderr, "  pingpong %-7s %-13s %2d/%-2d ", sz, kind_label(kind),
            rep + 1, g_reps);
    fflush(stderr);
    run_job(&j, &m->r);
    m->kind = kind;
    m->bcase = C_PINGPONG;
    m->size = size;
    m->rep = rep;
    if (m->r.ok)
        fprintf(stderr, "p50 %9.2f us  p99 %9.2f us  p99.9 %9.2f us  (%ld)\n",
                m->r.p50_us, m->r.p99_us, m->r.p999_us, m->r.samples);
    else
        fprintf(stderr, "FAILED: %s\n", m->r.err);
}

/* The message count of each stream case, from the pilot of its first run
 * (later runs use it as it is). */
static long st_count[K_COUNT][MAX_SIZES];

static void measure_stream(int kind, int si, int rep)
{
    meas *m = &results[n_results++];
    size_t size = st_sizes[si];
    job j;
    char sz[32];
    double rate;
    long pilot;

    memset(&j, 0, sizeof(j));
    j.kind = kind;
    j.bcase = C_STREAM;
    j.size = size;
    fmt_size(sz, sizeof(sz), size);
    fprintf(stderr, "  stream   %-7s %-13s %2d/%-2d ", sz, kind_label(kind),
            rep + 1, g_reps);
    fflush(stderr);
    /* Pilot: about 16 MiB (at least 16, at most 50,000 messages) to learn
     * the rate, then a count that lasts about st_seconds. */
    pilot = (long)((16u << 20) / size);
    if (pilot < 16)
        pilot = 16;
    if (pilot > 50000)
        pilot = 50000;
    if (cfg.quick && pilot > 10000)
        pilot = 10000;
    j.count = pilot;
    j.warm = pilot / 10;
    if (cfg.count > 0) {
        /* --count: exactly that many, no pilot, no warm-up. */
        j.count = cfg.count;
        j.warm = 0;
        run_job(&j, &m->r);
    } else if (st_count[kind][si] > 0) {
        j.count = st_count[kind][si];
        j.warm = j.count / 10;
        run_job(&j, &m->r);
    } else {
        run_job(&j, &m->r);
        if (m->r.ok) {
            rate = m->r.msgs_per_s;
            j.count = (long)(rate * cfg.st_seconds);
            if (j.count < pilot)
                j.count = pilot;
            if (j.count > 100000000L)
                j.count = 100000000L;
            j.warm = j.count / 10;
            st_count[kind][si] = j.count;
            run_job(&j, &m->r);
        }
    }
    m->kind = kind;
    m->bcase = C_STREAM;
    m->size = size;
    m->rep = rep;
    if (m->r.ok)
        fprintf(stderr, "%12.0f msgs/s  %10.1f MiB/s  (%ld in %.2f s)\n",
                m->r.msgs_per_s, m->r.mib_per_s, m->r.samples, m->r.seconds);
    else
        fprintf(stderr, "FAILED: %s\n", m->r.err);
}

/* ---- Output
 * ------------------------------------------------------------------------ */

static const char *ratio(char *b, size_t cap, double v, double base)
{
    if (base <= 0 || v <= 0)
        snprintf(b, cap, "%s", "-");
    else
        snprintf(b, cap, "%.2fx", v / base);
    return b;
}

static void print_table(void)
{
    int i, k;
    char sz[32], r1[32], r2[32], r3[32], r4[32], sp[48];
    int have_rawfifo = 0;

    for (i = 0; i < n_results; i++)
        if (results[i].kind == K_RAWFIFO && results[i].r.ok)
            have_rawfifo = 1;

    if (cfg.cases[C_PINGPONG]) {
        printf("\nPing-pong latency: one message in flight, full round trip "
               "(microseconds), medians of %d runs [min-max of p50]\n",
               g_reps);
        printf("%-8s %-14s %9s %-21s %9s %9s  %9s %9s %9s%s\n", "size",
               "transport", "p50", " [min-max]", "p99", "p99.9", "p50/raw",
               "p99/raw", "p99.9/raw", have_rawfifo ? "  p50/rawfifo" : "");
        for (i = 0; i < n_pp_sizes; i++) {
            spread raw[3], rf = agg(K_RAWFIFO, C_PINGPONG, pp_sizes[i], M_P50);
            int q;
            for (q = 0; q < 3; q++)
                raw[q] = agg(K_RAW, C_PINGPONG, pp_sizes[i], M_P50 + q);
            fmt_size(sz, sizeof(sz), pp_sizes[i]);
            for (k = 0; k < K_COUNT; k++) {
                spread m[3];
                if (!cfg.kinds[k])
                    continue;
                for (q = 0; q < 3; q++)
                    m[q] = agg(k, C_PINGPONG, pp_sizes[i], M_P50 + q);
                if (m[0].n == 0) {
                    printf("%-8s %-14s %9s\n", sz, kind_label(k), "failed");
                    continue;
                }
                snprintf(sp, sizeof(sp), "[%.2f-%.2f]", m[0].lo, m[0].hi);
                printf("%-8s %-14s %9.2f %-21s %9.2f %9.2f  %9s %9s %9s", sz,
                       kind_label(k), m[0].med, sp, m[1].med, m[2].med,
                       ratio(r1, sizeof(r1), m[0].med, raw[0].med),
                       ratio(r2, sizeof(r2), m[1].med, raw[1].med),
                       ratio(r3, sizeof(r3), m[2].med, raw[2].med));
                if (have_rawfifo)
                    printf("  %12s",
                           ratio(r4, sizeof(r4), m[0].med, rf.n ? rf.med : 0));
                printf("\n");
            }
        }
    }
    if (cfg.cases[C_STREAM]) {
        printf("\nStreaming throughput: one way, back to back, medians of %d "
               "runs [min-max]\n",
               g_reps);
        printf("%-8s %-14s %12s %-23s %10s  %9s%s\n", "size", "transport",
               "msgs/s", " [min-max]", "MiB/s", "x raw",
               have_rawfifo ? "  x rawfifo" : "");
        for (i = 0; i < n_st_sizes; i++) {
            spread raw = agg(K_RAW, C_STREAM, st_sizes[i], M_MSGS);
            spread rf = agg(K_RAWFIFO, C_STREAM, st_sizes[i], M_MSGS);
            fmt_size(sz, sizeof(sz), st_sizes[i]);
            for (k = 0; k < K_COUNT; k++) {
                spread m, mib;
                if (!cfg.kinds[k])
                    continue;
                m = agg(k, C_STREAM, st_sizes[i], M_MSGS);
                mib = agg(k, C_STREAM, st_sizes[i], M_MIB);
                if (m.n == 0) {
                    printf("%-8s %-14s %12s\n", sz, kind_label(k), "failed");
                    continue;
                }
                snprintf(sp, sizeof(sp), "[%.0f-%.0f]", m.lo, m.hi);
                printf("%-8s %-14s %12.0f %-23s %10.1f  %9s", sz, kind_label(k),
                       m.med, sp, mib.med,
                       ratio(r1, sizeof(r1), m.med, raw.n ? raw.med : 0));
                if (have_rawfifo)
                    printf("  %10s",
                           ratio(r4, sizeof(r4), m.med, rf.n ? rf.med : 0));
                printf("\n");
            }
        }
    }
    printf("\nRatios are of medians, transport/raw in the same run: below "
           "1.00x is faster than raw for latency, slower than raw for "
           "throughput.\n");
}

/* One CSV line per metric with the median, then its _min and _max. */
static void csv_metric(FILE *f, const char *t, const char *c, size_t size,
                       const char *name, const char *fmt, spread st)
{
    unsigned long s = (unsigned long)size;
    char line[160];

    snprintf(line, sizeof(line), "%%s,%%s,%%lu,%%s,%s\n", fmt);
    fprintf(f, line, t, c, s, name, st.med);
    snprintf(line, sizeof(line), "%%s,%%s,%%lu,%%s_min,%s\n", fmt);
    fprintf(f, line, t, c, s, name, st.lo);
    snprintf(line, sizeof(line), "%%s,%%s,%%lu,%%s_max,%s\n", fmt);
    fprintf(f, line, t, c, s, name, st.hi);
}

static void print_csv(FILE *f)
{
    int i, k;
    fprintf(f, "transport,case,size,metric,value\n");
    for (i = 0; i < n_pp_sizes && cfg.cases[C_PINGPONG]; i++) {
        for (k = 0; k < K_COUNT; k++) {
            size_t s = pp_sizes[i];
            if (!cfg.kinds[k] || agg(k, C_PINGPONG, s, M_P50).n == 0)
                continue;
            csv_metric(f, kind_label(k), "pingpong", s, "p50_us", "%.3f",
                       agg(k, C_PINGPONG, s, M_P50));
            csv_metric(f, kind_label(k), "pingpong", s, "p99_us", "%.3f",
                       agg(k, C_PINGPONG, s, M_P99));
            csv_metric(f, kind_label(k), "pingpong", s, "p999_us", "%.3f",
                       agg(k, C_PINGPONG, s, M_P999));
        }
    }
    for (i = 0; i < n_st_sizes && cfg.cases[C_STREAM]; i++) {
        for (k = 0; k < K_COUNT; k++) {
            size_t s = st_sizes[i];
            if (!cfg.kinds[k] || agg(k, C_STREAM, s, M_MSGS).n == 0)
                continue;
            csv_metric(f, kind_label(k), "stream", s, "msgs_per_s", "%.1f",
                       agg(k, C_STREAM, s, M_MSGS));
            csv_metric(f, kind_label(k), "stream", s, "mib_per_s", "%.2f",
                       agg(k, C_STREAM, s, M_MIB));
        }
    }
}

/* ---- Idle clients: one polling server, N idle, one active ---------------
 *
 * --cases=idle (POSIX; not in the default cases).  A server process holds
 * N idle clients (--idle=0,1000,10000) plus one active client that does
 * ping-pong of 16-byte messages: p50/p99 round trip, and the server's CPU
 * time per message (CLOCK_PROCESS_CPUTIME_ID of the server process,
 * between a start and an end marker message).  Two servers:
 *
 *   msgpipe  msgpipe_poller_wait over the server and every pipe, clients
 *            msgpipe_connect()ed, msgpipe_send/msgpipe_recv;
 *   raw      a plain epoll loop (Linux) over raw AF_UNIX stream sockets,
 *            16 bytes read and written back, no framing: the limit.
 *
 * The active client is the measuring instrument, the same for both: it
 * blocks without a timeout (msgpipe_send/msgpipe_recv with
 * MSGPIPE_INFINITE, as the raw client's plain blocking write and read), so
 * that the difference is the server's.  (A receive with a finite timeout
 * costs a poll() before its read: about 1 us more per round trip here.)
 *
 * Each configuration runs --idle-reps times (default 5), msgpipe and raw
 * interleaved; the table gives medians with the spread (min-max). */

#ifndef _WIN32
#if defined(__linux__)
#include <sys/epoll.h>
#define IDLE_RAW 1
#else
#define IDLE_RAW 0
#endif
#include <sys/resource.h>

#define IDLE_MAX_N 8
#define IDLE_MAX_REPS 31
static long idle_ns[IDLE_MAX_N] = {0, 1000, 10000};
static int n_idle_ns = 3;
static int idle_reps = 5;

typedef struct {
    double p50_us, p99_us, cpu_us_per_msg;
    int ok;
} idle_run;

static idle_run idle_res[IDLE_MAX_N][2][IDLE_MAX_REPS];

static uint64_t cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* What the server reports on its report pipe at the end marker. */
typedef struct {
    uint64_t cpu_ns;
    uint64_t msgs;
} idle_report;

/* Start/end markers in the first byte; 'P' for a measured message. */
static void idle_mark(unsigned char *m, uint64_t *cpu0, uint64_t *cnt,
                      int report_fd)
{
    if (m[0] == 'S') {
        *cpu0 = cpu_ns();
        *cnt = 0;
    } else if (m[0] == 'E') {
        idle_report r;
        r.cpu_ns = cpu_ns() - *cpu0;
        r.msgs = *cnt;
        if (write(report_fd, &r, sizeof(r)) != (ssize_t)sizeof(r))
            _exit(3);
    } else {
        (*cnt)++;
    }
}

static msgpipe_server *idle_srv;

static void idle_on_term(int sig)
{
    (void)sig;
    msgpipe_server_shutdown(idle_srv);
}

static int idle_serve_msgpipe(const char *name, int ready_fd, int report_fd)
{
    msgpipe_poller *pl;
    msgpipe_event ev[64];
    uint64_t cpu0 = 0, cnt = 0;
    int running = 1;

    if (msgpipe_listen(name, NULL, &idle_srv) != MSGPIPE_OK ||
        msgpipe_poller_new(&pl) != MSGPIPE_OK ||
        msgpipe_poller_add(pl, NULL, idle_srv, MSGPIPE_POLLIN, NULL) !=
            MSGPIPE_OK)
        return 1;
    signal(SIGTERM, idle_on_term);
    if (write(ready_fd, "r", 1) != 1)
        return 1;
    while (running) {
        int n = msgpipe_poller_wait(pl, ev, 64, MSGPIPE_INFINITE), i, rc;
        if (n < 0)
            return 1;
        for (i = 0; i < n; i++) {
            if (ev[i].server != NULL) {
                msgpipe *p;
                while ((rc = msgpipe_accept(idle_srv, 0, &p)) == MSGPIPE_OK)
                    if (msgpipe_poller_add(pl, p, NULL, MSGPIPE_POLLIN, NULL) !=
                        MSGPIPE_OK)
                        return 1;
                if (rc == MSGPIPE_ESHUTDOWN)
                    running = 0;
                continue;
            }
            for (;;) {
                unsigned char m[64];
                size_t len = 0;
                rc = msgpipe_recv(ev[i].pipe, m, sizeof(m), &len, 0);
                if (rc == MSGPIPE_ETIMEDOUT)
                    break;
                if (rc != MSGPIPE_OK) {
                    msgpipe_close(ev[i].pipe);
                    break;
                }
                idle_mark(m, &cpu0, &cnt, report_fd);
                if (msgpipe_send(ev[i].pipe, m, len, 5000) != MSGPIPE_OK) {
                    msgpipe_close(ev[i].pipe);
                    break;
                }
            }
        }
    }
    msgpipe_poller_close(pl);
    msgpipe_server_close(idle_srv);
    return 0;
}

#if IDLE_RAW
static int idle_serve_raw(const char *path, int ready_fd, int report_fd)
{
    struct sockaddr_un sa;
    struct epoll_event e, evs[64];
    uint64_t cpu0 = 0, cnt = 0;
    int lfd, ep;

    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
        listen(lfd, 4096) != 0)
        return 1;
    ep = epoll_create1(EPOLL_CLOEXEC);
    e.events = EPOLLIN;
    e.data.fd = lfd;
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &e) != 0)
        return 1;
    if (write(ready_fd, "r", 1) != 1)
        return 1;
    for (;;) { /* until SIGTERM */
        int n = epoll_wait(ep, evs, 64, -1), i;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return 1;
        for (i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            unsigned char m[16];
            ssize_t r;
            if (fd == lfd) {
                int c;
                while ((c = accept4(lfd, NULL, NULL,
                                    SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0) {
                    e.events = EPOLLIN;
                    e.data.fd = c;
                    if (epoll_ctl(ep, EPOLL_CTL_ADD, c, &e) != 0)
                        return 1;
                }
                continue;
            }
            r = read(fd, m, sizeof(m));
            if (r == 0 || (r < 0 && errno != EAGAIN)) {
                close(fd);
                continue;
            }
            if (r < 0)
                continue;
            while (r < (ssize_t)sizeof(m)) { /* rare: the rest is coming */
                ssize_t k = read(fd, m + r, sizeof(m) - (size_t)r);
                if (k == 0)
                    break;
                if (k > 0)
                    r += k;
            }
            idle_mark(m, &cpu0, &cnt, report_fd);
            if (write_all(fd, m, sizeof(m)) != 0)
                close(fd);
        }
    }
}

static int idle_raw_connect(const char *path)
{
    struct sockaddr_un sa;
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

    memset(&sa, 0, sizeof(sa));
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}
#endif

/* Descriptors one side needs for n clients: one per socket pipe, two per
 * FIFO pipe (and the FIFO server's own), plus some. */
static long idle_fds_needed(long n)
{
    int fifo = strcmp(msgpipe_backend(), "posix-fifo") == 0;
    return (fifo ? 2 : 1) * (n + 1) + 64;
}

static int idle_raise_limit(long want)
{
    struct rlimit rl;

    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 0;
    if (rl.rlim_cur == RLIM_INFINITY || rl.rlim_cur >= (rlim_t)want)
        return 1;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < (rlim_t)want) {
        fprintf(stderr,
                "msgpipe_bench: idle: needs %ld descriptors, RLIMIT_NOFILE "
                "hard limit is %ld: cannot raise it\n",
                want, (long)rl.rlim_max);
        return 0;
    }
    rl.rlim_cur = (rlim_t)want;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) {
        fprintf(stderr,
                "msgpipe_bench: idle: cannot raise RLIMIT_NOFILE to "
                "%ld: %s\n",
                want, strerror(errno));
        return 0;
    }
    return 1;
}

/* One run: a server process with kind's loop, n idle clients and one
 * active one here. */
static idle_run idle_one(int raw, long n)
{
    idle_run out;
    char name[64], path[96];
    int ready[2], rep[2], i;
    long warm = cfg.quick ? 500 : 2000, rounds = cfg.quick ? 3000 : 20000;
    uint64_t *rtt = (uint64_t *)malloc((size_t)rounds * sizeof(*rtt));
    msgpipe **cl = NULL, *act = NULL;
    int *rcl = NULL, ract = -1;
    pid_t pid;
    char c;
    idle_report r;

    memset(&out, 0, sizeof(out));
    snprintf(name, sizeof(name), "mpb-idle-%ld-%lu", my_pid(), ++job_serial);
    snprintf(path, sizeof(path), "/tmp/%s.sock", name);
    if (rtt == NULL || pipe(ready) != 0 || pipe(rep) != 0)
        return out;
    pid = fork();
    if (pid == 0) {
        close(ready[0]);
        close(rep[0]);
#if IDLE_RAW
        if (raw)
            _exit(idle_serve_raw(path, ready[1], rep[1]));
#endif
        _exit(idle_serve_msgpipe(name, ready[1], rep[1]));
    }
    close(ready[1]);
    close(rep[1]);
    if (pid < 0 || read(ready[0], &c, 1) != 1) {
        fprintf(stderr, "msgpipe_bench: idle: the server did not start\n");
        goto done;
    }
    if (raw)
        rcl = (int *)calloc((size_t)n + 1, sizeof(*rcl));
    else
        cl = (msgpipe **)calloc((size_t)n + 1, sizeof(*cl));
    if ((raw && rcl == NULL) || (!raw && cl == NULL))
        goto done;
    for (i = 0; i < n; i++) {
#if IDLE_RAW
        if (raw) {
            if ((rcl[i] = idle_raw_connect(path)) < 0)
                goto connfail;
            continue;
        }
#endif
        if (msgpipe_connect(name, NULL, 10000, &cl[i]) != MSGPIPE_OK)
            goto connfail;
    }
#if IDLE_RAW
    if (raw && (ract = idle_raw_connect(path)) < 0)
        goto connfail;
#endif
    if (!raw && msgpipe_connect(name, NULL, 10000, &act) != MSGPIPE_OK)
        goto connfail;
    {
        unsigned char m[16], b[64];
        long k, total = warm + rounds + 2;
        memset(m, 'P', sizeof(m));
        for (k = 0; k < total; k++) {
            uint64_t t0;
            size_t len = 0;
            m[0] = k == warm ? 'S' : (k == total - 1 ? 'E' : 'P');
            t0 = now_ns();
            if (raw) {
                if (write_all(ract, m, 16) != 0 ||
                    read_exact(ract, b, 16, 0) != 0)
                    goto connfail;
            } else if (msgpipe_send(act, m, 16, MSGPIPE_INFINITE) !=
                           MSGPIPE_OK ||
                       msgpipe_recv(act, b, sizeof(b), &len,
                                    MSGPIPE_INFINITE) != MSGPIPE_OK ||
                       len != 16) {
                goto connfail;
            }
            if (k > warm && k < total - 1)
                rtt[k - warm - 1] = now_ns() - t0;
        }
    }
    if (read(rep[0], &r, sizeof(r)) != (ssize_t)sizeof(r) || r.msgs == 0)
        goto done;
    qsort(rtt, (size_t)rounds, sizeof(*rtt), cmp_u64);
    out.p50_us = pct_us(rtt, rounds, 0.50);
    out.p99_us = pct_us(rtt, rounds, 0.99);
    out.cpu_us_per_msg = (double)r.cpu_ns / 1000.0 / (double)r.msgs;
    out.ok = 1;
    goto done;
connfail:
    fprintf(stderr,
            "msgpipe_bench: idle: %s with %ld idle clients: a client "
            "failed (connect or ping-pong)\n",
            raw ? "raw" : "msgpipe", n);
done:
    if (pid > 0) {
        int st;
        kill(pid, SIGTERM);
        waitpid(pid, &st, 0);
    }
    if (raw) {
        unlink(path);
        if (ract >= 0)
            close(ract);
        for (i = 0; rcl != NULL && i < n; i++)
            if (rcl[i] > 0)
                close(rcl[i]);
    } else {
        msgpipe_close(act);
        for (i = 0; cl != NULL && i < n; i++)
            msgpipe_close(cl[i]);
    }
    free(rcl);
    free(cl);
    free(rtt);
    close(ready[0]);
    close(rep[0]);
    return out;
}

/* Median, min and max of field f of the runs that worked. */
static int idle_stat(int ni, int raw, int f, double *med, double *lo,
                     double *hi)
{
    double v[IDLE_MAX_REPS];
    int k, m = 0;

    for (k = 0; k < idle_reps; k++) {
        const idle_run *x = &idle_res[ni][raw][k];
        if (!x->ok)
            continue;
        v[m++] = f == 0 ? x->p50_us : f == 1 ? x->p99_us : x->cpu_us_per_msg;
    }
    if (m > 0)
        med_range(v, m, med, lo, hi);
    return m;
}

static int measure_idle(void)
{
    int ni, k, raw, failed = 0, can[IDLE_MAX_N];
    double base = 0;

    for (ni = 0; ni < n_idle_ns; ni++)
        can[ni] = idle_raise_limit(idle_fds_needed(idle_ns[ni]));
    for (k = 0; k < idle_reps; k++) {
        for (ni = 0; ni < n_idle_ns; ni++) {
            if (!can[ni])
                continue;
            for (raw = 0; raw <= IDLE_RAW; raw++) {
                fprintf(stderr, "msgpipe_bench: idle: %s, %ld idle, run %d\n",
                        raw ? "raw epoll" : kind_label(K_MSGPIPE), idle_ns[ni],
                        k + 1);
                idle_res[ni][raw][k] = idle_one(raw, idle_ns[ni]);
                if (!idle_res[ni][raw][k].ok)
                    failed = 1;
            }
        }
    }
    printf("\nidle clients: one polling server, 16-byte ping-pong, medians of "
           "%d runs [min-max]\n",
           idle_reps);
    printf("%-14s %7s %24s %24s %22s %9s %9s\n", "server", "idle", "p50 us",
           "p99 us", "server CPU us/msg", "p50/0idle", "p50/raw");
    for (ni = 0; ni < n_idle_ns; ni++) {
        for (raw = 0; raw <= IDLE_RAW; raw++) {
            double med[3], lo[3], hi[3], rawp50 = 0, rlo, rhi;
            int f, m = 0;
            char r0[16] = "-", rr[16] = "-";
            if (!can[ni]) {
                printf("%-14s %7ld   (not run: descriptor limit)\n",
                       raw ? "raw epoll" : kind_label(K_MSGPIPE), idle_ns[ni]);
                continue;
            }
            for (f = 0; f < 3; f++)
                m = idle_stat(ni, raw, f, &med[f], &lo[f], &hi[f]);
            if (m == 0) {
                printf("%-14s %7ld   (failed)\n",
                       raw ? "raw epoll" : kind_label(K_MSGPIPE), idle_ns[ni]);
                continue;
            }
            if (ni == 0 && !raw)
                base = med[0];
            if (!raw && base > 0)
                snprintf(r0, sizeof(r0), "%.2fx", med[0] / base);
            if (!raw && IDLE_RAW && idle_stat(ni, 1, 0, &rawp50, &rlo, &rhi))
                snprintf(rr, sizeof(rr), "%.2fx", med[0] / rawp50);
            printf("%-14s %7ld %8.1f [%6.1f-%6.1f] %8.1f [%6.1f-%6.1f] "
                   "%6.2f [%5.2f-%5.2f] %9s %9s\n",
                   raw ? "raw epoll" : kind_label(K_MSGPIPE), idle_ns[ni],
                   med[0], lo[0], hi[0], med[1], lo[1], hi[1], med[2], lo[2],
                   hi[2], r0, rr);
            if (cfg.csv)
                printf("csv,%s,idle,%ld,p50_us,%.2f\ncsv,%s,idle,%ld,p99_us,"
                       "%.2f\ncsv,%s,idle,%ld,cpu_us_per_msg,%.3f\n",
                       raw ? "rawepoll" : kind_label(K_MSGPIPE), idle_ns[ni],
                       med[0], raw ? "rawepoll" : kind_label(K_MSGPIPE),
                       idle_ns[ni], med[1],
                       raw ? "rawepoll" : kind_label(K_MSGPIPE), idle_ns[ni],
                       med[2]);
        }
    }
    return failed;
}
#endif /* !_WIN32 */

/* ---- Spinning: msgpipe_options.spin_us (--cases=spin) ------------------
 *
 * --cases=spin (POSIX; not in the default cases).  16-byte ping-pong
 * between two processes, pinned to CPUs 0 and 1 ("2 CPUs") or both to CPU
 * 0 ("1 CPU"), four ways:
 *
 *   msgpipe       msgpipe_send/msgpipe_recv with MSGPIPE_INFINITE, no spin;
 *   msgpipe-spin  the same with spin_us = --spin-us (default 50) on both
 *                 ends;
 *   raw           blocking read()/write() on an AF_UNIX stream socket;
 *   rawspin       the same socket, but each read a loop of
 *                 recv(MSG_DONTWAIT) until the 16 bytes are there: a spin
 *                 with no limit and no yield - the floor of a spin on two
 *                 CPUs, and on one CPU what spinning without back-off does.
 *
 * Reported: p50 and p99 of the round trip, and each side's CPU time
 * (CLOCK_PROCESS_CPUTIME_ID, user + system) per round trip over the
 * measured part, between two marker messages: the measuring side's
 * ("sender") and the echoing side's ("echo").  Every configuration runs
 * --reps times (default 5, --quick 3), all eight interleaved; medians with
 * min-max.  Ratios: p50 / the p50 of raw on the same CPUs. */

#ifndef _WIN32
#define SPIN_SIZE 16
enum { SV_MSGPIPE, SV_SPIN, SV_RAW, SV_RAWSPIN, SV_COUNT };
/* The label of a way: msgpipe's says which transport it is built with
 * ("msgpipe-fifo", "msgpipe-fifo-spin" in the FIFO build). */
static const char *sv_name(int sv)
{
    static char spin[48];

    switch (sv) {
    case SV_MSGPIPE:
        return kind_label(K_MSGPIPE);
    case SV_SPIN:
        snprintf(spin, sizeof(spin), "%s-spin", kind_label(K_MSGPIPE));
        return spin;
    case SV_RAW:
        return "raw";
    default:
        return "rawspin";
    }
}
static int64_t spin_us_opt = 50;

typedef struct {
    int ok;
    char err[120];
    long n;
    double p50_us, p99_us, cpu_snd_us, cpu_echo_us; /* CPU: per round trip */
} spin_run;

static spin_run spin_res[2][SV_COUNT][MAX_REPS];

/* Put this process on CPU `cpu` (Linux); 0 if it could not be. */
static int spin_pin(int cpu)
{
#if defined(__linux__) && defined(CPU_SET)
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    return sched_setaffinity(0, sizeof(set), &set) == 0;
#else
    (void)cpu;
    return 0;
#endif
}

/* One 16-byte message; rawspin spins on recv(MSG_DONTWAIT). */
static int spin_recv(peer *p, int sv, unsigned char *b)
{
    size_t n = 0, got = 0;
    ssize_t k;

    if (sv != SV_RAWSPIN)
        return peer_recv(p, b, SPIN_SIZE, SPIN_SIZE, &n) == 0 && n == SPIN_SIZE
                   ? 0
                   : -1;
    while (got < SPIN_SIZE) {
        k = recv(p->fd, b + got, SPIN_SIZE - got, MSG_DONTWAIT);
        if (k > 0)
            got += (size_t)k;
        else if (k == 0 ||
                 (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            return perr(p, "recv: %s", k == 0 ? "EOF" : strerror(errno));
    }
    return 0;
}

/* A marker round trip: the echo puts its CPU time into bytes 8..15. */
static int spin_mark(peer *p, int sv, uint64_t *echo_cpu)
{
    unsigned char b[SPIN_SIZE];

    memset(b, 0, sizeof(b));
    b[0] = 'C';
    if (peer_send(p, b, SPIN_SIZE) != 0 || spin_recv(p, sv, b) != 0)
        return -1;
    memcpy(echo_cpu, b + 8, 8);
    return 0;
}

/* The measuring side (the server of the pair). */
static void spin_sender(int sv, const char *addr, spin_run *r)
{
    long cap = 2000000, ns = 0;
    uint64_t *s = (uint64_t *)malloc((size_t)cap * sizeof(*s));
    uint64_t t0, t1, end, c0, c1, e0 = 0, e1 = 0;
    unsigned char b[SPIN_SIZE];
    peer p;

    memset(r, 0, sizeof(*r));
    memset(b, 0, sizeof(b));
    if (s == NULL) {
        snprintf(r->err, sizeof(r->err), "out of memory");
        return;
    }
    memset(s, 0, (size_t)cap * sizeof(*s));
    if (peer_open(&p, sv <= SV_SPIN ? K_MSGPIPE : K_RAW, 1, addr) != 0) {
        snprintf(r->err, sizeof(r->err), "%s", p.err);
        free(s);
        return;
    }
    end = now_ns() + (uint64_t)(cfg.pp_warm * 1e9);
    do {
        b[0] = 'P';
        if (peer_send(&p, b, SPIN_SIZE) != 0 || spin_recv(&p, sv, b) != 0)
            goto failed;
    } while (now_ns() < end);
    if (spin_mark(&p, sv, &e0) != 0)
        goto failed;
    c0 = cpu_ns();
    t0 = now_ns();
    end = t0 + (uint64_t)(cfg.pp_seconds * 1e9);
    while (ns < cap) {
        b[0] = 'P';
        if (peer_send(&p, b, SPIN_SIZE) != 0 || spin_recv(&p, sv, b) != 0)
            goto failed;
        t1 = now_ns();
        s[ns++] = t1 - t0;
        t0 = t1;
        if (t1 >= end)
            break;
    }
    c1 = cpu_ns();
    if (spin_mark(&p, sv, &e1) != 0)
        goto failed;
    qsort(s, (size_t)ns, sizeof(*s), cmp_u64);
    r->ok = 1;
    r->n = ns;
    r->p50_us = pct_us(s, ns, 0.50);
    r->p99_us = pct_us(s, ns, 0.99);
    r->cpu_snd_us = (double)(c1 - c0) / 1000.0 / (double)ns;
    r->cpu_echo_us = (double)(e1 - e0) / 1000.0 / (double)ns;
    peer_close(&p);
    free(s);
    return;
failed:
    snprintf(r->err, sizeof(r->err), "%s", p.err);
    peer_close(&p);
    free(s);
}

/* The echoing side: each message back; a marker with its CPU time. */
static int spin_echo(int sv, const char *addr)
{
    unsigned char b[SPIN_SIZE];
    uint64_t c;
    peer p;

    if (peer_open(&p, sv <= SV_SPIN ? K_MSGPIPE : K_RAW, 0, addr) != 0)
        return 1;
    while (spin_recv(&p, sv, b) == 0) {
        if (b[0] == 'C') {
            c = cpu_ns();
            memcpy(b + 8, &c, 8);
        }
        if (peer_send(&p, b, SPIN_SIZE) != 0)
            break;
    }
    peer_close(&p);
    return 0;
}

/* One run: the sender on CPU 0, the echo on CPU 1 (two) or 0 (one). */
static spin_run spin_one(int sv, int one_cpu)
{
    double limit = 60.0 + cfg.pp_seconds + cfg.pp_warm;
    spin_run r;
    struct pollfd pf;
    pid_t s, c;
    int pfd[2], status;
    size_t got = 0;
    ssize_t k;
    job j;

    memset(&r, 0, sizeof(r));
    memset(&j, 0, sizeof(j));
    j.kind = sv <= SV_SPIN ? K_MSGPIPE : K_RAW;
    make_addr(&j);
    if (pipe(pfd) != 0) {
        snprintf(r.err, sizeof(r.err), "pipe: %s", strerror(errno));
        return r;
    }
    fflush(stdout);
    fflush(stderr);
    s = fork();
    if (s == 0) {
        close(pfd[0]);
        if (sv == SV_SPIN)
            g_mp_spin_us = spin_us_opt;
        if (!spin_pin(0)) {
            snprintf(r.err, sizeof(r.err), "sched_setaffinity failed");
        } else {
            spin_sender(sv, j.addr, &r);
        }
        if (write(pfd[1], &r, sizeof(r)) != (ssize_t)sizeof(r))
            _exit(2);
        _exit(0);
    }
    c = s < 0 ? -1 : fork();
    if (c == 0) {
        close(pfd[0]);
        close(pfd[1]);
        if (sv == SV_SPIN)
            g_mp_spin_us = spin_us_opt;
        spin_pin(one_cpu ? 0 : 1);
        _exit(spin_echo(sv, j.addr));
    }
    close(pfd[1]);
    if (s < 0 || c < 0) {
        snprintf(r.err, sizeof(r.err), "fork: %s", strerror(errno));
    } else {
        pf.fd = pfd[0];
        pf.events = POLLIN;
        if (poll(&pf, 1, (int)(limit * 1000)) <= 0) {
            snprintf(r.err, sizeof(r.err), "no result after %.0f s", limit);
        } else {
            while (got < sizeof(r)) {
                k = read(pfd[0], (char *)&r + got, sizeof(r) - got);
                if (k < 0 && errno == EINTR)
                    continue;
                if (k <= 0)
                    break;
                got += (size_t)k;
            }
            if (got != sizeof(r)) {
                r.ok = 0;
                snprintf(r.err, sizeof(r.err), "the measuring process died");
            }
        }
    }
    close(pfd[0]);
    if (c > 0) {
        kill(c, SIGKILL);
        waitpid(c, &status, 0);
    }
    if (s > 0) {
        if (!r.ok)
            kill(s, SIGKILL);
        waitpid(s, &status, 0);
    }
    if (j.kind == K_RAW)
        unlink(j.addr);
    return r;
}

/* Median, min and max of field f (0 p50, 1 p99, 2 sender CPU, 3 echo CPU)
 * of the runs that worked. */
static int spin_stat(int one, int sv, int f, double *med, double *lo,
                     double *hi)
{
    double v[MAX_REPS];
    int k, m = 0;

    for (k = 0; k < g_reps; k++) {
        const spin_run *x = &spin_res[one][sv][k];
        if (!x->ok)
            continue;
        v[m++] = f == 0   ? x->p50_us
                 : f == 1 ? x->p99_us
                 : f == 2 ? x->cpu_snd_us
                          : x->cpu_echo_us;
    }
    if (m > 0)
        med_range(v, m, med, lo, hi);
    return m;
}

static int measure_spin(void)
{
    static const char *const where[2] = {"2 CPUs", "1 CPU"};
    int one, sv, k, f, m, failed = 0, ones = sysconf(_SC_NPROCESSORS_ONLN) < 2;

    for (k = 0; k < g_reps; k++)
        for (one = ones; one < 2; one++)
            for (sv = 0; sv < SV_COUNT; sv++) {
                spin_run *x = &spin_res[one][sv][k];
                fprintf(stderr, "  spin     %-6s %-17s %2d/%-2d ", where[one],
                        sv_name(sv), k + 1, g_reps);
                *x = spin_one(sv, one);
                if (x->ok) {
                    fprintf(stderr,
                            "p50 %8.2f us  p99 %8.2f us  CPU/rt %6.2f + "
                            "%6.2f us  (%ld)\n",
                            x->p50_us, x->p99_us, x->cpu_snd_us, x->cpu_echo_us,
                            x->n);
                } else {
                    fprintf(stderr, "FAILED: %s\n", x->err);
                    failed = 1;
                }
            }
    printf("\nspin: 16-byte ping-pong, spin_us=%ld for msgpipe-spin, medians "
           "of %d runs [min-max]\n",
           (long)spin_us_opt, g_reps);
    printf("%-7s %-17s %24s %24s %20s %20s %8s\n", "CPUs", "transport",
           "p50 us", "p99 us", "sender CPU us/rt", "echo CPU us/rt", "p50/raw");
    for (one = ones; one < 2; one++)
        for (sv = 0; sv < SV_COUNT; sv++) {
            double med[4], lo[4], hi[4], rmed, rlo, rhi;
            char rr[16] = "-";
            for (f = 0, m = 0; f < 4; f++)
                m = spin_stat(one, sv, f, &med[f], &lo[f], &hi[f]);
            if (m == 0) {
                printf("%-7s %-17s   (failed)\n", where[one], sv_name(sv));
                continue;
            }
            if (spin_stat(one, SV_RAW, 0, &rmed, &rlo, &rhi) && rmed > 0)
                snprintf(rr, sizeof(rr), "%.2fx", med[0] / rmed);
            printf("%-7s %-17s %8.1f [%6.1f-%6.1f] %8.1f [%6.1f-%6.1f] "
                   "%6.2f [%5.2f-%5.2f] %6.2f [%5.2f-%5.2f] %8s\n",
                   where[one], sv_name(sv), med[0], lo[0], hi[0], med[1], lo[1],
                   hi[1], med[2], lo[2], hi[2], med[3], lo[3], hi[3], rr);
            if (cfg.csv)
                for (f = 0; f < 4; f++)
                    printf("csv,%s,spin-%dcpu,16,%s,%.3f\n", sv_name(sv),
                           one ? 1 : 2,
                           f == 0   ? "p50_us"
                           : f == 1 ? "p99_us"
                           : f == 2 ? "sender_cpu_us_per_rt"
                                    : "echo_cpu_us_per_rt",
                           med[f]);
        }
    return failed;
}
#endif /* !_WIN32 */

/* ---- Command line
 * ---------------------------------------------------------------- */

static void usage(FILE *f)
{
    int k;
    fprintf(f, "usage: msgpipe_bench [options]\n"
               "  --quick            every case briefly (the whole run well "
               "under 60 s)\n"
               "  --csv              print transport,case,size,metric,value "
               "lines instead of tables\n"
               "  --csv-file=PATH    also write those lines to PATH\n"
               "  --transports=LIST  comma-separated, from:");
    for (k = 0; k < K_COUNT; k++)
        if (kind_available(k))
            fprintf(f, " %s", kind_names[k]);
    fprintf(f,
            "\n"
            "                     (default: all built in but rawpoll; rawfifo "
            "only with the FIFO build)\n"
            "  --cases=LIST       pingpong,stream (default both), idle "
            "(POSIX:\n"
            "                     one polling server with N idle clients "
            "and one active)\n"
            "                     spin (POSIX: 16-byte ping-pong with "
            "spin_us, on 2 CPUs\n"
            "                     and on 1, against raw blocking and "
            "spinning sockets)\n"
            "  --spin-us=N        spin_us of --cases=spin (default 50)\n"
            "  --idle=LIST        idle clients for --cases=idle (default "
            "0,1000,10000)\n"
            "  --idle-reps=N      runs of each idle configuration, "
            "interleaved (default 5)\n"
            "  --pp-sizes=LIST    ping-pong sizes in bytes (default "
            "16,256,4096,65536)\n"
            "  --st-sizes=LIST    stream sizes in bytes (default "
            "64,4096,65536,1048576)\n"
            "  --time=SECONDS     measured time of each case (default 2 for "
            "ping-pong, 1 for stream;\n"
            "                     --quick: 0.25 and 0.2)\n"
            "  --batch=N          msgpipe streams with msgpipe_send_batch, N "
            "messages\n"
            "                     per call (POSIX; label msgpipe-batch)\n"
            "  --reps=N           runs of each ping-pong and stream case, "
            "the transports\n"
            "                     interleaved; medians and min-max "
            "(default 5, --quick 3,\n"
            "                     --count 1)\n"
            "  --count=N          exactly N round trips / N messages per "
            "case, no warm-up\n"
            "                     (for counting system calls; no pilot "
            "run)\n"
            "  --pin              put the two peers on CPUs 0 and 1 (Linux)\n"
            "  --list             print the transports built in and exit\n");
}

static int parse_sizes(const char *s, size_t *out, int *n)
{
    int k = 0;
    while (*s && k < MAX_SIZES) {
        char *end;
        unsigned long v = strtoul(s, &end, 10);
        if (end == s || v == 0 || v > (64ul << 20))
            return -1;
        out[k++] = (size_t)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',')
            return -1;
    }
    *n = k;
    return k > 0 ? 0 : -1;
}

static int has_word(const char *list, const char *w)
{
    size_t n = strlen(w);
    const char *p = list;
    while ((p = strstr(p, w)) != NULL) {
        if ((p == list || p[-1] == ',') && (p[n] == ',' || p[n] == 0))
            return 1;
        p += n;
    }
    return 0;
}

int main(int argc, char **argv)
{
    int i, k, rep;
    double t = -1;
    const char *tlist = NULL, *clist = NULL, *csv_file = NULL;

#ifdef _WIN32
    if (argc > 1 && strcmp(argv[1], "--peer") == 0)
        return peer_main(argc, argv);
#else
    signal(SIGPIPE, SIG_IGN);
#endif
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--quick") == 0)
            cfg.quick = 1;
        else if (strcmp(a, "--csv") == 0)
            cfg.csv = 1;
        else if (strncmp(a, "--csv-file=", 11) == 0)
            csv_file = a + 11;
        else if (strcmp(a, "--pin") == 0)
            cfg.pin = 1;
        else if (strncmp(a, "--transports=", 13) == 0)
            tlist = a + 13;
        else if (strncmp(a, "--cases=", 8) == 0)
            clist = a + 8;
        else if (strncmp(a, "--batch=", 8) == 0)
            g_batch = strtol(a + 8, NULL, 10) > 1 ? strtol(a + 8, NULL, 10) : 1;
#ifndef _WIN32
        else if (strncmp(a, "--idle=", 7) == 0) {
            size_t v[MAX_SIZES];
            int m = 0, q;
            if (strcmp(a + 7, "0") == 0) {
                v[0] = 0;
                m = 1;
            } else if (parse_sizes(a + 7, v, &m) != 0) {
                /* parse_sizes refuses 0: allow a leading "0," */
                if (strncmp(a + 7, "0,", 2) != 0 ||
                    parse_sizes(a + 9, v + 1, &m) != 0)
                    return usage(stderr), 2;
                v[0] = 0;
                m++;
            }
            for (q = 0; q < m && q < IDLE_MAX_N; q++)
                idle_ns[q] = (long)v[q];
            n_idle_ns = q;
        } else if (strncmp(a, "--spin-us=", 10) == 0) {
            spin_us_opt = atol(a + 10);
            if (spin_us_opt < 1 || spin_us_opt > 1000000)
                return usage(stderr), 2;
        } else if (strncmp(a, "--idle-reps=", 12) == 0) {
            idle_reps = atoi(a + 12);
            if (idle_reps < 1 || idle_reps > IDLE_MAX_REPS)
                return usage(stderr), 2;
        }
#endif
        else if (strncmp(a, "--count=", 8) == 0)
            cfg.count = atol(a + 8);
        else if (strncmp(a, "--reps=", 7) == 0) {
            g_reps = atoi(a + 7);
            if (g_reps < 1 || g_reps > MAX_REPS)
                return usage(stderr), 2;
        } else if (strncmp(a, "--time=", 7) == 0)
            t = atof(a + 7);
        else if (strncmp(a, "--pp-sizes=", 11) == 0) {
            if (parse_sizes(a + 11, pp_sizes, &n_pp_sizes) != 0)
                return usage(stderr), 2;
        } else if (strncmp(a, "--st-sizes=", 11) == 0) {
            if (parse_sizes(a + 11, st_sizes, &n_st_sizes) != 0)
                return usage(stderr), 2;
        } else if (strcmp(a, "--list") == 0) {
            for (k = 0; k < K_COUNT; k++)
                if (kind_available(k))
                    printf("%s\n", kind_names[k]);
            printf("(msgpipe is %s: \"%s\")\n", msgpipe_backend(),
                   kind_label(K_MSGPIPE));
            return 0;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "msgpipe_bench: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
    }
    cfg.pp_seconds = cfg.quick ? 0.25 : 2.0;
    cfg.pp_warm = cfg.quick ? 0.05 : 0.2;
    cfg.st_seconds = cfg.quick ? 0.2 : 1.0;
    if (t > 0)
        cfg.pp_seconds = cfg.st_seconds = t;
    if (g_reps < 0)
        g_reps = cfg.count > 0 ? 1 : cfg.quick ? 3 : 5;
    for (k = 0; k < K_COUNT; k++) {
        if (tlist != NULL) {
            cfg.kinds[k] = has_word(tlist, kind_names[k]);
            if (cfg.kinds[k] && !kind_available(k)) {
                fprintf(stderr, "msgpipe_bench: transport %s is not built in\n",
                        kind_names[k]);
                return 2;
            }
        } else {
            cfg.kinds[k] = kind_available(k) && k != K_RAWPOLL &&
                           (k != K_RAWFIFO ||
                            strcmp(msgpipe_backend(), "posix-fifo") == 0);
        }
    }
    cfg.cases[C_PINGPONG] = clist == NULL || has_word(clist, "pingpong");
    cfg.cases[C_STREAM] = clist == NULL || has_word(clist, "stream");
    cfg.idle = clist != NULL && has_word(clist, "idle");
    cfg.spin = clist != NULL && has_word(clist, "spin");
#ifdef _WIN32
    if (cfg.idle || cfg.spin) {
        fprintf(stderr,
                "msgpipe_bench: --cases=idle and spin are POSIX only\n");
        return 2;
    }
#endif

    fprintf(stderr, "msgpipe_bench: msgpipe %s (%s), pid %ld%s\n",
            msgpipe_version_string(), msgpipe_backend(), my_pid(),
            cfg.quick ? ", quick" : "");
    if (cfg.cases[C_PINGPONG])
        for (i = 0; i < n_pp_sizes; i++)
            for (rep = 0; rep < g_reps; rep++)
                for (k = 0; k < K_COUNT; k++)
                    if (cfg.kinds[k])
                        measure_pingpong(k, pp_sizes[i], rep);
    if (cfg.cases[C_STREAM])
        for (i = 0; i < n_st_sizes; i++)
            for (rep = 0; rep < g_reps; rep++)
                for (k = 0; k < K_COUNT; k++)
                    if (cfg.kinds[k])
                        measure_stream(k, i, rep);
    if (cfg.csv)
        print_csv(stdout);
    else if (n_results > 0)
        print_table();
#ifndef _WIN32
    if (cfg.idle && measure_idle() != 0)
        return 1;
    if (cfg.spin && measure_spin() != 0)
        return 1;
#endif
    if (csv_file != NULL) {
        FILE *f = fopen(csv_file, "w");
        if (f == NULL) {
            fprintf(stderr, "msgpipe_bench: %s: %s\n", csv_file,
                    strerror(errno));
            return 1;
        }
        print_csv(f);
        fclose(f);
    }
    for (i = 0; i < n_results; i++)
        if (!results[i].r.ok)
            return 1;
    return 0;
}
