/*
 * test_adversarial.c - the delivery rule under random sizes, timeouts and
 * closes, checked message by message.
 *
 * The rule: a message whose send returned MSGPIPE_OK arrives whole and in
 * order; one whose send returned MSGPIPE_ETIMEDOUT arrives whole or not at
 * all; nothing else arrives.  So: no truncation, no merge, no duplicate, no
 * reordering, and every OK message arrives before MSGPIPE_ECLOSED (unless
 * the receiver itself stopped receiving first).  And a live server's name
 * is never taken by a second server.
 *
 * Every message of at least ADV_HDR bytes carries a header: stream id,
 * sequence number, length and a checksum of its payload (FNV-1a over
 * 32-bit words).  A shorter message carries the first bytes of its
 * stream's pattern and is always sent without a timeout, so that it can be
 * told apart from its neighbours.  Each sender records what every send
 * returned; each receiver logs what arrived; both logs are compared once
 * the threads have ended.
 *
 * One round (one seed) of each test:
 *   test_duplex_pipes_keep_the_delivery_rule: 1-3 pipes, each with one
 *     sender and one receiver thread at each end (both directions), sizes
 *     0 B to 1 MiB (most small, many larger than a socket or Windows pipe
 *     buffer), send and receive timeouts of 0-5 ms or infinite, receive
 *     buffers too small (MSGPIPE_ENOBUFS, then a retry) or
 *     msgpipe_recv_alloc, in some rounds a small max_message on one end
 *     (MSGPIPE_EMSGSIZE at the sender, or a discard at the receiver).  One
 *     end stops sending and receiving at a random moment and closes; the
 *     other receives until MSGPIPE_ECLOSED (or, in some pipes, also stops
 *     at a random moment).  Client threads start before the server has
 *     accepted the pipe.
 *   test_fire_and_forget_clients_deliver_every_message: client threads that
 *     connect, send 0-3 messages and close at once, to a server made by a
 *     thread that has exited, accepted by a chain of short-lived threads.
 *   test_concurrent_listens_have_one_winner: 2-4 threads call
 *     msgpipe_listen on one name at the same moment; exactly one wins, the
 *     others get MSGPIPE_EADDRINUSE.
 *
 * Environment:
 *   MSGPIPE_ADV_SEED=N      run one round with seed N (each test)
 *   MSGPIPE_ADV_SECONDS=S   run rounds with new seeds for S seconds in all
 *                           (a third of it per test), printing each seed
 *   MSGPIPE_ADV_OFF=LIST    leave out parts, to narrow down a failure:
 *                           "early" (start client threads only after the
 *                           accept and msgpipe_peer on the client),
 *                           "emsgsize", "ff", "listen"
 * Without them a fixed set of seeds runs; smaller under valgrind (the
 * suite's memcheck run sets MSGPIPE_LOAD_MESSAGES), ThreadSanitizer and
 * Wine.  A failure prints the seed and what was wrong.
 */
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ADV_HDR 16                     /* stream id, seq, length, checksum */
#define ADV_MAX_LEN ((size_t)1 << 20)  /* the largest message */
#define ADV_POOL_SPAN 65536            /* payload start offsets */
#define ADV_SMALL_MAX ((uint64_t)1024) /* "small max_message" range */
#define ADV_INF MSGPIPE_INFINITE
#define ADV_WHY 1024
#define ADV_NOTE 320 /* what one log keeps of its first problem */

/* ---- Random numbers ---------------------------------------------------- */

typedef struct adv_rng {
    uint64_t s;
} adv_rng;

