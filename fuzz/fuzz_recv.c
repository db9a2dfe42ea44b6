/*
 * fuzz_recv.c - libFuzzer target: the POSIX receive path against a hostile
 * byte stream.
 *
 * The input is what a peer writes on the wire.  Its first 4 bytes choose
 * the settings (see struct cfg below): the pipe's max_message, how the
 * stream is cut into writes, which receive calls may be used.  The rest is
 * written, chunk by chunk, into one end of a socketpair(AF_UNIX,
 * SOCK_STREAM) whose other end is wrapped with the library's own
 * msgpipe__pipe_new(), exactly as an accepted connection is; then the
 * writer closes.  Between writes the target calls msgpipe_recv(),
 * msgpipe_recv_alloc() and msgpipe_poll(), always with timeout 0, with
 * buffers of many sizes, until the pipe reports its end (ECLOSED or
 * EPROTO).
 *
 * Everything runs in one thread and never blocks: the writer end is
 * non-blocking and a write that does not fit is retried after the reader
 * has taken bytes.  So a run is deterministic, and a hang is a library bug
 * (libFuzzer's -timeout reports it).
 *
 * A reference decoder of the same framing (Python multiprocessing's) turns
 * the whole stream into the list of what a receiver must see: messages,
 * oversized messages (EMSGSIZE), and the end (ECLOSED, or EPROTO for a
 * malformed header).  Every result of the library is checked against it:
 *   - a message comes back whole, with the right bytes, never longer than
 *     max_message, with a zero byte after it (recv_alloc);
 *   - ENOBUFS reports the size of the next message (> cap) and leaves it
 *     queued: the retry with a buffer that large returns it whole;
 *   - EMSGSIZE reports the announced size and the next call goes on with
 *     the message after it;
 *   - ETIMEDOUT only while the bytes of the next event have not all been
 *     written (liveness), never after the writer closed;
 *   - msgpipe_poll() is exact: POLLIN iff a receive with timeout 0 returns
 *     something other than ETIMEDOUT;
 *   - the end is sticky: a later call returns the same code.
 * A broken invariant prints what happened and calls abort().
 *
 * The same file is linked into a plain replay driver (fuzz/replay.c) that
 * the normal test suite uses to replay the seed corpus and every crash
 * found so far (fuzz/regressions/recv/).
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include "posix_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ---- Failing --------------------------------------------------------- */

static const uint8_t *fz_input;
static size_t fz_input_len;

#if defined(__GNUC__) || defined(__clang__)
#define FZ_NORETURN __attribute__((noreturn))
#else
#define FZ_NORETURN
#endif

FZ_NORETURN static void fz_fail(const char *fmt, ...);

static void fz_fail(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "fuzz_recv: invariant broken: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (input of %lu bytes)\n", (unsigned long)fz_input_len);
    abort();
}

#define FZ_CHECK(cond, ...)                                                    \
    do {                                                                       \
        if (!(cond))                                                           \
            fz_fail(__VA_ARGS__);                                              \
    } while (0)

/* ---- Settings from the first bytes ------------------------------------- */

static const uint64_t fz_max_choices[4] = {4096, 1, 100, 20000};

struct cfg {
    uint64_t max_message; /* byte 0 bits 0-1 */
    int chunking;         /* byte 0 bits 2-3: see fz_chunk() */
    int use_poll;         /* byte 0 bit 4 */
    int use_alloc;        /* byte 0 bit 5 */
    int use_recv;         /* byte 0 bit 6 (neither 5 nor 6: both) */
    int half_close;       /* byte 0 bit 7: shutdown(SHUT_WR), not close */
    uint32_t seed;        /* bytes 1-3 */
};

#define FZ_CFG_BYTES 4

/* xorshift32: the choices made while running, from the input's seed. */
static uint32_t fz_rand(uint32_t *s)
{
    uint32_t x = *s;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *s = x;
    return x;
}

/* ---- Reference decoder -------------------------------------------------- */

enum { EV_MSG = 1, EV_BIG = 2, EV_END = 3 };

struct event {
    int kind;
    uint64_t off;   /* EV_MSG: where the payload starts */
    uint64_t len;   /* EV_MSG: payload size; EV_BIG: announced size */
    uint64_t ready; /* bytes that must be written for it to be deliverable */
    int end_rc;     /* EV_END: ECLOSED or EPROTO */
    /* EV_END after a header whose payload never came: its length (a
     * receive may report ENOBUFS for it before the end); else 0 and
     * has_trunc 0. */
    int has_trunc;
    uint64_t trunc_len;
};

static uint64_t fz_be(const uint8_t *b, int n)
{
    uint64_t v = 0;
    int i;
    for (i = 0; i < n; i++)
        v = (v << 8) | b[i];
    return v;
}

/* Decode the whole stream s[0..n) as msgpipe must.  Returns the number of
 * events; the last is EV_END. */
static size_t fz_reference(const uint8_t *s, size_t n, uint64_t limit,
                           struct event *ev)
{
    size_t k = 0, pos = 0;

    for (;;) {
        uint64_t len, head;
        size_t hlen;
        struct event *e = &ev[k];

        memset(e, 0, sizeof(*e));
        if (n - pos < 4) {
            e->kind = EV_END;
            e->end_rc = MSGPIPE_ECLOSED;
            return k + 1;
        }
        head = fz_be(s + pos, 4);
        if (head < 0x80000000u) {
            len = head;
            hlen = 4;
        } else if (head == 0xffffffffu) {
            if (n - pos < 12) {
                e->kind = EV_END;
                e->end_rc = MSGPIPE_ECLOSED;
                return k + 1;
            }
            len = fz_be(s + pos + 4, 8);
            hlen = 12;
            if (len > (uint64_t)INT64_MAX) {
                e->kind = EV_END;
                e->end_rc = MSGPIPE_EPROTO;
                e->ready = pos + 12;
                return k + 1;
            }
        } else {
            e->kind = EV_END;
            e->end_rc = MSGPIPE_EPROTO;
            e->ready = pos + 4;
            return k + 1;
        }
        pos += hlen;
        if (len > limit) {
            e->kind = EV_BIG;
            e->len = len;
            e->ready = pos;
            k++;
            if ((uint64_t)(n - pos) < len) {
                ev[k].kind = EV_END;
                ev[k].end_rc = MSGPIPE_ECLOSED;
                ev[k].ready = 0;
                ev[k].has_trunc = 0;
                return k + 1;
            }
            pos += (size_t)len;
            continue;
        }
        if ((uint64_t)(n - pos) < len) {
            e->kind = EV_END;
            e->end_rc = MSGPIPE_ECLOSED;
            e->has_trunc = 1;
            e->trunc_len = len;
            return k + 1;
        }
        e->kind = EV_MSG;
        e->off = pos;
        e->len = len;
        e->ready = pos + len;
        pos += (size_t)len;
        k++;
    }
}

/* ---- The run ---------------------------------------------------------- */

struct run {
    struct cfg cfg;
    const uint8_t *s; /* the stream */
    size_t n;
    struct event *ev;
    size_t nev, at; /* events; the next one expected */
    int wfd;        /* writer end; -1 once closed */
    size_t written;
    int closed;
    msgpipe *p;
    uint64_t pending; /* ENOBUFS said the next message has this size */
    int done;         /* the end was reported */
    int end_rc;
};

/* Size of the next write. */
static size_t fz_chunk(const struct run *rn, uint32_t *rs)
{
    uint32_t r = fz_rand(rs);

    switch (rn->cfg.chunking) {
    case 0: /* mostly tiny: splits inside headers */
        return 1 + r % 16;
    case 1: /* anything up to 4 KiB */
        return 1 + r % 4096;
    case 2: /* one byte at a time (every boundary) for the first 512
             * bytes, then small pieces: long inputs stay fast */
        return rn->written < 512 ? 1 : 1 + r % 16;
    default: /* everything at once (as far as the socket takes it) */
        return (size_t)-1;
    }
}

enum { OP_RECV = 1, OP_ALLOC = 2 };

static const char *fz_op_name(int op)
{
    return op == OP_RECV ? "msgpipe_recv" : "msgpipe_recv_alloc";
}

/* May the library still say ETIMEDOUT for the next event? */
static int fz_may_time_out(const struct run *r)
{
    const struct event *e = &r->ev[r->at];

    if (r->closed)
        return 0;
    if (e->kind == EV_END && e->end_rc == MSGPIPE_ECLOSED)
        return 1; /* needs the close */
    return r->written < e->ready;
}