static uint64_t adv_next(adv_rng *r)
{
    /* splitmix64 */
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint32_t adv_below(adv_rng *r, uint32_t n)
{
    return n == 0 ? 0 : (uint32_t)(adv_next(r) % n);
}

static int adv_chance(adv_rng *r, unsigned percent)
{
    return adv_below(r, 100) < percent;
}

static adv_rng adv_rng_make(uint32_t seed, uint32_t role)
{
    adv_rng r;
    r.s = ((uint64_t)seed << 32) ^ (uint64_t)role * 0x2545f4914f6cdd1dull;
    (void)adv_next(&r);
    return r;
}

/* A message size: most small, many larger than a socket buffer or a
 * Windows pipe buffer (64 KiB), some up to 1 MiB. */
static size_t adv_size(adv_rng *r, size_t cap)
{
    uint32_t k = adv_below(r, 100);
    size_t n;

    if (k < 40)
        n = adv_below(r, 65);
    else if (k < 62)
        n = 65 + adv_below(r, 4032);
    else if (k < 78)
        n = 4097 + adv_below(r, 61440);
    else if (k < 90)
        n = 60000 + adv_below(r, 150000);
    else if (k < 97)
        n = 200000 + adv_below(r, 400000);
    else
        n = 600000 + adv_below(r, (uint32_t)(ADV_MAX_LEN - 600000 + 1));
    return n > cap ? cap : n;
}

/* A timeout for a send or a receive: 0-5 ms, or (if allowed) infinite. */
static int adv_timeout(adv_rng *r, int allow_infinite)
{
    if (allow_infinite && adv_chance(r, 20))
        return ADV_INF;
    return (int)adv_below(r, 6);
}

/* ---- Messages ---------------------------------------------------------- */

static unsigned char *adv_pool; /* read-only once made */

static void adv_pool_make(void)
{
    if (adv_pool == NULL) {
        adv_pool = (unsigned char *)malloc(ADV_MAX_LEN + ADV_POOL_SPAN);
        assert_non_null(adv_pool);
        sup_fill(adv_pool, ADV_MAX_LEN + ADV_POOL_SPAN, 0xad7e5a11u);
    }
}

static size_t adv_offset(uint32_t id, uint32_t seq)
{
    uint32_t h = id * 0x9e3779b1u ^ seq * 0x85ebca6bu;
    h ^= h >> 15;
    h *= 0x2c1b3c6du;
    h ^= h >> 13;
    return h % ADV_POOL_SPAN;
}

/* FNV-1a over 32-bit little-endian words, then the tail bytes. */
static uint32_t adv_sum(const unsigned char *b, size_t n)
{
    uint32_t h = 2166136261u;
    size_t i = 0;

    for (; i + 4 <= n; i += 4) {
        h ^= (uint32_t)b[i] | (uint32_t)b[i + 1] << 8 |
             (uint32_t)b[i + 2] << 16 | (uint32_t)b[i + 3] << 24;
        h *= 16777619u;
    }
    for (; i < n; i++) {
        h ^= b[i];
        h *= 16777619u;
    }
    return h;
}

/* Build message (id, seq) of len bytes into b. */
static void adv_make(unsigned char *b, uint32_t id, uint32_t seq, size_t len)
{
    const unsigned char *src = adv_pool + adv_offset(id, seq);

    if (len < ADV_HDR) {
        memcpy(b, src, len);
        return;
    }
    sup_put32(b, id);
    sup_put32(b + 4, seq);
    sup_put32(b + 8, (uint32_t)len);
    memcpy(b + ADV_HDR, src, len - ADV_HDR);
    sup_put32(b + 12, adv_sum(b + ADV_HDR, len - ADV_HDR));
}

/* ---- Logs -------------------------------------------------------------- */

/* A message of a batch behind the one the time ran out on: not sent. */
#define ADV_NOT_SENT 100

static const char *adv_rcname(int rc)
{
    return rc == ADV_NOT_SENT ? "not sent (batch)" : msgpipe_errname(rc);
}

/* What one send returned. */
typedef struct adv_sent {
    uint32_t len;
    int rc;
    int tmo;
    int batch; /* sent by msgpipe_send_batch */
} adv_sent;

enum { ADV_EV_MSG, ADV_EV_SHORT, ADV_EV_DISCARD, ADV_EV_BAD };

/* What one receive produced. */
typedef struct adv_event {
    int kind;
    uint32_t seq; /* ADV_EV_MSG */
    uint32_t len; /* every kind; ADV_EV_DISCARD: the announced size */
    unsigned char head[ADV_HDR]; /* ADV_EV_SHORT: the bytes */
} adv_event;

/* The receiving half of a stream. */
typedef struct adv_log {
    adv_event *ev;
    size_t n, cap;
    int end_rc;         /* MSGPIPE_ECLOSED, another error, or 1: stopped */
    char bad[ADV_NOTE]; /* the first thing found wrong while receiving */
    int nbad;
    /* About the first problem: the message it concerns (seq from its
     * header, or a length ENOBUFS announced), and how many events had
     * been logged before it. */
    long hint_seq, hint_len;
    size_t bad_at;
    long enobufs; /* statistics */
} adv_log;

/* One direction of one pipe (or one fire-and-forget session). */
typedef struct adv_stream {
    uint32_t id;
    uint64_t tx_max, rx_max; /* the sender's and the receiver's limit */
    adv_sent *sent;
    size_t planned, n_sent;
    int sender_rc_bad; /* an unexpected send result */
    char sender_why[ADV_NOTE];
    int check_complete; /* ECLOSED implies every OK message came */
    adv_log rx;
} adv_stream;

static void adv_log_add(adv_log *lg, const adv_event *e)
{
    if (lg->n == lg->cap) {
        size_t cap = lg->cap ? lg->cap * 2 : 64;
        adv_event *ev = (adv_event *)realloc(lg->ev, cap * sizeof(*ev));
        if (ev == NULL) {
            lg->nbad++;
            return;
        }
        lg->ev = ev;
        lg->cap = cap;
    }
    lg->ev[lg->n++] = *e;
}

static void adv_log_bad(adv_log *lg, const char *fmt, ...)
{
    adv_event e;

    memset(&e, 0, sizeof(e));
    e.kind = ADV_EV_BAD;
    if (lg->nbad == 0) {
        lg->bad_at = lg->n;
        lg->hint_seq = lg->hint_len = -1;
    }
    adv_log_add(lg, &e);
    if (lg->nbad++ == 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(lg->bad, sizeof(lg->bad), fmt, ap);
        va_end(ap);
    }
}

static void adv_log_hint(adv_log *lg, long seq, long len)
{
    if (lg->nbad == 1) {
        lg->hint_seq = seq;
        lg->hint_len = len;
    }
}

static const char *adv_tmo_name(int t, char *buf, size_t cap)
{
    if (t == ADV_INF)
        snprintf(buf, cap, "infinite");
    else
        snprintf(buf, cap, "%d ms", t);
    return buf;
}

/* ---- Receiving ---------------------------------------------------------- */

typedef struct adv_rx {
    adv_rng rng;
    unsigned char *buf;
    size_t alloc;
    size_t announced; /* ENOBUFS said this size; 0: none pending */
    uint32_t id;      /* the stream expected; 0: learn from the first */
    uint64_t max;     /* this end's max_message */
    int cut_ok;       /* the peer's close may cut its last message */
    adv_log *log;
} adv_rx;

static int adv_rx_init(adv_rx *rx, uint32_t seed, uint32_t role)
{
    memset(rx, 0, sizeof(*rx));
    rx->rng = adv_rng_make(seed, role);
    rx->alloc = ADV_MAX_LEN;
    rx->buf = (unsigned char *)malloc(rx->alloc);
    return rx->buf == NULL ? -1 : 0;
}

static void adv_rx_free(adv_rx *rx)
{
    free(rx->buf);
    rx->buf = NULL;
}

/* Log a message that arrived: well formed, or what is wrong with it. */
static void adv_rx_take(adv_rx *rx, const unsigned char *b, size_t len)
{
    adv_event e;
    uint32_t id, seq, hlen, sum;

    memset(&e, 0, sizeof(e));
    e.len = (uint32_t)len;
    if (rx->announced != 0 && rx->announced != len) {
        adv_log_bad(rx->log,
                    "ENOBUFS announced %lu bytes, then a %lu-byte message "
                    "arrived",
                    (unsigned long)rx->announced, (unsigned long)len);
        adv_log_hint(rx->log, len >= ADV_HDR ? (long)sup_get32(b + 4) : -1,
                     (long)rx->announced);
    }
    rx->announced = 0;
    if ((uint64_t)len > rx->max)
        adv_log_bad(rx->log, "a %lu-byte message arrived: max_message is %lu",
                    (unsigned long)len, (unsigned long)rx->max);
    if (len < ADV_HDR) {
        e.kind = ADV_EV_SHORT;
        memcpy(e.head, b, len);
        adv_log_add(rx->log, &e);
        return;
    }
    id = sup_get32(b);
    seq = sup_get32(b + 4);
    hlen = sup_get32(b + 8);
    sum = sup_get32(b + 12);
    if (rx->id == 0)
        rx->id = id;
    if (id != rx->id) {
        adv_log_bad(rx->log,
                    "a %lu-byte message of stream %lx (seq %lu) arrived on "
                    "stream %lx",
                    (unsigned long)len, (unsigned long)id, (unsigned long)seq,
                    (unsigned long)rx->id);
        return;
    }
    if (hlen != len) {
        adv_log_bad(rx->log,
                    "stream %lx seq %lu: %s: %lu bytes arrived, %lu were "
                    "sent",
                    (unsigned long)id, (unsigned long)seq,
                    len < hlen ? "truncated" : "merged with what followed",
                    (unsigned long)len, (unsigned long)hlen);
        adv_log_hint(rx->log, (long)seq, -1);
        return;
    }
    if (adv_sum(b + ADV_HDR, len - ADV_HDR) != sum) {
        adv_log_bad(rx->log, "stream %lx seq %lu: %lu bytes, bad checksum",
                    (unsigned long)id, (unsigned long)seq, (unsigned long)len);
        adv_log_hint(rx->log, (long)seq, -1);
        return;
    }
    e.kind = ADV_EV_MSG;
    e.seq = seq;
    adv_log_add(rx->log, &e);
}

/* One receive with a random buffer size (or msgpipe_recv_alloc); logs
 * what it gave.  Returns msgpipe's code. */
static int adv_rx_once(adv_rx *rx, msgpipe *p, int timeout_ms)
{
    size_t cap = (size_t)-1, len = 0; /* recv_alloc: never ENOBUFS */
    int rc;

    if (adv_chance(&rx->rng, 25)) {
        void *m = NULL;
        rc = msgpipe_recv_alloc(p, &m, &len, timeout_ms);
        if (rc == MSGPIPE_OK) {
            adv_rx_take(rx, (const unsigned char *)m, len);
            msgpipe_free(m);
            return rc;
        }
        if (m != NULL)
            adv_log_bad(rx->log, "recv_alloc returned %s with a buffer",
                        msgpipe_errname(rc));
    } else {
        if (rx->announced != 0) {
            /* After ENOBUFS: exactly the size needed, or more. */
            cap = adv_chance(&rx->rng, 50) ? rx->announced : rx->alloc;
        } else {
            uint32_t k = adv_below(&rx->rng, 10);
            cap =
                k < 3 ? adv_below(&rx->rng, 257) : (k < 6 ? 65536 : rx->alloc);
        }
        if (cap > rx->alloc)
            cap = rx->alloc;
        rc = msgpipe_recv(p, cap ? rx->buf : NULL, cap, &len, timeout_ms);
        if (rc == MSGPIPE_OK) {
            if (len > cap) {
                adv_log_bad(rx->log, "recv: %lu bytes into a %lu-byte buffer",
                            (unsigned long)len, (unsigned long)cap);
                return rc;
            }
            adv_rx_take(rx, rx->buf, len);
            return rc;
        }
    }
    switch (rc) {
    case MSGPIPE_ETIMEDOUT:
        break;
    case MSGPIPE_ENOBUFS:
        rx->log->enobufs++;
        if (len <= cap) {
            adv_log_bad(rx->log, "ENOBUFS with a %lu-byte buffer for %lu bytes",
                        (unsigned long)cap, (unsigned long)len);
            return MSGPIPE_EIO;
        }
        if (rx->announced != 0 && rx->announced != len) {
            adv_log_bad(rx->log, "ENOBUFS announced %lu bytes, then %lu",
                        (unsigned long)rx->announced, (unsigned long)len);
            adv_log_hint(rx->log, -1, (long)rx->announced);
        }
        rx->announced = len;
        if (len > rx->alloc) {
            /* Larger than any message sent: see what it is. */
            unsigned char *nb = len <= ((size_t)80 << 20)
                                    ? (unsigned char *)realloc(rx->buf, len)
                                    : NULL;
            if (nb == NULL) {
                adv_log_bad(rx->log, "ENOBUFS announced %lu bytes",
                            (unsigned long)len);
                return MSGPIPE_EIO;
            }
            rx->buf = nb;
            rx->alloc = len;
        }
        break;
    case MSGPIPE_EMSGSIZE: {
        adv_event e;
        if ((uint64_t)len <= rx->max)
            adv_log_bad(rx->log, "EMSGSIZE for %lu bytes: max_message is %lu",
                        (unsigned long)len, (unsigned long)rx->max);
        if (rx->announced != 0) {
            adv_log_bad(rx->log,
                        "ENOBUFS announced %lu bytes, then EMSGSIZE (%lu)",
                        (unsigned long)rx->announced, (unsigned long)len);
            adv_log_hint(rx->log, -1, (long)rx->announced);
        }
        rx->announced = 0;
        memset(&e, 0, sizeof(e));
        e.kind = ADV_EV_DISCARD;
        e.len = (uint32_t)len;
        adv_log_add(rx->log, &e);
        break;
    }
    case MSGPIPE_ECLOSED:
        if (rx->announced != 0 && !rx->cut_ok) {
            adv_log_bad(rx->log,
                        "ENOBUFS announced a %lu-byte message, then ECLOSED "
                        "without it",
                        (unsigned long)rx->announced);
            adv_log_hint(rx->log, -1, (long)rx->announced);
        }
        break;
    default:
        adv_log_bad(rx->log, "receive returned %s", msgpipe_errname(rc));
        break;
    }
    return rc;
}

/* Wait with msgpipe_poll (sometimes for POLLOUT too, while this pipe's
 * sender may be sending); when it reports POLLIN, a receive with timeout
 * 0 must not time out.  Returns as adv_rx_once. */
static int adv_rx_poll(adv_rx *rx, msgpipe *p, int timeout_ms)
{
    msgpipe_pollitem it;
    int rc;

    memset(&it, 0, sizeof(it));
    it.pipe = p;
    it.events =
        MSGPIPE_POLLIN | (adv_chance(&rx->rng, 30) ? MSGPIPE_POLLOUT : 0u);
    rc = msgpipe_poll(&it, 1, timeout_ms);
    if (rc == MSGPIPE_ETIMEDOUT)
        return rc;
    if (rc != 1) {
        adv_log_bad(rx->log, "poll of one pipe returned %d (%s)", rc,
                    msgpipe_errname(rc));
        return rc < 0 ? rc : MSGPIPE_EIO;
    }
    if (!(it.revents & MSGPIPE_POLLIN))
        return MSGPIPE_ETIMEDOUT; /* only room to send */
    rc = adv_rx_once(rx, p, 0);
    if (rc == MSGPIPE_ETIMEDOUT)
        adv_log_bad(rx->log,
                    "poll reported POLLIN, then a receive with timeout 0 "
                    "timed out");
    return rc;
}

/* ---- Checking a stream ------------------------------------------------- */

static int adv_may_arrive(const adv_sent *s)
{
    return s->rc == MSGPIPE_OK || s->rc == MSGPIPE_ETIMEDOUT;
}

/* Is sent message j the one a short message or a discard stands for? */
static int adv_matches(const adv_stream *st, size_t j, const adv_event *e)
{
    const adv_sent *s = &st->sent[j];

    if (s->len != e->len)
        return 0;
    if (e->kind == ADV_EV_DISCARD) {
        /* A discard is reported from the message's header, before the
         * rest has come: so it may also be of a message whose send found
         * the peer gone (ECLOSED) while the rest was still going out. */
        return (adv_may_arrive(s) || s->rc == MSGPIPE_ECLOSED) &&
               (uint64_t)s->len > st->rx_max;
    }
    if (!adv_may_arrive(s))
        return 0;
    return memcmp(e->head, adv_pool + adv_offset(st->id, (uint32_t)j),
                  e->len) == 0;
}

static const char *adv_ev_name(const adv_event *e, char *buf, size_t cap)
{
    if (e->kind == ADV_EV_MSG)
        snprintf(buf, cap, "seq %lu (%lu bytes)", (unsigned long)e->seq,
                 (unsigned long)e->len);
    else if (e->kind == ADV_EV_SHORT)
        snprintf(buf, cap, "a %lu-byte message", (unsigned long)e->len);
    else
        snprintf(buf, cap, "EMSGSIZE for %lu bytes", (unsigned long)e->len);
    return buf;
}

/* Append "seq j: LEN bytes, timeout T, RC" for the sends around j. */
static void adv_context(const adv_stream *st, long j, char *why, size_t cap)
{
    long k;
    size_t n = strlen(why);
    char tn[16];

    for (k = j - 2; k <= j + 2; k++) {
        if (k < 0 || k >= (long)st->n_sent || n + 1 >= cap)
            continue;
        snprintf(why + n, cap - n,
                 "\n    sent seq %ld: %lu bytes, timeout %s, %s%s%s", k,
                 (unsigned long)st->sent[k].len,
                 adv_tmo_name(st->sent[k].tmo, tn, sizeof(tn)),
                 adv_rcname(st->sent[k].rc),
                 st->sent[k].batch ? " (batch)" : "", k == j ? "  <--" : "");
        n = strlen(why);
    }
}

/* The last message that arrived before event i, or -1. */
static long adv_last_seq(const adv_log *lg, size_t i)
{
    while (i-- > 0)
        if (lg->ev[i].kind == ADV_EV_MSG)
            return (long)lg->ev[i].seq;
    return -1;
}

/* Explain the first problem a receiver logged. */
static void adv_explain_bad(const adv_stream *st, char *why, size_t cap)
{
    const adv_log *lg = &st->rx;
    long last = adv_last_seq(lg, lg->bad_at), j = -1, k;
    size_t n;

    snprintf(why, cap, "stream %lx: %s (after seq %ld arrived)",
             (unsigned long)st->id, lg->bad, last);
    if (lg->hint_seq >= 0)
        j = lg->hint_seq;
    if (lg->hint_len >= 0) {
        for (k = last + 1; k < (long)st->n_sent; k++)
            if ((long)st->sent[k].len == lg->hint_len)
                break;
        n = strlen(why);
        if (k < (long)st->n_sent) {
            snprintf(why + n, cap - n, "; the announced message is seq %ld", k);
            j = k;
        } else {
            snprintf(why + n, cap - n, "; no message of that size was sent");
        }
    }
    adv_context(st, j >= 0 ? j : last + 1, why, cap);
}

/* Compare what arrived with what was sent.  0, or -1 with why. */
static int adv_check(const adv_stream *st, char *why, size_t cap)
{
    const adv_log *lg = &st->rx;
    size_t next = 0, i, j;
    char en[64];

    if (st->sender_rc_bad) {
        snprintf(why, cap, "stream %lx: %s", (unsigned long)st->id,
                 st->sender_why);
        return -1;
    }
    if (lg->nbad) {
        adv_explain_bad(st, why, cap);
        return -1;
    }
    for (i = 0; i < lg->n; i++) {
        const adv_event *e = &lg->ev[i];

        if (e->kind == ADV_EV_MSG) {
            if (e->seq < next || e->seq >= st->n_sent) {
                snprintf(why, cap,
                         "stream %lx: seq %lu arrived after seq %ld (%lu "
                         "sent): %s",
                         (unsigned long)st->id, (unsigned long)e->seq,
                         (long)next - 1, (unsigned long)st->n_sent,
                         e->seq < next ? "duplicate or reordered"
                                       : "never sent");
                return -1;
            }
            j = e->seq;
            if (!adv_may_arrive(&st->sent[j]) || st->sent[j].len != e->len) {
                snprintf(why, cap,
                         "stream %lx: seq %lu (%lu bytes) arrived; its send "
                         "(%lu bytes) returned %s",
                         (unsigned long)st->id, (unsigned long)j,
                         (unsigned long)e->len, (unsigned long)st->sent[j].len,
                         adv_rcname(st->sent[j].rc));
                adv_context(st, (long)j, why, cap);
                return -1;
            }
        } else {
            for (j = next; j < st->n_sent; j++) {
                if (adv_matches(st, j, e) || st->sent[j].rc == MSGPIPE_OK)
                    break;
            }
            if (j == st->n_sent || !adv_matches(st, j, e)) {
                snprintf(why, cap,
                         "stream %lx: %s arrived after seq %ld; it is not "
                         "the next message that may arrive (seq %lu, %lu "
                         "bytes, %s)",
                         (unsigned long)st->id, adv_ev_name(e, en, sizeof(en)),
                         (long)next - 1, (unsigned long)j,
                         j < st->n_sent ? (unsigned long)st->sent[j].len : 0ul,
                         j < st->n_sent ? adv_rcname(st->sent[j].rc)
                                        : "not sent");
                adv_context(st, (long)j, why, cap);
                return -1;
            }
        }
        /* Every OK message before j must have arrived. */
        for (; next < j; next++) {
            if (st->sent[next].rc == MSGPIPE_OK) {
                snprintf(why, cap,
                         "stream %lx: seq %lu (%lu bytes, send OK) lost: %s "
                         "arrived next",
                         (unsigned long)st->id, (unsigned long)next,
                         (unsigned long)st->sent[next].len,
                         adv_ev_name(e, en, sizeof(en)));
                adv_context(st, (long)next, why, cap);
                return -1;
            }
        }
        next = j + 1;
    }
    if (lg->end_rc == MSGPIPE_ECLOSED && st->check_complete) {
        for (; next < st->n_sent; next++) {
            if (st->sent[next].rc == MSGPIPE_OK) {
                snprintf(why, cap,
                         "stream %lx: seq %lu (%lu bytes, send OK) never "
                         "arrived: ECLOSED came after %lu events",
                         (unsigned long)st->id, (unsigned long)next,
                         (unsigned long)st->sent[next].len,
                         (unsigned long)lg->n);
                adv_context(st, (long)next, why, cap);
                return -1;
            }
        }
    }
    return 0;
}

/* Totals over a round, for the one-line report. */
typedef struct adv_stats {
    long ok, timedout, arrived_timedout, arrived, discards, enobufs;
    double mbytes;
} adv_stats;

static void adv_count(const adv_stream *st, adv_stats *t)
{
    size_t i;

    for (i = 0; i < st->n_sent; i++) {
        if (st->sent[i].rc == MSGPIPE_OK) {
            t->ok++;
            t->mbytes += st->sent[i].len / 1048576.0;
        } else if (st->sent[i].rc == MSGPIPE_ETIMEDOUT) {
            t->timedout++;
        }
    }
    for (i = 0; i < st->rx.n; i++) {
        const adv_event *e = &st->rx.ev[i];
        if (e->kind == ADV_EV_DISCARD)
            t->discards++;
        else
            t->arrived++;
        if (e->kind == ADV_EV_MSG && e->seq < st->n_sent &&
            st->sent[e->seq].rc == MSGPIPE_ETIMEDOUT)
            t->arrived_timedout++;
    }
    t->enobufs += st->rx.enobufs;
}

static int adv_stream_init(adv_stream *st, uint32_t id, size_t planned)
{
    memset(st, 0, sizeof(*st));
    st->id = id;
    st->planned = planned;
    st->tx_max = st->rx_max = MSGPIPE_DEFAULT_MAX_MESSAGE;
    st->check_complete = 1;
    st->rx.end_rc = 1;
    st->sent = (adv_sent *)calloc(planned + 1, sizeof(*st->sent));
    return st->sent == NULL ? -1 : 0;
}

static void adv_stream_free(adv_stream *st)
{
    free(st->sent);
    free(st->rx.ev);
}

/* ---- Sending ------------------------------------------------------------ */

/* Choose a size for message seq of st; sizes above the receiver's limit
 * are made unique (their low 12 bits are seq's), so that a discard
 * identifies its message. */
static size_t adv_pick_size(adv_rng *r, const adv_stream *st, size_t seq,
                            int finite_only)
{
    size_t len = adv_size(r, ADV_MAX_LEN);

    if (finite_only && len < ADV_HDR)
        len = ADV_HDR;
    if ((uint64_t)len > st->rx_max) {
        len = (len & ~(size_t)0xfff) | (seq & 0xfff);
        if ((uint64_t)len <= st->rx_max)
            len += 0x1000;
        if (len > ADV_MAX_LEN)
            len -= 0x1000;
    }
    return len;
}

/* Send message seq; record and judge the result.  Returns the code. */
static int adv_send_one(adv_stream *st, msgpipe *p, unsigned char *buf,
                        size_t seq, size_t len, int timeout_ms, int eclosed_ok)
{
    int rc, good;
    char tn[16];

    adv_make(buf, st->id, (uint32_t)seq, len);
    rc = msgpipe_send(p, buf, len, timeout_ms);
    st->sent[seq].len = (uint32_t)len;
    st->sent[seq].rc = rc;
    st->sent[seq].tmo = timeout_ms;
    st->n_sent = seq + 1;
    if ((uint64_t)len > st->tx_max)
        good = rc == MSGPIPE_EMSGSIZE;
    else if (rc == MSGPIPE_ECLOSED)
        good = eclosed_ok;
    else
        good = rc == MSGPIPE_OK ||
               (rc == MSGPIPE_ETIMEDOUT && timeout_ms != ADV_INF);
    if (!good && !st->sender_rc_bad) {
        st->sender_rc_bad = 1;
        snprintf(st->sender_why, sizeof(st->sender_why),
                 "send of seq %lu (%lu bytes, timeout %s, max_message %lu) "
                 "returned %s%s",
                 (unsigned long)seq, (unsigned long)len,
                 adv_tmo_name(timeout_ms, tn, sizeof(tn)),
                 (unsigned long)st->tx_max, msgpipe_errname(rc),
                 rc == MSGPIPE_ECLOSED ? " before the peer closed" : "");
    }
    return rc;
}

/* Send messages seq0 .. seq0+k-1 with one msgpipe_send_batch (laid out one
 * after another in buf); record and judge each message's fate.  Returns
 * the call's code. */
static int adv_send_batch(adv_stream *st, msgpipe *p, unsigned char *buf,
                          size_t seq0, const size_t *lens, size_t k,
                          int timeout_ms, int eclosed_ok)
{
    msgpipe_msg m[8];
    size_t i, off = 0, sent = (size_t)-1;
    int rc, good, oversize = 0;
    char tn[16];

    for (i = 0; i < k; i++) {
        adv_make(buf + off, st->id, (uint32_t)(seq0 + i), lens[i]);
        m[i].data = buf + off;
        m[i].len = lens[i];
        off += lens[i];
        if ((uint64_t)lens[i] > st->tx_max)
            oversize = 1;
    }
    rc = msgpipe_send_batch(p, m, k, &sent, timeout_ms);
    if (rc == MSGPIPE_OK)
        good = sent == k;
    else if (oversize)
        good = rc == MSGPIPE_EMSGSIZE && sent == 0;
    else if (rc == MSGPIPE_ETIMEDOUT)
        good = timeout_ms != ADV_INF && sent < k;
    else if (rc == MSGPIPE_ECLOSED)
        good = eclosed_ok && sent < k;
    else
        good = 0;
    for (i = 0; i < k; i++) {
        adv_sent *r = &st->sent[seq0 + i];
        r->len = (uint32_t)lens[i];
        r->tmo = timeout_ms;
        r->batch = 1;
        if (!good || sent > k)
            r->rc = rc;
        else if (i < sent)
            r->rc = MSGPIPE_OK;
        else if (rc == MSGPIPE_ETIMEDOUT)
            r->rc = i == sent ? MSGPIPE_ETIMEDOUT : ADV_NOT_SENT;
        else
            r->rc = rc;
    }
    st->n_sent = seq0 + k;
    if (!good && !st->sender_rc_bad) {
        st->sender_rc_bad = 1;
        snprintf(
            st->sender_why, sizeof(st->sender_why),
            "send_batch of seq %lu-%lu (timeout %s, max_message %lu) "
            "returned %s with %ld sent%s",
            (unsigned long)seq0, (unsigned long)(seq0 + k - 1),
            adv_tmo_name(timeout_ms, tn, sizeof(tn)), (unsigned long)st->tx_max,
            msgpipe_errname(rc), sent == (size_t)-1 ? -1L : (long)sent,
            rc == MSGPIPE_ECLOSED && !eclosed_ok ? " before the peer closed"
                                                 : "");
    }
    return rc;
}

/* ---- test_duplex_pipes_keep_the_delivery_rule -------------------------- */

typedef struct adv_end adv_end;

struct adv_end {
    const char *side; /* "server" or "client" */
    msgpipe *p;
    adv_stream *tx, *rx;
    adv_end *peer;
    uint32_t seed, role;
    int drain;       /* receive until ECLOSED (else stop at give_up_at) */
    int finite_only; /* no infinite send timeouts */
    int eclosed_ok;  /* the peer may close while this end still sends */
    int64_t stop_send_at, give_up_at; /* 0: never */
    unsigned rx_pause; /* percent of receives that first sleep 0-2 ms */
    volatile long send_done, closed;
    int rx_error; /* the receiver could not run (memory) */
    sup_thread *ts, *tr;
};

static void *adv_sender_main(void *arg)
{
    adv_end *e = (adv_end *)arg;
    adv_rng r = adv_rng_make(e->seed, e->role * 2 + 1);
    unsigned char *buf = (unsigned char *)malloc(2 * ADV_MAX_LEN);
    size_t seq;

    for (seq = 0; buf != NULL && seq < e->tx->planned; seq++) {
        size_t len;
        int tmo, rc;

        if (e->stop_send_at != 0 && sup_now_ms() >= e->stop_send_at)
            break;
        if (adv_chance(&r, 10) && seq + 2 <= e->tx->planned) {
            /* A batch of 2-8, at most 2 MiB in all; with a message
             * shorter than the header in it, without a timeout. */
            size_t lens[8], k, n = 2 + adv_below(&r, 7), total = 0;
            int shortmsg = 0;
            for (k = 0; k < n && seq + k < e->tx->planned; k++) {
                lens[k] = adv_pick_size(&r, e->tx, seq + k, e->finite_only);
                if (total + lens[k] > 2 * ADV_MAX_LEN)
                    break;
                total += lens[k];
                shortmsg |= lens[k] < ADV_HDR;
            }
            tmo = shortmsg ? ADV_INF : adv_timeout(&r, !e->finite_only);
            rc = adv_send_batch(e->tx, e->p, buf, seq, lens, k, tmo,
                                e->eclosed_ok);
            seq += k - 1;
            if (rc != MSGPIPE_OK && rc != MSGPIPE_ETIMEDOUT &&
                rc != MSGPIPE_EMSGSIZE)
                break;
            continue;
        }
        len = adv_pick_size(&r, e->tx, seq, e->finite_only);
        tmo = len < ADV_HDR ? ADV_INF : adv_timeout(&r, !e->finite_only);
        rc = adv_send_one(e->tx, e->p, buf, seq, len, tmo, e->eclosed_ok);
        if (rc != MSGPIPE_OK && rc != MSGPIPE_ETIMEDOUT &&
            rc != MSGPIPE_EMSGSIZE)
            break;
        if (adv_chance(&r, 10))
            sup_sleep_ms((int)adv_below(&r, 3));
    }
    if (buf == NULL) {
        e->tx->sender_rc_bad = 1;
        snprintf(e->tx->sender_why, sizeof(e->tx->sender_why), "out of memory");
    }
    free(buf);
    sup_atomic_set(&e->send_done, 1);
    return NULL;
}

static void *adv_receiver_main(void *arg)
{
    adv_end *e = (adv_end *)arg;
    adv_rx rx;
    adv_log *lg = &e->rx->rx;

    if (adv_rx_init(&rx, e->seed, e->role * 2 + 2) != 0) {
        e->rx_error = 1;
    } else {
        rx.id = e->rx->id;
        rx.max = e->rx->rx_max;
        rx.cut_ok = !e->rx->check_complete;
        rx.log = lg;
        for (;;) {
            int rc, tmo;

            if (!e->drain && e->give_up_at != 0 &&
                sup_now_ms() >= e->give_up_at) {
                lg->end_rc = 1;
                break;
            }
            if (adv_chance(&rx.rng, e->rx_pause))
                sup_sleep_ms((int)adv_below(&rx.rng, 3));
            tmo = adv_timeout(&rx.rng, e->drain);
            if (adv_chance(&rx.rng, 15))
                rc = adv_rx_poll(&rx, e->p, tmo);
            else
                rc = adv_rx_once(&rx, e->p, tmo);
            if (rc == MSGPIPE_ETIMEDOUT && !e->drain &&
                sup_atomic_get(&e->peer->send_done) && rx.announced == 0) {
                lg->end_rc = 1; /* the peer has finished; enough */
                break;
            }
            if (rc == MSGPIPE_ECLOSED) {
                lg->end_rc = rc;
                if (!e->eclosed_ok)
                    adv_log_bad(lg, "ECLOSED, although the peer closes only "
                                    "after this end");
                break;
            }
            if (rc != MSGPIPE_OK && rc != MSGPIPE_ETIMEDOUT &&
                rc != MSGPIPE_ENOBUFS && rc != MSGPIPE_EMSGSIZE) {
                lg->end_rc = rc;
                break;
            }
        }
        adv_rx_free(&rx);
    }
    /* This end closes once both its threads are done. */
    while (!sup_atomic_get(&e->send_done))
        sup_sleep_ms(1);
    msgpipe_close(e->p);
    e->p = NULL;
    sup_atomic_set(&e->closed, 1);
    return NULL;
}

typedef struct adv_scale {
    int pairs;       /* at most this many pipes per round */
    int messages;    /* at most this many messages per stream */
    int ff_clients;  /* fire-and-forget client threads */
    int ff_sessions; /* sessions per client thread */
    int contests;    /* concurrent-listen contests per round */
    int hang_ms;     /* a round that takes longer has hung */
    int window_ms;   /* random moments fall within this */
    int drain_ms;    /* see adv_ff.drain_ms */
} adv_scale;

static unsigned adv_off_mask;
#define ADV_OFF_EARLY 1u
#define ADV_OFF_EMSGSIZE 2u
#define ADV_OFF_FF 4u
#define ADV_OFF_LISTEN 8u

static void adv_fail_round(const char *test, uint32_t seed, const char *cfg,
                           const char *why)
{
    printf("FAILED %s seed %lu (MSGPIPE_ADV_SEED=%lu)\n  configuration: "
           "%s\n  %s\n",
           test, (unsigned long)seed, (unsigned long)seed, cfg, why);
    fflush(stdout);
}

/* Wait for a thread within the round's time, or report a hang and exit:
 * the stuck threads still use the pipes, so the process cannot go on. */
static void adv_join(sup_thread *t, int64_t deadline, const char *test,
                     uint32_t seed, const char *cfg, const char *what)
{
    int64_t left = deadline - sup_now_ms();
    char why[ADV_WHY];

    if (sup_thread_join_timeout(t, left > 0 ? (int)left : 0, NULL) == 0)
        return;
    snprintf(why, sizeof(why), "hang: %s did not finish in time", what);
    adv_fail_round(test, seed, cfg, why);
    exit(3);
}

static int adv_duplex_round(uint32_t seed, const adv_scale *sc)
{
    static const char *test = "duplex";
    static const unsigned pauses[] = {0, 5, 25, 60};
    adv_rng r = adv_rng_make(seed, 0);
    int npairs = 1 + (int)adv_below(&r, (uint32_t)sc->pairs);
    int small_srv = !(adv_off_mask & ADV_OFF_EMSGSIZE) && adv_chance(&r, 25);
    int early = !(adv_off_mask & ADV_OFF_EARLY);
    uint64_t srv_max = small_srv ? ADV_SMALL_MAX + adv_below(&r, 512 * 1024)
                                 : MSGPIPE_DEFAULT_MAX_MESSAGE;
    adv_end *ends = (adv_end *)calloc((size_t)npairs * 2, sizeof(*ends));
    adv_stream *st = (adv_stream *)calloc((size_t)npairs * 2, sizeof(*st));
    msgpipe_server *srv = NULL;
    msgpipe_options so;
    char name[96], cfg[ADV_WHY], why[ADV_WHY];
    int64_t t0, deadline;
    int i, failed = 0, rc;
    size_t n;
    adv_stats tot;

    memset(&tot, 0, sizeof(tot));
    assert_non_null(ends);
    assert_non_null(st);
    sup_name(name, sizeof(name), "adv");
    msgpipe_options_init(&so);
    so.max_message = srv_max;
    rc = msgpipe_listen(name, &so, &srv);
    if (rc != MSGPIPE_OK) {
        snprintf(why, sizeof(why), "listen: %s", msgpipe_errname(rc));
        adv_fail_round(test, seed, "-", why);
        return -1;
    }
    snprintf(cfg, sizeof(cfg), "%d pipe(s), server max_message %lu%s", npairs,
             (unsigned long)(small_srv ? srv_max : 0),
             small_srv ? "" : " (default)");
    t0 = sup_now_ms();
    deadline = t0 + sc->hang_ms;
    for (i = 0; i < npairs; i++) {
        adv_end *s = &ends[2 * i], *c = &ends[2 * i + 1], *a, *b;
        adv_stream *s2c = &st[2 * i], *c2s = &st[2 * i + 1];
        int both_stop = adv_chance(&r, 20);
        int small_cli =
            !(adv_off_mask & ADV_OFF_EMSGSIZE) && adv_chance(&r, 20);
        msgpipe_options co;

        assert_int_equal(
            adv_stream_init(s2c, (uint32_t)(0x100 + 2 * i),
                            adv_below(&r, (uint32_t)sc->messages + 1)),
            0);
        assert_int_equal(
            adv_stream_init(c2s, (uint32_t)(0x101 + 2 * i),
                            adv_below(&r, (uint32_t)sc->messages + 1)),
            0);
        msgpipe_options_init(&co);
        if (small_cli)
            co.max_message = ADV_SMALL_MAX + adv_below(&r, 512 * 1024);
        /* When both ends may stop receiving, a close must not wait 5 s
         * for a peer that does not read; a short linger may cut the
         * client's last message (as documented), so its stream is not
         * checked for completeness. */
        if (both_stop)
            co.linger_ms = 100;
        s2c->tx_max = srv_max;
        c2s->rx_max = srv_max;
        if (small_cli) {
            s2c->rx_max = co.max_message;
            c2s->tx_max = co.max_message;
        }
        if (both_stop)
            c2s->check_complete = 0;
        s->side = "server";
        c->side = "client";
        s->tx = c->rx = s2c;
        c->tx = s->rx = c2s;
        s->peer = c;
        c->peer = s;
        s->seed = c->seed = seed;
        s->rx_pause = pauses[adv_below(&r, 4)];
        c->rx_pause = pauses[adv_below(&r, 4)];
        s->role = (uint32_t)(10 + 2 * i);
        c->role = (uint32_t)(11 + 2 * i);
        /* a: the end that stops at a random moment and closes first. */
        a = adv_chance(&r, 50) ? s : c;
        b = a == s ? c : s;
        a->drain = 0;
        a->stop_send_at = adv_chance(&r, 50)
                              ? t0 + adv_below(&r, (uint32_t)sc->window_ms)
                              : 0;
        a->give_up_at = t0 + adv_below(&r, (uint32_t)sc->window_ms);
        a->eclosed_ok = both_stop;
        b->drain = !both_stop;
        b->eclosed_ok = 1;
        b->stop_send_at = adv_chance(&r, 30)
                              ? t0 + adv_below(&r, (uint32_t)sc->window_ms)
                              : 0;
        if (both_stop) {
            a->finite_only = b->finite_only = 1;
            b->give_up_at = t0 + adv_below(&r, (uint32_t)sc->window_ms);
        }
        n = strlen(cfg);
        snprintf(cfg + n, sizeof(cfg) - n,
                 "; pipe %d: %s stops first%s, client max_message %lu%s, "
                 "%lu/%lu messages s->c/c->s",
                 i, a->side, both_stop ? ", both stop (finite timeouts)" : "",
                 (unsigned long)(small_cli ? co.max_message : 0),
                 small_cli ? "" : " (default)", (unsigned long)s2c->planned,
                 (unsigned long)c2s->planned);
        rc = msgpipe_connect(name, &co, SUP_T, &c->p);
        if (rc != MSGPIPE_OK) {
            snprintf(why, sizeof(why), "pipe %d: connect: %s", i,
                     msgpipe_errname(rc));
            failed = 1;
            break;
        }
        if (early) {
            /* The header allows a client to send and receive before the
             * server has accepted it. */
            c->ts = sup_thread_start(adv_sender_main, c);
            c->tr = sup_thread_start(adv_receiver_main, c);
            sup_sleep_ms((int)adv_below(&r, 3));
        }
        rc = msgpipe_accept(srv, SUP_T, &s->p);
        if (rc != MSGPIPE_OK) {
            snprintf(why, sizeof(why), "pipe %d: accept: %s", i,
                     msgpipe_errname(rc));
            failed = 1;
            if (c->ts == NULL)
                msgpipe_close(c->p);
            c->p = NULL;
            break;
        }
        s->ts = sup_thread_start(adv_sender_main, s);
        s->tr = sup_thread_start(adv_receiver_main, s);
        if (!early) {
            /* With the FIFO transport this takes the acceptance, so that
             * the client's threads start on a fully connected pipe. */
            msgpipe_peer_info pi;
            (void)msgpipe_peer(c->p, &pi);
            c->ts = sup_thread_start(adv_sender_main, c);
            c->tr = sup_thread_start(adv_receiver_main, c);
        }
    }
    /* Clients not accepted (after a failure) see ECLOSED. */
    msgpipe_server_close(srv);
    for (i = 0; i < 2 * npairs; i++) {
        if (ends[i].ts != NULL) {
            adv_join(ends[i].ts, deadline, test, seed, cfg, "a sender");
            adv_join(ends[i].tr, deadline, test, seed, cfg, "a receiver");
        }
    }
    if (failed) {
        adv_fail_round(test, seed, cfg, why);
    } else {
        for (i = 0; i < 2 * npairs; i++) {
            if (ends[i].rx_error) {
                adv_fail_round(test, seed, cfg, "receiver: out of memory");
                failed = 1;
            }
            adv_count(&st[i], &tot);
            if (adv_check(&st[i], why, sizeof(why)) != 0) {
                char w2[2 * ADV_WHY];
                snprintf(w2, sizeof(w2), "%s -> %s: %s", ends[i].side,
                         ends[i].peer->side, why);
                adv_fail_round(test, seed, cfg, w2);
                failed = 1;
            }
        }
    }
    if (!failed)
        printf("seed %lu duplex: %d pipe(s), %ld OK (%.1f MiB), %ld timed "
               "out (%ld of them arrived), %ld received, %ld discarded, %ld "
               "ENOBUFS, %ld ms\n",
               (unsigned long)seed, npairs, tot.ok, tot.mbytes, tot.timedout,
               tot.arrived_timedout, tot.arrived, tot.discards, tot.enobufs,
               (long)(sup_now_ms() - t0));
    fflush(stdout);
    for (i = 0; i < 2 * npairs; i++)
        adv_stream_free(&st[i]);
    free(st);
    free(ends);
    return failed ? -1 : 0;
}

/* ---- test_concurrent_listens_have_one_winner --------------------------- */

typedef struct adv_contest {
    const char *name;
    const msgpipe_options *opt;
    volatile long ready, go;
    int n;
    int rc[4];
    msgpipe_server *srv[4];
} adv_contest;

typedef struct adv_contender {
    adv_contest *c;
    int i;
} adv_contender;

static void *adv_contender_main(void *arg)
{
    adv_contender *me = (adv_contender *)arg;
    adv_contest *c = me->c;

    sup_atomic_add(&c->ready, 1);
    while (!sup_atomic_get(&c->go))
        ; /* spin: start as close together as possible */
    c->rc[me->i] = msgpipe_listen(c->name, c->opt, &c->srv[me->i]);
    return NULL;
}

/* n threads listen on one name at once.  Returns the winner's server (the
 * thread that made it has exited), NULL with why if there was not exactly
 * one winner. */
static msgpipe_server *adv_contest_run(const char *name,
                                       const msgpipe_options *opt, int n,
                                       char *why, size_t cap)
{
    adv_contest c;
    adv_contender me[4];
    sup_thread *t[4];
    msgpipe_server *win = NULL;
    int i, wins = 0;

    memset(&c, 0, sizeof(c));
    c.name = name;
    c.opt = opt;
    c.n = n;
    for (i = 0; i < n; i++) {
        me[i].c = &c;
        me[i].i = i;
        t[i] = sup_thread_start(adv_contender_main, &me[i]);
    }
    while (sup_atomic_get(&c.ready) < n)
        sup_sleep_ms(0);
    sup_atomic_set(&c.go, 1);
    for (i = 0; i < n; i++)
        sup_thread_join(t[i]);
    why[0] = '\0';
    for (i = 0; i < n; i++) {
        if (c.rc[i] == MSGPIPE_OK) {
            wins++;
            if (win == NULL)
                win = c.srv[i];
        } else if (c.rc[i] != MSGPIPE_EADDRINUSE && why[0] == '\0') {
            snprintf(why, cap, "listen %d of %d on %s returned %s", i + 1, n,
                     name, msgpipe_errname(c.rc[i]));
        }
    }
    if (wins != 1 && why[0] == '\0')
        snprintf(why, cap, "%d of %d concurrent listens on %s returned OK",
                 wins, n, name);
    if (why[0] != '\0') {
        for (i = 0; i < n; i++)
            if (c.rc[i] == MSGPIPE_OK)
                msgpipe_server_close(c.srv[i]);
        return NULL;
    }
    return win;
}

static int adv_listen_round(uint32_t seed, const adv_scale *sc)
{
    adv_rng r = adv_rng_make(seed, 1);
    char name[96], why[ADV_WHY], cfg[64];
    int k, contests = 1 + (int)adv_below(&r, (uint32_t)sc->contests);
    int multi = 0, phantom = 0;
    int64_t t0 = sup_now_ms();

    /* Every contest runs; the first failure of each kind is printed. */
    for (k = 0; k < contests; k++) {
        int n = 2 + (int)adv_below(&r, 3), rc;
        msgpipe_server *srv;
        msgpipe *p = NULL;

        snprintf(cfg, sizeof(cfg), "contest %d of %d, %d threads", k + 1,
                 contests, n);
        sup_name(name, sizeof(name), "advl");
        srv = adv_contest_run(name, NULL, n, why, sizeof(why));
        if (srv == NULL) {
            if (multi++ == 0)
                adv_fail_round("listen", seed, cfg, why);
            continue;
        }
        /* The losers must leave nothing behind at the winner. */
        rc = msgpipe_accept(srv, 0, &p);
        if (rc != MSGPIPE_ETIMEDOUT) {
            snprintf(why, sizeof(why),
                     "accept(0) on the winner, with no client: %s%s",
                     msgpipe_errname(rc),
                     rc == MSGPIPE_OK ? " (a pipe no client made)" : "");
            if (phantom++ == 0)
                adv_fail_round("listen", seed, cfg, why);
            if (rc == MSGPIPE_OK)
                msgpipe_close(p);
        }
        msgpipe_server_close(srv);
    }
    if (multi || phantom)
        printf("  seed %lu: %d of %d contests without exactly one winner, "
               "%d with something left at the winner\n",
               (unsigned long)seed, multi, contests, phantom);
    else
        printf("seed %lu listen: %d contests, one winner in each, %ld ms\n",
               (unsigned long)seed, contests, (long)(sup_now_ms() - t0));
    fflush(stdout);
    return multi || phantom ? -1 : 0;
}

/* ---- test_fire_and_forget_clients_deliver_every_message ---------------- */

typedef struct adv_ff adv_ff;

typedef struct adv_ff_client {
    adv_ff *ff;
    int idx;
    adv_stream *st; /* ff->sessions of them */
    char why[ADV_WHY];
    int bad;
} adv_ff_client;

typedef struct adv_ff_pipe {
    adv_log log;
    uint32_t id; /* learnt from the first message; 0: none came */
} adv_ff_pipe;

struct adv_ff {
    const char *name;
    msgpipe_server *srv;
    uint32_t seed;
    int sessions;
    int drain_ms; /* accept's wait once every client has closed */
    volatile long clients_left;
    /* Written by the acceptor threads only, one after another. */
    adv_ff_pipe *pipes;
    size_t npipes, cap;
    int drained;
    int acc_bad;
    char acc_why[ADV_WHY];
    uint32_t chain; /* acceptor threads started */
};

static void *adv_ff_client_main(void *arg)
{
    adv_ff_client *cl = (adv_ff_client *)arg;
    adv_ff *ff = cl->ff;
    adv_rng r = adv_rng_make(ff->seed, (uint32_t)(1000 + cl->idx));
    unsigned char *buf = (unsigned char *)malloc(ADV_MAX_LEN);
    int s;

    for (s = 0; buf != NULL && s < ff->sessions && !cl->bad; s++) {
        adv_stream *st = &cl->st[s];
        msgpipe *p = NULL;
        size_t seq;
        int rc = msgpipe_connect(ff->name, NULL, SUP_T, &p);

        if (rc != MSGPIPE_OK) {
            cl->bad = 1;
            snprintf(cl->why, sizeof(cl->why),
                     "client %d session %d: connect: %s", cl->idx, s,
                     msgpipe_errname(rc));
            break;
        }
        for (seq = 0; seq < st->planned; seq++) {
            /* Mostly small; the first identifies the session, so at least
             * the header. */
            size_t len = adv_chance(&r, 85) ? ADV_HDR + adv_below(&r, 48)
                                            : adv_size(&r, ADV_MAX_LEN);
            if (len < ADV_HDR)
                len = ADV_HDR;
            rc = adv_send_one(st, p, buf, seq, len, adv_timeout(&r, 1), 0);
            if (rc != MSGPIPE_OK && rc != MSGPIPE_ETIMEDOUT)
                break;
        }
        if (adv_chance(&r, 10))
            sup_sleep_ms((int)adv_below(&r, 3));
        msgpipe_close(p);
    }
    free(buf);
    sup_atomic_add(&ff->clients_left, -1);
    return NULL;
}

/* One acceptor in the chain: accepts a few clients (with random timeouts)
 * and receives each one's messages until ECLOSED, then exits, leaving the
 * next accept to a new thread. */
static void *adv_ff_acceptor_main(void *arg)
{
    adv_ff *ff = (adv_ff *)arg;
    adv_rng r = adv_rng_make(ff->seed, 2000 + ff->chain);
    int k, quota = 1 + (int)adv_below(&r, 5);
    adv_rx rx;

    if (adv_rx_init(&rx, ff->seed, 3000 + ff->chain) != 0) {
        ff->acc_bad = 1;
        snprintf(ff->acc_why, sizeof(ff->acc_why), "out of memory");
        return NULL;
    }
    for (k = 0; k < quota && !ff->acc_bad; k++) {
        msgpipe *p = NULL;
        int done = sup_atomic_get(&ff->clients_left) == 0;
        int tmo = done                 ? ff->drain_ms
                  : adv_chance(&r, 10) ? 100
                                       : adv_timeout(&r, 0);
        int rc;
        int64_t until;
        adv_ff_pipe *fp;

        if (adv_chance(&r, 20)) {
            /* POLLIN on a server: accept(0) returns at once. */
            msgpipe_pollitem it;
            memset(&it, 0, sizeof(it));
            it.server = ff->srv;
            it.events = MSGPIPE_POLLIN;
            rc = msgpipe_poll(&it, 1, tmo);
            if (rc == 1 && (it.revents & MSGPIPE_POLLIN)) {
                rc = msgpipe_accept(ff->srv, 0, &p);
                if (rc == MSGPIPE_ETIMEDOUT) {
                    ff->acc_bad = 1;
                    snprintf(ff->acc_why, sizeof(ff->acc_why),
                             "poll reported a client, then accept(0) timed "
                             "out");
                    break;
                }
            } else if (rc != MSGPIPE_ETIMEDOUT) {
                ff->acc_bad = 1;
                snprintf(ff->acc_why, sizeof(ff->acc_why),
                         "poll of the server returned %d (%s)", rc,
                         msgpipe_errname(rc));
                break;
            }
        } else {
            rc = msgpipe_accept(ff->srv, tmo, &p);
        }

        if (rc == MSGPIPE_ETIMEDOUT) {
            if (done) {
                ff->drained = 1;
                break;
            }
            if (adv_chance(&r, 30))
                break; /* leave, with the accept's wait perhaps pending */
            continue;
        }
        if (rc != MSGPIPE_OK) {
            ff->acc_bad = 1;
            snprintf(ff->acc_why, sizeof(ff->acc_why), "accept: %s",
                     msgpipe_errname(rc));
            break;
        }
        if (ff->npipes == ff->cap) {
            size_t cap = ff->cap ? ff->cap * 2 : 64;
            adv_ff_pipe *np =
                (adv_ff_pipe *)realloc(ff->pipes, cap * sizeof(*np));
            if (np == NULL) {
                ff->acc_bad = 1;
                msgpipe_close(p);
                break;
            }
            ff->pipes = np;
            ff->cap = cap;
        }
        fp = &ff->pipes[ff->npipes++];
        memset(fp, 0, sizeof(*fp));
        fp->log.end_rc = 1;
        rx.id = 0;
        rx.max = MSGPIPE_DEFAULT_MAX_MESSAGE;
        rx.announced = 0;
        rx.log = &fp->log;
        until = sup_now_ms() + SUP_T_LONG;
        for (;;) {
            rc = adv_rx_once(&rx, p, adv_timeout(&r, 1));
            if (rc == MSGPIPE_ETIMEDOUT && sup_now_ms() > until) {
                adv_log_bad(&fp->log, "no ECLOSED %d ms after accept",
                            SUP_T_LONG);
                rc = MSGPIPE_EIO;
            }
            if (rc != MSGPIPE_OK && rc != MSGPIPE_ETIMEDOUT &&
                rc != MSGPIPE_ENOBUFS) {
                fp->log.end_rc = rc;
                break;
            }
        }
        fp->id = rx.id;
        msgpipe_close(p);
    }
    adv_rx_free(&rx);
    return NULL;
}

static int adv_ff_round(uint32_t seed, const adv_scale *sc)
{
    static const char *test = "fire-and-forget";
    static const int pendings[] = {0, 1, 4, 63};
    adv_rng r = adv_rng_make(seed, 2);
    int nclients = 1 + (int)adv_below(&r, (uint32_t)sc->ff_clients);
    adv_ff ff;
    adv_ff_client *cl;
    sup_thread **tc;
    msgpipe_options so;
    char name[96], cfg[160], why[ADV_WHY];
    int i, s, failed = 0;
    int64_t t0 = sup_now_ms(), deadline = t0 + sc->hang_ms;
    size_t j;
    adv_stats tot;
    long empty = 0, sessions = 0;

    memset(&tot, 0, sizeof(tot));
    memset(&ff, 0, sizeof(ff));
    ff.seed = seed;
    ff.sessions = 1 + (int)adv_below(&r, (uint32_t)sc->ff_sessions);
    ff.drain_ms = sc->drain_ms;
    ff.name = name;
    sup_name(name, sizeof(name), "advf");
    msgpipe_options_init(&so);
    so.pending = pendings[adv_below(&r, 4)];
    snprintf(cfg, sizeof(cfg), "%d clients x %d sessions, pending %d", nclients,
             ff.sessions, so.pending);
    /* The server is made by a thread that exits at once (a contest of
     * one). */
    if (adv_off_mask & ADV_OFF_LISTEN) {
        int rc = msgpipe_listen(name, &so, &ff.srv);
        if (rc != MSGPIPE_OK)
            snprintf(why, sizeof(why), "listen: %s", msgpipe_errname(rc));
    } else {
        ff.srv = adv_contest_run(name, &so, 1, why, sizeof(why));
    }
    if (ff.srv == NULL) {
        adv_fail_round(test, seed, cfg, why);
        return -1;
    }
    cl = (adv_ff_client *)calloc((size_t)nclients, sizeof(*cl));
    tc = (sup_thread **)calloc((size_t)nclients, sizeof(*tc));
    assert_non_null(cl);
    assert_non_null(tc);
    ff.clients_left = nclients;
    for (i = 0; i < nclients; i++) {
        cl[i].ff = &ff;
        cl[i].idx = i;
        cl[i].st =
            (adv_stream *)calloc((size_t)ff.sessions, sizeof(adv_stream));
        assert_non_null(cl[i].st);
        for (s = 0; s < ff.sessions; s++)
            assert_int_equal(adv_stream_init(&cl[i].st[s],
                                             (uint32_t)(0x10000 | i << 12 | s),
                                             adv_below(&r, 4)),
                             0);
    }
    for (i = 0; i < nclients; i++)
        tc[i] = sup_thread_start(adv_ff_client_main, &cl[i]);
    while (!ff.drained && !ff.acc_bad) {
        sup_thread *ta = sup_thread_start(adv_ff_acceptor_main, &ff);
        adv_join(ta, deadline, test, seed, cfg, "an acceptor");
        ff.chain++;
    }
    for (i = 0; i < nclients; i++)
        adv_join(tc[i], deadline, test, seed, cfg, "a client");
    msgpipe_server_close(ff.srv);
    if (ff.acc_bad) {
        adv_fail_round(test, seed, cfg, ff.acc_why);
        failed = 1;
    }
    if (!failed && ff.npipes > (size_t)nclients * (size_t)ff.sessions) {
        snprintf(why, sizeof(why),
                 "%lu pipes accepted, but the clients made only %ld "
                 "connections",
                 (unsigned long)ff.npipes, (long)nclients * ff.sessions);
        adv_fail_round(test, seed, cfg, why);
        failed = 1;
    }
    /* Give each pipe's log to its session. */
    for (j = 0; j < ff.npipes && !failed; j++) {
        adv_ff_pipe *fp = &ff.pipes[j];
        uint32_t id = fp->id;
        int ci = (int)((id >> 12) & 0xf), si = (int)(id & 0xfff);
        adv_stream *st;

        if (fp->log.nbad) {
            snprintf(why, sizeof(why), "accepted pipe %lu: %s",
                     (unsigned long)j, fp->log.bad);
            adv_fail_round(test, seed, cfg, why);
            failed = 1;
            break;
        }
        if (fp->log.end_rc != MSGPIPE_ECLOSED) {
            snprintf(why, sizeof(why), "accepted pipe %lu ended with %s",
                     (unsigned long)j, msgpipe_errname(fp->log.end_rc));
            adv_fail_round(test, seed, cfg, why);
            failed = 1;
            break;
        }
        if (id == 0) {
            empty++;
            continue;
        }
        if ((id >> 16) != 1 || ci >= nclients || si >= ff.sessions) {
            snprintf(why, sizeof(why), "accepted pipe %lu: unknown stream %lx",
                     (unsigned long)j, (unsigned long)id);
            adv_fail_round(test, seed, cfg, why);
            failed = 1;
            break;
        }
        st = &cl[ci].st[si];
        if (st->rx.end_rc != 1) {
            snprintf(why, sizeof(why), "stream %lx arrived on two pipes",
                     (unsigned long)id);
            adv_fail_round(test, seed, cfg, why);
            failed = 1;
            break;
        }
        st->rx = fp->log; /* the stream owns the events now */
        fp->log.ev = NULL;
    }
    for (i = 0; i < nclients && !failed; i++) {
        if (cl[i].bad) {
            adv_fail_round(test, seed, cfg, cl[i].why);
            failed = 1;
            break;
        }
        for (s = 0; s < ff.sessions; s++) {
            adv_stream *st = &cl[i].st[s];
            sessions++;
            if (st->rx.end_rc == 1)
                st->rx.end_rc = MSGPIPE_ECLOSED; /* empty, or never seen */
            adv_count(st, &tot);
            if (adv_check(st, why, sizeof(why)) != 0) {
                char w2[2 * ADV_WHY];
                snprintf(w2, sizeof(w2), "client %d session %d: %s", i, s, why);
                adv_fail_round(test, seed, cfg, w2);
                failed = 1;
                break;
            }
        }
    }
    if (!failed)
        printf("seed %lu fire-and-forget: %s; %ld sessions, %lu pipes "
               "accepted (%ld empty) by %lu threads, %ld OK, %ld timed out, "
               "%ld received, %ld ms\n",
               (unsigned long)seed, cfg, sessions, (unsigned long)ff.npipes,
               empty, (unsigned long)ff.chain, tot.ok, tot.timedout,
               tot.arrived, (long)(sup_now_ms() - t0));
    fflush(stdout);
    for (j = 0; j < ff.npipes; j++)
        free(ff.pipes[j].log.ev);
    free(ff.pipes);
    for (i = 0; i < nclients; i++) {
        for (s = 0; s < ff.sessions; s++)
            adv_stream_free(&cl[i].st[s]);
        free(cl[i].st);
    }
    free(cl);
    free(tc);
    return failed ? -1 : 0;
}

/* ---- Seeds, scale and the tests ---------------------------------------- */

#if defined(__SANITIZE_THREAD__)
#define ADV_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define ADV_TSAN 1
#endif
#endif
#ifndef ADV_TSAN
#define ADV_TSAN 0
#endif

static void adv_scale_get(adv_scale *sc, int *nseeds)
{
    const char *off = getenv("MSGPIPE_ADV_OFF");

    adv_off_mask = 0;
    if (off != NULL) {
        if (strstr(off, "early"))
            adv_off_mask |= ADV_OFF_EARLY;
        if (strstr(off, "emsgsize"))
            adv_off_mask |= ADV_OFF_EMSGSIZE;
        if (strstr(off, "ff"))
            adv_off_mask |= ADV_OFF_FF;
        if (strstr(off, "listen"))
            adv_off_mask |= ADV_OFF_LISTEN;
    }
    sc->pairs = 3;
    sc->messages = 120;
    sc->ff_clients = 4;
    sc->ff_sessions = 40;
    sc->contests = 40;
    sc->hang_ms = 60000;
    sc->window_ms = 300;
    sc->drain_ms = 200;
    *nseeds = 12;
    if (getenv("MSGPIPE_LOAD_MESSAGES") != NULL) {
        /* The suite's valgrind run: everything is 20-50 times slower. */
        sc->pairs = 2;
        sc->messages = 25;
        sc->ff_clients = 2;
        sc->ff_sessions = 8;
        sc->contests = 4;
        sc->window_ms = 1500;
        sc->drain_ms = 1000;
        *nseeds = 3;
    } else if (ADV_TSAN || sup_is_wine()) {
        sc->messages = 60;
        sc->ff_sessions = 20;
        sc->contests = 10;
        sc->window_ms = 600;
        sc->drain_ms = 500;
        *nseeds = 6;
    }
}

/* The fixed seeds of the suite's run. */
static const uint32_t adv_seeds[] = {1,    2,     3,      17,   42,    99,
                                     1234, 31337, 271828, 8675, 65535, 4242};

typedef int (*adv_round_fn)(uint32_t seed, const adv_scale *sc);

static uint32_t adv_mix(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
}

static void adv_run(const char *test, adv_round_fn round)
{
    adv_scale sc;
    int nseeds, i, failures = 0;
    long seconds = sup_env_long("MSGPIPE_ADV_SECONDS", 0);
    long one = sup_env_long("MSGPIPE_ADV_SEED", -1);

    adv_pool_make();
    adv_scale_get(&sc, &nseeds);
    if (one >= 0) {
        printf("%s: seed %lu (MSGPIPE_ADV_SEED)\n", test, (unsigned long)one);
        fflush(stdout);
        failures = round((uint32_t)one, &sc) != 0;
    } else if (seconds > 0) {
        /* A third of the time for each of the three tests. */
        int64_t end = sup_now_ms() + (seconds * 1000 + 2) / 3;
        uint32_t seed = adv_mix((uint32_t)sup_now_ms() ^
                                (uint32_t)sup_getpid() * 2654435761u);
        long rounds = 0;
        printf("%s: random seeds for %ld s\n", test, (seconds + 2) / 3);
        fflush(stdout);
        while (sup_now_ms() < end) {
            seed = adv_mix(seed + 1);
            if (round(seed, &sc) != 0)
                failures++;
            rounds++;
        }
        printf("%s: %ld rounds, %d failed\n", test, rounds, failures);
    } else {
        printf("%s: %d fixed seeds\n", test, nseeds);
        fflush(stdout);
        for (i = 0; i < nseeds; i++)
            if (round(adv_seeds[i], &sc) != 0)
                failures++;
    }
    fflush(stdout);
    if (failures > 0)
        fail_msg("%s: %d round(s) failed (seeds above)", test, failures);
}

static void test_duplex_pipes_keep_the_delivery_rule(void **state)
{
    (void)state;
    adv_run("duplex", adv_duplex_round);
}

static void test_fire_and_forget_clients_deliver_every_message(void **state)
{
    (void)state;
    if (adv_off_mask & ADV_OFF_FF)
        SUP_SKIP("MSGPIPE_ADV_OFF has ff");
    adv_run("fire-and-forget", adv_ff_round);
}

static void test_concurrent_listens_have_one_winner(void **state)
{
    (void)state;
    if (adv_off_mask & ADV_OFF_LISTEN)
        SUP_SKIP("MSGPIPE_ADV_OFF has listen");
    adv_run("listen", adv_listen_round);
}

int main(int argc, char **argv)
{
    const sup_test tests[] = {
        SUP_TEST(1, test_duplex_pipes_keep_the_delivery_rule),
        SUP_TEST(1, test_fire_and_forget_clients_deliver_every_message),
        SUP_TEST(1, test_concurrent_listens_have_one_winner),
    };
    adv_scale sc;
    int nseeds;

    sup_init(argc, argv);
    adv_scale_get(&sc, &nseeds); /* reads MSGPIPE_ADV_OFF */
    return sup_finish(SUP_RUN("adversarial", tests));
}