/* Check one receive result against the reference; advance. */
static void fz_check(struct run *r, int op, int rc, size_t cap,
                     const uint8_t *msg, size_t len)
{
    const struct event *e = &r->ev[r->at];
    uint64_t limit = r->cfg.max_message;

    switch (rc) {
    case MSGPIPE_OK:
        FZ_CHECK(e->kind == EV_MSG,
                 "%s returned a message of %lu bytes; expected event %d "
                 "(kind %d)",
                 fz_op_name(op), (unsigned long)len, (int)r->at, e->kind);
        FZ_CHECK(len == e->len, "%s: length %lu, expected %lu", fz_op_name(op),
                 (unsigned long)len, (unsigned long)e->len);
        FZ_CHECK(len <= limit, "message of %lu > max_message %lu",
                 (unsigned long)len, (unsigned long)limit);
        FZ_CHECK(op != OP_RECV || len <= cap, "message longer than cap");
        FZ_CHECK(len == 0 || memcmp(msg, r->s + e->off, len) == 0,
                 "%s: message %d has the wrong bytes", fz_op_name(op),
                 (int)r->at);
        if (op == OP_ALLOC) {
            FZ_CHECK(msg != NULL, "recv_alloc: NULL buffer for OK");
            FZ_CHECK(msg[len] == 0, "recv_alloc: no zero byte after it");
        }
        r->pending = 0;
        r->at++;
        return;
    case MSGPIPE_ENOBUFS: {
        uint64_t want = 0;
        FZ_CHECK(op == OP_RECV, "recv_alloc returned ENOBUFS");
        if (e->kind == EV_MSG)
            want = e->len;
        else if (e->kind == EV_END && e->has_trunc)
            want = e->trunc_len;
        else
            fz_fail("ENOBUFS for event %d of kind %d", (int)r->at, e->kind);
        FZ_CHECK(len == want, "ENOBUFS reports %lu, the message has %lu",
                 (unsigned long)len, (unsigned long)want);
        FZ_CHECK(want > cap, "ENOBUFS with cap %lu >= message %lu",
                 (unsigned long)cap, (unsigned long)want);
        FZ_CHECK(r->pending == 0 || r->pending == want,
                 "ENOBUFS size changed from %lu to %lu",
                 (unsigned long)r->pending, (unsigned long)want);
        r->pending = want;
        return;
    }
    case MSGPIPE_EMSGSIZE:
        FZ_CHECK(e->kind == EV_BIG,
                 "%s: EMSGSIZE, expected event %d of kind %d", fz_op_name(op),
                 (int)r->at, e->kind);
        FZ_CHECK((uint64_t)len == e->len, "EMSGSIZE reports %lu, announced %lu",
                 (unsigned long)len, (unsigned long)e->len);
        FZ_CHECK(msg == NULL, "EMSGSIZE with a buffer");
        FZ_CHECK(r->pending == 0, "EMSGSIZE after ENOBUFS for the same");
        r->at++;
        return;
    case MSGPIPE_ETIMEDOUT:
        FZ_CHECK(fz_may_time_out(r),
                 "%s: ETIMEDOUT although event %d (kind %d) is all there "
                 "(%lu of %lu bytes written%s)",
                 fz_op_name(op), (int)r->at, e->kind, (unsigned long)r->written,
                 (unsigned long)r->n, r->closed ? ", writer closed" : "");
        FZ_CHECK(msg == NULL && (op != OP_ALLOC || len == 0),
                 "ETIMEDOUT with a message");
        return;
    case MSGPIPE_ECLOSED:
    case MSGPIPE_EPROTO:
        FZ_CHECK(e->kind == EV_END && e->end_rc == rc,
                 "%s: %s, expected event %d of kind %d (end %s)",
                 fz_op_name(op), msgpipe_errname(rc), (int)r->at, e->kind,
                 msgpipe_errname(e->end_rc));
        FZ_CHECK(rc != MSGPIPE_ECLOSED || r->closed,
                 "ECLOSED before the writer closed");
        FZ_CHECK(msg == NULL, "%s with a buffer", msgpipe_errname(rc));
        r->done = 1;
        r->end_rc = rc;
        return;
    default:
        fz_fail("%s returned %s (%d)", fz_op_name(op), msgpipe_errname(rc), rc);
    }
}

static void fz_recv(struct run *r, size_t cap)
{
    uint8_t *buf = cap > 0 ? (uint8_t *)malloc(cap) : NULL;
    size_t len = (size_t)-7;
    int rc;

    if (cap > 0 && buf == NULL)
        abort();
    rc = msgpipe_recv(r->p, buf, cap, &len, 0);
    fz_check(r, OP_RECV, rc, cap, rc == MSGPIPE_OK ? buf : NULL, len);
    free(buf);
}

static int fz_alloc(struct run *r)
{
    void *m = (void *)&m; /* must become NULL on error */
    size_t len = (size_t)-7;
    int rc;

    rc = msgpipe_recv_alloc(r->p, &m, &len, 0);
    if (rc != MSGPIPE_OK && rc != MSGPIPE_EMSGSIZE)
        FZ_CHECK(len == 0, "recv_alloc: %s with *len %lu", msgpipe_errname(rc),
                 (unsigned long)len);
    fz_check(r, OP_ALLOC, rc, 0, (const uint8_t *)m, len);
    msgpipe_free(rc == MSGPIPE_OK ? m : NULL);
    return rc;
}

/* A buffer size for msgpipe_recv: around the next message's size, or
 * anything. */
static size_t fz_cap(struct run *r, uint32_t *rs)
{
    const struct event *e = &r->ev[r->at];
    uint64_t next = e->kind == EV_MSG ? e->len
                    : e->has_trunc    ? e->trunc_len
                                      : 0;
    uint64_t c;

    if (r->pending > 0) /* retry after ENOBUFS: exactly or more */
        return (size_t)r->pending +
               (fz_rand(rs) % 4 == 0 ? fz_rand(rs) % 64 : 0);
    switch (fz_rand(rs) % 6) {
    case 0:
        return 0;
    case 1:
        return (size_t)next;
    case 2:
        return next > 0 ? (size_t)next - 1 : 0;
    case 3:
        return (size_t)r->cfg.max_message;
    case 4:
        c = fz_rand(rs) % (2 * r->cfg.max_message + 2);
        return (size_t)(c > 65536 ? 65536 : c);
    default:
        return (size_t)next + 1 + fz_rand(rs) % 32;
    }
}

/* msgpipe_poll() must be exact: ready iff a receive returns at once. */
static void fz_poll(struct run *r)
{
    msgpipe_pollitem it;
    int rc, ready, got;

    memset(&it, 0, sizeof(it));
    it.pipe = r->p;
    it.events = MSGPIPE_POLLIN;
    rc = msgpipe_poll(&it, 1, 0);
    FZ_CHECK(rc == 1 || rc == MSGPIPE_ETIMEDOUT, "msgpipe_poll returned %s",
             msgpipe_errname(rc));
    ready = rc == 1;
    FZ_CHECK(ready == ((it.revents & MSGPIPE_POLLIN) != 0),
             "poll: return %d with revents %u", rc, it.revents);
    /* A receive that needs the whole message, with no write in between. */
    got = fz_alloc(r);
    FZ_CHECK(ready == (got != MSGPIPE_ETIMEDOUT),
             "msgpipe_poll said %s but msgpipe_recv_alloc returned %s",
             ready ? "ready" : "not ready", msgpipe_errname(got));
}

static void fz_write(struct run *r, uint32_t *rs)
{
    size_t want = fz_chunk(r, rs), left = r->n - r->written;
    ssize_t n;

    if (r->closed)
        return;
    if (want > left)
        want = left;
    if (want > 0) {
        n = send(r->wfd, r->s + r->written, want, MSG_NOSIGNAL);
        if (n > 0)
            r->written += (size_t)n;
        else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK &&
                 errno != EINTR)
            fz_fail("send: %s", strerror(errno));
    }
    if (r->written == r->n) {
        if (r->cfg.half_close) {
            shutdown(r->wfd, SHUT_WR);
        } else {
            close(r->wfd);
            r->wfd = -1;
        }
        r->closed = 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t head[FZ_CFG_BYTES] = {0, 0, 0, 0};
    struct run r;
    msgpipe__opts o;
    uint32_t rs;
    int sv[2], fl, last_timed_out = 0;
    size_t i, steps, max_steps;

    fz_input = data;
    fz_input_len = size;
    memcpy(head, data, size < FZ_CFG_BYTES ? size : FZ_CFG_BYTES);
    memset(&r, 0, sizeof(r));
    r.cfg.max_message = fz_max_choices[head[0] & 3];
    r.cfg.chunking = (head[0] >> 2) & 3;
    r.cfg.use_poll = (head[0] >> 4) & 1;
    r.cfg.use_alloc = (head[0] >> 5) & 1;
    r.cfg.use_recv = (head[0] >> 6) & 1;
    if (!r.cfg.use_alloc && !r.cfg.use_recv)
        r.cfg.use_alloc = r.cfg.use_recv = 1;
    r.cfg.half_close = (head[0] >> 7) & 1;
    r.cfg.seed = ((uint32_t)head[1] << 16) | ((uint32_t)head[2] << 8) |
                 (uint32_t)head[3];
    rs = r.cfg.seed * 2654435761u + 0x9e3779b9u;
    if (rs == 0)
        rs = 1;
    r.s = size > FZ_CFG_BYTES ? data + FZ_CFG_BYTES : data;
    r.n = size > FZ_CFG_BYTES ? size - FZ_CFG_BYTES : 0;

    /* At most one event per 4 bytes, plus the end. */
    r.ev = (struct event *)calloc(r.n / 4 + 2, sizeof(struct event));
    if (r.ev == NULL)
        abort();
    r.nev = fz_reference(r.s, r.n, r.cfg.max_message, r.ev);

    if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
        fz_fail("socketpair: %s", strerror(errno));
    if (msgpipe__fd_setup(sv[0]) != 0)
        fz_fail("fd_setup: %s", strerror(errno));
    fl = fcntl(sv[1], F_GETFL);
    fcntl(sv[1], F_SETFL, fl | O_NONBLOCK);
    r.wfd = sv[1];
    memset(&o, 0, sizeof(o)); /* every field a later version adds: off */
    o.max_message = r.cfg.max_message;
    o.access = MSGPIPE_ACCESS_OWNER;
    o.pending = 1;
    o.linger_ms = 0;
    if (msgpipe__pipe_new(sv[0], &o, &r.p) != MSGPIPE_OK)
        fz_fail("msgpipe__pipe_new failed");

    /* Every step writes or receives; a step that receives nothing is
     * followed by a write, and once everything is written every receive
     * makes progress.  So this bound is only reached by a library that
     * stops making progress. */
    max_steps = 64 + 8 * (r.n + r.nev);
    for (steps = 0; !r.done; steps++) {
        uint32_t pick = fz_rand(&rs);
        size_t before = r.at;
        uint64_t pend = r.pending;

        FZ_CHECK(steps < max_steps, "no progress after %lu steps (event %d)",
                 (unsigned long)steps, (int)r.at);
        if (!r.closed && (last_timed_out || pick % 2 == 0))
            fz_write(&r, &rs);
        pick = fz_rand(&rs);
        if (r.pending > 0 && r.cfg.use_recv && pick % 4 != 0) {
            fz_recv(&r, fz_cap(&r, &rs));
        } else if (r.cfg.use_poll && pick % 5 == 0) {
            fz_poll(&r);
        } else if (r.cfg.use_recv && (!r.cfg.use_alloc || pick % 2 == 0)) {
            fz_recv(&r, fz_cap(&r, &rs));
        } else {
            (void)fz_alloc(&r);
        }
        last_timed_out = r.at == before && r.pending == pend && !r.done;
    }
    FZ_CHECK(r.at == r.nev - 1, "ended at event %d of %d", (int)r.at,
             (int)r.nev);

    /* The end is sticky, for both kinds of receive. */
    for (i = 0; i < 2; i++) {
        size_t len = 0;
        void *m = NULL;
        int rc = i == 0 ? msgpipe_recv(r.p, NULL, 0, &len, 0)
                        : msgpipe_recv_alloc(r.p, &m, &len, 0);
        FZ_CHECK(rc == r.end_rc, "after %s, a second %s returned %s",
                 msgpipe_errname(r.end_rc),
                 i == 0 ? "msgpipe_recv" : "msgpipe_recv_alloc",
                 msgpipe_errname(rc));
        FZ_CHECK(m == NULL, "buffer after the end");
    }

    msgpipe_close(r.p);
    if (r.wfd >= 0)
        close(r.wfd);
    free(r.ev);
    return 0;
}
