/*
 * test_pipe.c - the data path: a server and a client in one process, the
 * peer in a thread.  Messages arrive whole, in order, with exact bytes;
 * small buffers, oversized messages and closed peers give their codes.
 */
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef _WIN32
#include <unistd.h>
#endif

#define KiB ((size_t)1024)
#define MiB ((size_t)1024 * 1024)

/* ---- Round trips ------------------------------------------------------- */

/* The client sends a pattern of `size` bytes; an echo thread on the server
 * end sends it back; the client receives it into an exact-size buffer. */
static void round_trip(size_t size)
{
    sup_pair pr;
    sup_echo *echo;
    unsigned char *out, *in;
    size_t len = (size_t)-1;
    int end_rc;

    out = (unsigned char *)malloc(size + 1);
    in = (unsigned char *)malloc(size + 1);
    assert_non_null(out);
    assert_non_null(in);
    sup_fill(out, size, (uint32_t)size);
    memset(in, 0, size + 1);

    sup_pair_open(&pr, "pipe", NULL, NULL);
    echo = sup_echo_start(pr.s);
    assert_rc(msgpipe_send(pr.c, out, size, SUP_T_LONG), MSGPIPE_OK);
    assert_rc(msgpipe_recv(pr.c, in, size, &len, SUP_T_LONG), MSGPIPE_OK);
    assert_int_equal(len, size);
    assert_pattern(in, size, (uint32_t)size);

    msgpipe_close(pr.c);
    pr.c = NULL;
    assert_int_equal(sup_echo_join(echo, &end_rc), 1);
    assert_rc(end_rc, MSGPIPE_ECLOSED);
    sup_pair_close(&pr);
    free(out);
    free(in);
}

static void test_round_trip_0_bytes(void **state)
{
    (void)state;
    round_trip(0);
}

static void test_round_trip_1_byte(void **state)
{
    (void)state;
    round_trip(1);
}

static void test_round_trip_4095_bytes(void **state)
{
    (void)state;
    round_trip(4095);
}

static void test_round_trip_4096_bytes(void **state)
{
    (void)state;
    round_trip(4096);
}

static void test_round_trip_64_kib(void **state)
{
    (void)state;
    round_trip(64 * KiB);
}

static void test_round_trip_1_mib(void **state)
{
    (void)state;
    round_trip(MiB);
}

static void test_round_trip_16_mib(void **state)
{
    (void)state;
    round_trip(16 * MiB);
}

/* ---- Ordering ---------------------------------------------------------- */

#define ORDER_N 10000

/* Message i: 4-byte sequence number, then (i % 97) pattern bytes. */
static size_t order_len(uint32_t i)
{
    return 4 + i % 97;
}

typedef struct {
    msgpipe *p;
    int n;
    int rc;
    int sent;
    int close_after;
} sender_ctx;

static void *sender_main(void *arg)
{
    sender_ctx *s = (sender_ctx *)arg;
    unsigned char buf[4 + 200];
    uint32_t i;

    s->rc = MSGPIPE_OK;
    for (i = 0; i < (uint32_t)s->n; i++) {
        size_t len = order_len(i);
        sup_put32(buf, i);
        sup_fill(buf + 4, len - 4, i);
        s->rc = msgpipe_send(s->p, buf, len, SUP_T_LONG);
        if (s->rc != MSGPIPE_OK)
            break;
        s->sent++;
    }
    if (s->close_after)
        msgpipe_close(s->p);
    return NULL;
}

/* Receive message `i` as sent by sender_main and check it exactly. */
static void recv_ordered(msgpipe *p, uint32_t i)
{
    unsigned char buf[4 + 200];
    size_t len = 0;
    int rc = msgpipe_recv(p, buf, sizeof(buf), &len, SUP_T_LONG);
    if (rc != MSGPIPE_OK) {
        print_error("message %lu: recv returned %s\n", (unsigned long)i,
                    msgpipe_errname(rc));
        fail();
    }
    if (len != order_len(i) || sup_get32(buf) != i) {
        print_error("expected message %lu (%lu bytes), got seq %lu (%lu "
                    "bytes)\n",
                    (unsigned long)i, (unsigned long)order_len(i),
                    (unsigned long)sup_get32(buf), (unsigned long)len);
        fail();
    }
    assert_pattern(buf + 4, len - 4, i);
}

static void test_10000_messages_arrive_in_order(void **state)
{
    sup_pair pr;
    sender_ctx *s = (sender_ctx *)calloc(1, sizeof(*s));
    sup_thread *t;
    uint32_t i;
    size_t len;
    (void)state;

    assert_non_null(s);
    sup_pair_open(&pr, "pipe", NULL, NULL);
    s->p = pr.c;
    s->n = ORDER_N;
    t = sup_thread_start(sender_main, s);
    for (i = 0; i < ORDER_N; i++)
        recv_ordered(pr.s, i);
    sup_thread_join(t);
    assert_rc(s->rc, MSGPIPE_OK);
    /* Nothing more: no duplicate, no split. */
    assert_rc(msgpipe_recv(pr.s, NULL, 0, &len, 100), MSGPIPE_ETIMEDOUT);
    sup_pair_close(&pr);
    free(s);
}

/* ---- recv_alloc -------------------------------------------------------- */

static void test_recv_alloc_gives_exact_length_and_trailing_zero(void **s)
{
    sup_pair pr;
    void *m = NULL;
    size_t len = 0;
    unsigned char big[5000];
    (void)s;

    sup_pair_open(&pr, "pipe", NULL, NULL);
    assert_rc(msgpipe_send(pr.c, "abc", 3, SUP_T), MSGPIPE_OK);
    sup_fill(big, sizeof(big), 7);
    big[sizeof(big) - 1] = 0xff; /* not a terminator of its own */
    assert_rc(msgpipe_send(pr.c, big, sizeof(big), SUP_T), MSGPIPE_OK);

    assert_rc(msgpipe_recv_alloc(pr.s, &m, &len, SUP_T), MSGPIPE_OK);
    assert_non_null(m);
    assert_int_equal(len, 3);
    assert_memory_equal(m, "abc", 3);
    assert_int_equal(((unsigned char *)m)[3], 0);
    assert_string_equal((char *)m, "abc");
    msgpipe_free(m);

    assert_rc(msgpipe_recv_alloc(pr.s, &m, &len, SUP_T), MSGPIPE_OK);
    assert_non_null(m);
    assert_int_equal(len, sizeof(big));
    assert_memory_equal(m, big, sizeof(big));
    assert_int_equal(((unsigned char *)m)[sizeof(big)], 0);
    msgpipe_free(m);
    sup_pair_close(&pr);
}

static void test_recv_alloc_empty_message_gives_non_null_buffer(void **s)
{
    sup_pair pr;
    void *m = NULL;
    size_t len = 99;
    (void)s;

    sup_pair_open(&pr, "pipe", NULL, NULL);
    assert_rc(msgpipe_send(pr.c, "", 0, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_send(pr.c, "z", 1, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_recv_alloc(pr.s, &m, &len, SUP_T), MSGPIPE_OK);
    assert_non_null(m);
    assert_int_equal(len, 0);
    assert_int_equal(((unsigned char *)m)[0], 0);
    msgpipe_free(m);
    /* The empty message did not swallow the next one. */
    assert_rc(msgpipe_recv_alloc(pr.s, &m, &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 1);
    assert_memory_equal(m, "z", 1);
    msgpipe_free(m);
    sup_pair_close(&pr);
}

/* ---- Small buffers: ENOBUFS keeps the message -------------------------- */

static void test_recv_small_buffer_keeps_message(void **state)
{
    sup_pair pr;
    unsigned char msg[100], buf[200];
    size_t len;
    (void)state;

    sup_pair_open(&pr, "pipe", NULL, NULL);
    sup_fill(msg, sizeof(msg), 100);
    assert_rc(msgpipe_send(pr.c, msg, sizeof(msg), SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_send(pr.c, "next", 4, SUP_T), MSGPIPE_OK);

    len = 0;
    assert_rc(msgpipe_recv(pr.s, buf, 10, &len, SUP_T), MSGPIPE_ENOBUFS);
    assert_int_equal(len, 100);
    len = 0;
    assert_rc(msgpipe_recv(pr.s, buf, 99, &len, SUP_T), MSGPIPE_ENOBUFS);
    assert_int_equal(len, 100);
    len = 0;
    assert_rc(msgpipe_recv(pr.s, NULL, 0, &len, SUP_T), MSGPIPE_ENOBUFS);
    assert_int_equal(len, 100);

    len = 0;
    assert_rc(msgpipe_recv(pr.s, buf, 100, &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 100);
    assert_memory_equal(buf, msg, 100);
    assert_rc(msgpipe_recv(pr.s, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 4);
    assert_memory_equal(buf, "next", 4);
    sup_pair_close(&pr);
}

static void test_recv_alloc_after_enobufs_gets_message(void **state)
{
    sup_pair pr;
    unsigned char msg[300], buf[16];
    void *m = NULL;
    size_t len;
    (void)state;

    sup_pair_open(&pr, "pipe", NULL, NULL);
    sup_fill(msg, sizeof(msg), 300);
    assert_rc(msgpipe_send(pr.c, msg, sizeof(msg), SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_recv(pr.s, buf, sizeof(buf), &len, SUP_T),
              MSGPIPE_ENOBUFS);
    assert_int_equal(len, 300);
    assert_rc(msgpipe_recv_alloc(pr.s, &m, &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 300);
    assert_memory_equal(m, msg, 300);
    msgpipe_free(m);
    sup_pair_close(&pr);
}

/* A sender in a thread, for messages that block until they are read. */
struct big_send_ctx {
    msgpipe *p;
    const void *m;
    size_t n;
    int rc;
};

static void *big_send_main(void *arg)
{
    struct big_send_ctx *b = (struct big_send_ctx *)arg;
    b->rc = msgpipe_send(b->p, b->m, b->n, SUP_T_LONG);
    return NULL;
}

static sup_thread *big_send_start(struct big_send_ctx *b, msgpipe *p,
                                  const void *m, size_t n)
{
    b->p = p;
    b->m = m;
    b->n = n;
    b->rc = 1;
    return sup_thread_start(big_send_main, b);
}

/* A message far larger than the system's pipe buffer: ENOBUFS must come
 * from the announced size, and the sender completes once it is read. */
static void test_recv_small_buffer_keeps_large_message(void **state)
{
    sup_pair pr;
    struct big_send_ctx *b;
    unsigned char *msg, *buf, small[64];
    size_t len;
    sup_thread *t;
    (void)state;

    msg = (unsigned char *)malloc(4 * MiB);
    buf = (unsigned char *)malloc(4 * MiB);
    b = (struct big_send_ctx *)calloc(1, sizeof(*b));
    assert_non_null(msg);
    assert_non_null(buf);
    assert_non_null(b);
    sup_fill(msg, 4 * MiB, 4);
    sup_pair_open(&pr, "pipe", NULL, NULL);
    t = big_send_start(b, pr.c, msg, 4 * MiB);
    len = 0;
    assert_rc(msgpipe_recv(pr.s, small, sizeof(small), &len, SUP_T_LONG),
              MSGPIPE_ENOBUFS);
    assert_int_equal(len, 4 * MiB);
    len = 0;
    assert_rc(msgpipe_recv(pr.s, buf, 4 * MiB - 1, &len, SUP_T_LONG),
              MSGPIPE_ENOBUFS);
    assert_int_equal(len, 4 * MiB);
    assert_rc(msgpipe_recv(pr.s, buf, 4 * MiB, &len, SUP_T_LONG), MSGPIPE_OK);
    assert_int_equal(len, 4 * MiB);
    assert_pattern(buf, len, 4);
    sup_thread_join(t);
    assert_rc(b->rc, MSGPIPE_OK);
    sup_pair_close(&pr);
    free(msg);
    free(buf);
    free(b);
}

/* ---- max_message ------------------------------------------------------- */

static msgpipe_options max1000(void)
{
    msgpipe_options o;
    msgpipe_options_init(&o);
    o.max_message = 1000;
    return o;
}

/* The receiver's max_message (1000) is set on listen or on connect. */
static void oversized_then_next_intact(int limit_on_server, int use_alloc)
{
    msgpipe_options o = max1000();
    sup_pair pr;
    msgpipe *tx, *rx;
    unsigned char msg[1001], buf[2000];
    size_t len;
    void *m = NULL;

    sup_pair_open(&pr, "pipe", limit_on_server ? &o : NULL,
                  limit_on_server ? NULL : &o);
    tx = limit_on_server ? pr.c : pr.s;
    rx = limit_on_server ? pr.s : pr.c;
    sup_fill(msg, sizeof(msg), 1001);
    assert_rc(msgpipe_send(tx, msg, 1001, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_send(tx, msg, 1000, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_send(tx, "tail", 4, SUP_T), MSGPIPE_OK);

    len = 0;
    if (use_alloc) {
        assert_rc(msgpipe_recv_alloc(rx, &m, &len, SUP_T), MSGPIPE_EMSGSIZE);
        msgpipe_free(m); /* NULL expected; freeing is harmless */
    } else {
        assert_rc(msgpipe_recv(rx, buf, sizeof(buf), &len, SUP_T),
                  MSGPIPE_EMSGSIZE);
    }
    assert_int_equal(len, 1001);
    assert_rc(msgpipe_recv(rx, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 1000);
    assert_memory_equal(buf, msg, 1000);
    assert_rc(msgpipe_recv(rx, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 4);
    assert_memory_equal(buf, "tail", 4);
    sup_pair_close(&pr);
}

static void test_recv_over_max_message_of_listen_is_emsgsize(void **state)
{
    (void)state;
    oversized_then_next_intact(1, 0);
}

static void test_recv_over_max_message_of_connect_is_emsgsize(void **state)
{
    (void)state;
    oversized_then_next_intact(0, 0);
}

static void test_recv_alloc_over_max_message_is_emsgsize(void **state)
{
    (void)state;
    oversized_then_next_intact(1, 1);
}

/* 8 MiB announced to a receiver that accepts 1000 bytes: reported, then
 * skipped as it streams in; the message after it arrives intact. */
typedef struct {
    msgpipe *p;
    unsigned char *big;
    int rc_big, rc_small;
} oversize_ctx;

static void *oversize_sender_main(void *arg)
{
    oversize_ctx *o = (oversize_ctx *)arg;
    unsigned char small[999];
    o->rc_big = msgpipe_send(o->p, o->big, 8 * MiB, SUP_T_LONG);
    sup_fill(small, sizeof(small), 999);
    o->rc_small = msgpipe_send(o->p, small, sizeof(small), SUP_T_LONG);
    return NULL;
}

static void test_recv_skips_large_oversized_message(void **state)
{
    msgpipe_options o = max1000();
    sup_pair pr;
    oversize_ctx *ctx;
    unsigned char buf[1000];
    size_t len;
    sup_thread *t;
    (void)state;

    ctx = (oversize_ctx *)calloc(1, sizeof(*ctx));
    assert_non_null(ctx);
    ctx->big = (unsigned char *)malloc(8 * MiB);
    assert_non_null(ctx->big);
    sup_fill(ctx->big, 8 * MiB, 8);
    sup_pair_open(&pr, "pipe", &o, NULL);
    ctx->p = pr.c;
    ctx->rc_big = ctx->rc_small = 1;
    t = sup_thread_start(oversize_sender_main, ctx);
    len = 0;
    assert_rc(msgpipe_recv(pr.s, buf, sizeof(buf), &len, SUP_T_LONG),
              MSGPIPE_EMSGSIZE);
    assert_int_equal(len, 8 * MiB);
    assert_rc(msgpipe_recv(pr.s, buf, sizeof(buf), &len, SUP_T_LONG),
              MSGPIPE_OK);
    assert_int_equal(len, 999);
    assert_pattern(buf, 999, 999);
    sup_thread_join(t);
    assert_rc(ctx->rc_big, MSGPIPE_OK);
    assert_rc(ctx->rc_small, MSGPIPE_OK);
    sup_pair_close(&pr);
    free(ctx->big);
    free(ctx);
}

static void
test_send_over_own_max_message_is_emsgsize_and_sends_nothing(void **state)
{
    msgpipe_options o = max1000();
    sup_pair pr;
    unsigned char msg[1001], buf[2000];
    size_t len;
    (void)state;

    sup_pair_open(&pr, "pipe", NULL, &o);
    sup_fill(msg, sizeof(msg), 5);
    assert_rc(msgpipe_send(pr.c, msg, 1001, SUP_T), MSGPIPE_EMSGSIZE);
    assert_rc(msgpipe_recv(pr.s, buf, sizeof(buf), &len, 100),
              MSGPIPE_ETIMEDOUT);
    assert_rc(msgpipe_send(pr.c, msg, 1000, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_recv(pr.s, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 1000);
    assert_memory_equal(buf, msg, 1000);
    assert_rc(msgpipe_recv(pr.s, buf, sizeof(buf), &len, 100),
              MSGPIPE_ETIMEDOUT);
    sup_pair_close(&pr);
}

/* ---- Closing ----------------------------------------------------------- */

static void
test_peer_close_after_1000_sends_delivers_all_then_eclosed(void **state)
{
    sup_pair pr;
    sender_ctx *s = (sender_ctx *)calloc(1, sizeof(*s));
    sup_thread *t;
    uint32_t i;
    size_t len;
    void *m;
    (void)state;

    assert_non_null(s);
    sup_pair_open(&pr, "pipe", NULL, NULL);
    s->p = pr.c;
    s->n = 1000;
    s->close_after = 1;
    pr.c = NULL; /* the thread closes it */
    t = sup_thread_start(sender_main, s);
    sup_sleep_ms(100); /* let the close overtake the reader (not required) */
    for (i = 0; i < 1000; i++)
        recv_ordered(pr.s, i);
    assert_rc(msgpipe_recv(pr.s, NULL, 0, &len, SUP_T), MSGPIPE_ECLOSED);
    assert_rc(msgpipe_recv(pr.s, NULL, 0, &len, SUP_T), MSGPIPE_ECLOSED);
    assert_rc(msgpipe_recv_alloc(pr.s, &m, &len, SUP_T), MSGPIPE_ECLOSED);
    sup_thread_join(t);
    assert_rc(s->rc, MSGPIPE_OK);
    assert_int_equal(s->sent, 1000);
    sup_pair_close(&pr);
    free(s);
}

/* No SIGPIPE: the process would die (sup_init resets SIGPIPE to default). */
static void test_send_to_closed_peer_is_eclosed_without_sigpipe(void **state)
{
    sup_pair pr;
    unsigned char *big;
    int i, rc = MSGPIPE_OK;
    (void)state;

    big = (unsigned char *)calloc(1, MiB);
    assert_non_null(big);
    sup_pair_open(&pr, "pipe", NULL, NULL);
    msgpipe_close(pr.c);
    pr.c = NULL;
    /* A send may be buffered before the close is seen; within a bounded
     * number of sends it must report ECLOSED. */
    for (i = 0; i < 1000; i++) {
        rc = msgpipe_send(pr.s, "x", 1, SUP_T);
        if (rc != MSGPIPE_OK)
            break;
        sup_sleep_ms(1);
    }
    assert_rc(rc, MSGPIPE_ECLOSED);
    assert_rc(msgpipe_send(pr.s, "x", 1, SUP_T), MSGPIPE_ECLOSED);
    assert_rc(msgpipe_send(pr.s, big, MiB, SUP_T), MSGPIPE_ECLOSED);
    assert_rc(msgpipe_send(pr.s, NULL, 0, SUP_T), MSGPIPE_ECLOSED);
    sup_pair_close(&pr);
    free(big);
}

/* A large send blocked on a peer that then closes returns ECLOSED too. */
static void test_send_blocked_when_peer_closes_is_eclosed(void **state)
{
    sup_pair pr;
    struct big_send_ctx *b;
    unsigned char *msg;
    sup_thread *t;
    (void)state;

    msg = (unsigned char *)calloc(1, 16 * MiB);
    b = (struct big_send_ctx *)calloc(1, sizeof(*b));
    assert_non_null(msg);
    assert_non_null(b);
    sup_pair_open(&pr, "pipe", NULL, NULL);
    t = big_send_start(b, pr.s, msg, 16 * MiB);
    sup_sleep_ms(200);
    msgpipe_close(pr.c);
    pr.c = NULL;
    if (sup_thread_join_timeout(t, 10000, NULL) != 0) {
        print_error("send still blocked 10 s after the peer closed\n");
        fail();
    }
    assert_rc(b->rc, MSGPIPE_ECLOSED);
    sup_pair_close(&pr);
    free(msg);
    free(b);
}

/* ---- Peer identity ----------------------------------------------------- */

static void test_peer_reports_this_process_on_both_ends(void **state)
{
    sup_pair pr;
    msgpipe_peer_info info;
    (void)state;

    sup_pair_open(&pr, "pipe", NULL, NULL);
    memset(&info, 0x5a, sizeof(info));
    assert_rc(msgpipe_peer(pr.s, &info), MSGPIPE_OK);
    assert_int_equal(info.pid, sup_getpid());
    assert_int_equal(info.uid, sup_getuid());
    assert_int_equal(info.gid, sup_getgid());
    memset(&info, 0x5a, sizeof(info));
    assert_rc(msgpipe_peer(pr.c, &info), MSGPIPE_OK);
    assert_int_equal(info.pid, sup_getpid());
    assert_int_equal(info.uid, sup_getuid());
    assert_int_equal(info.gid, sup_getgid());
    sup_pair_close(&pr);
}

/* ---- Both directions at once ------------------------------------------- */

/* One thread sends while another receives on the same pipe (allowed). */
static void test_send_and_recv_concurrently_on_one_pipe(void **state)
{
    sup_pair pr;
    sender_ctx *a = (sender_ctx *)calloc(1, sizeof(*a));
    sender_ctx *b = (sender_ctx *)calloc(1, sizeof(*b));
    sup_thread *ta, *tb;
    uint32_t i;
    (void)state;

    assert_non_null(a);
    assert_non_null(b);
    sup_pair_open(&pr, "pipe", NULL, NULL);
    a->p = pr.c;
    a->n = 3000;
    b->p = pr.s;
    b->n = 3000;
    ta = sup_thread_start(sender_main, a);
    tb = sup_thread_start(sender_main, b);
    /* This thread receives on both ends, alternating. */
    for (i = 0; i < 3000; i++) {
        recv_ordered(pr.s, i);
        recv_ordered(pr.c, i);
    }
    sup_thread_join(ta);
    sup_thread_join(tb);
    assert_rc(a->rc, MSGPIPE_OK);
    assert_rc(b->rc, MSGPIPE_OK);
    sup_pair_close(&pr);
    free(a);
    free(b);
}

/* ---- Batches ------------------------------------------------------------ */

/* Sizes of a batch's messages: empty, small, and some larger than the
 * receive buffer and the system's pipe buffer. */
static size_t batch_size(int i)
{
    static const size_t sizes[] = {0, 1, 7, 64, 300, 4096, 20000, 100000};
    return sizes[i % 8];
}

typedef struct {
    msgpipe *p;
    int n;
    int rc;
    int got;
} batch_reader;

static void *batch_reader_main(void *arg)
{
    batch_reader *r = (batch_reader *)arg;
    unsigned char *buf = (unsigned char *)malloc(100000);
    size_t len;

    r->rc = MSGPIPE_OK;
    for (r->got = 0; r->got < r->n; r->got++) {
        r->rc = msgpipe_recv(r->p, buf, 100000, &len, SUP_T_LONG);
        if (r->rc != MSGPIPE_OK)
            break;
        if (len != batch_size(r->got) ||
            sup_check(buf, len, (uint32_t)r->got) != (size_t)-1) {
            r->rc = MSGPIPE_EPROTO; /* wrong message */
            break;
        }
    }
    free(buf);
    return NULL;
}

/* Every message of a batch arrives as its own message, whole, in order. */
static void test_send_batch_delivers_each_message_in_order(void **state)
{
    enum { N = 1000 };
    msgpipe_msg *m = (msgpipe_msg *)calloc(N, sizeof(*m));
    unsigned char **data = (unsigned char **)calloc(N, sizeof(*data));
    batch_reader r;
    sup_thread *t;
    sup_pair pr;
    size_t sent = 99;
    int i;
    (void)state;

    for (i = 0; i < N; i++) {
        data[i] = (unsigned char *)malloc(batch_size(i) + 1);
        sup_fill(data[i], batch_size(i), (uint32_t)i);
        m[i].data = batch_size(i) > 0 ? data[i] : NULL;
        m[i].len = batch_size(i);
    }
    sup_pair_open(&pr, "pipe", NULL, NULL);
    r.p = pr.s;
    r.n = N;
    t = sup_thread_start(batch_reader_main, &r);
    assert_rc(msgpipe_send_batch(pr.c, m, N, &sent, SUP_T_LONG), MSGPIPE_OK);
    assert_int_equal(sent, N);
    sup_thread_join(t);
    assert_rc(r.rc, MSGPIPE_OK);
    assert_int_equal(r.got, N);
    {
        size_t len;
        char b[4];
        assert_rc(msgpipe_recv(pr.s, b, sizeof(b), &len, 0), MSGPIPE_ETIMEDOUT);
    }
    sup_pair_close(&pr);
    for (i = 0; i < N; i++)
        free(data[i]);
    free(data);
    free(m);
}

static void test_send_batch_checks_every_message_first(void **state)
{
    msgpipe_options o;
    msgpipe_msg m[3];
    unsigned char big[200] = {0};
    sup_pair pr;
    size_t sent = 99, len;
    char b[8];
    (void)state;

    msgpipe_options_init(&o);
    o.max_message = 100;
    sup_pair_open(&pr, "pipe", NULL, &o);
    m[0].data = "ok";
    m[0].len = 2;
    m[1].data = big;
    m[1].len = sizeof(big); /* over the sender's max_message */
    m[2].data = "ok";
    m[2].len = 2;
    assert_rc(msgpipe_send_batch(pr.c, m, 3, &sent, SUP_T), MSGPIPE_EMSGSIZE);
    assert_int_equal(sent, 0);
    assert_rc(msgpipe_recv(pr.s, b, sizeof(b), &len, 50), MSGPIPE_ETIMEDOUT);
    m[1].data = NULL; /* with a length */
    assert_rc(msgpipe_send_batch(pr.c, m, 3, &sent, SUP_T), MSGPIPE_EINVAL);
    assert_rc(msgpipe_send_batch(pr.c, NULL, 1, &sent, SUP_T), MSGPIPE_EINVAL);
    assert_rc(msgpipe_send_batch(NULL, m, 1, &sent, SUP_T), MSGPIPE_EINVAL);
    assert_rc(msgpipe_send_batch(pr.c, m, 1, &sent, -2), MSGPIPE_EINVAL);
    assert_rc(msgpipe_send_batch(pr.c, m, 0, &sent, SUP_T), MSGPIPE_OK);
    assert_int_equal(sent, 0);
    assert_rc(msgpipe_send_batch(pr.c, m, 1, NULL, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_recv(pr.s, b, sizeof(b), &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 2);
    sup_pair_close(&pr);
}

/* The peer does not read: the batch times out part way; exactly the
 * messages it reports sent arrive (once, in order), and a retry of the
 * rest delivers them after. */
static void test_send_batch_timeout_reports_what_was_sent(void **state)
{
    enum { N = 400, SZ = 16384 };
    msgpipe_msg *m = (msgpipe_msg *)calloc(N, sizeof(*m));
    unsigned char *data = (unsigned char *)calloc((size_t)N, SZ);
    sup_pair pr;
    size_t sent = 0, more = 0;
    unsigned char *buf = (unsigned char *)malloc(SZ);
    int i, rc;
    (void)state;

    for (i = 0; i < N; i++) {
        sup_put32(data + (size_t)i * SZ, (uint32_t)i);
        m[i].data = data + (size_t)i * SZ;
        m[i].len = SZ;
    }
    sup_pair_open(&pr, "pipe", NULL, NULL);
    rc = msgpipe_send_batch(pr.c, m, N, &sent, 100);
    assert_rc(rc, MSGPIPE_ETIMEDOUT);
    assert_true(sent > 0 && sent < N);
    print_message("%lu of %d sent before the timeout\n", (unsigned long)sent,
                  N);
    /* The rest, retried without waiting, while this thread reads. */
    {
        size_t got = 0, len;
        msgpipe *rd = pr.s;
        while (got < N) {
            if (sent + more < N) {
                size_t now = 0;
                rc = msgpipe_send_batch(pr.c, m + sent + more, N - sent - more,
                                        &now, 0);
                assert_true(rc == MSGPIPE_OK || rc == MSGPIPE_ETIMEDOUT);
                more += now;
            }
            rc = msgpipe_recv(rd, buf, SZ, &len, 20);
            if (rc == MSGPIPE_ETIMEDOUT) {
                /* A message cut by a timeout is finished by the sender's
                 * next batch, or at the latest by its close. */
                if (sent + more >= N) {
                    msgpipe_close(pr.c); /* finishes any tail (linger) */
                    pr.c = NULL;
                }
                continue;
            }
            assert_rc(rc, MSGPIPE_OK);
            assert_int_equal(len, SZ);
            assert_int_equal(sup_get32(buf), (uint32_t)got);
            got++;
        }
    }
    assert_int_equal(sent + more, N);
    sup_pair_close(&pr);
    free(buf);
    free(data);
    free(m);
}

/* ---- Large messages read straight into the caller's buffer ------------
 *
 * After a large message, a receive reads the next one's header and payload
 * in one call, the payload straight into the caller's buffer, on the guess
 * that it is as large.  When the guess is wrong (smaller with more behind
 * it, larger than the buffer or the limit), the bytes must still come out
 * exactly as if read the usual way. */

enum { BIG = 60000 }; /* + header: fits in a FIFO's 64 KiB */

/* One large message from tx to rx, read into buf (cap bytes). */
static void prime_large(msgpipe *tx, msgpipe *rx, unsigned char *buf,
                        size_t cap)
{
    size_t len = 0;

    sup_fill(buf, BIG, 77);
    assert_rc(msgpipe_send(tx, buf, BIG, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_recv(rx, buf, cap, &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, BIG);
    assert_pattern(buf, len, 77);
}

static const size_t mixed_sizes[] = {
    60000, 60000, 70000, 20000, 16,    0,     60000, 100000, 16384,
    59999, 1,     60000, 65536, 65535, 16383, 4096,  4096,   16,
    4097,  4095,  2044,  2045,  4096,  0,     8192,  4096,   1};
#define N_MIXED (sizeof(mixed_sizes) / sizeof(mixed_sizes[0]))
enum { MIXED_ROUNDS = 20 };

typedef struct {
    msgpipe *p;
    int rc;
} mixed_sender;

static void *mixed_send_main(void *arg)
{
    mixed_sender *ms = (mixed_sender *)arg;
    unsigned char *m = (unsigned char *)malloc(100000);
    size_t i;

    ms->rc = m == NULL ? MSGPIPE_ENOMEM : MSGPIPE_OK;
    for (i = 0; i < N_MIXED * MIXED_ROUNDS && ms->rc == MSGPIPE_OK; i++) {
        sup_fill(m, mixed_sizes[i % N_MIXED], (uint32_t)i);
        ms->rc = msgpipe_send(ms->p, m, mixed_sizes[i % N_MIXED], SUP_T_LONG);
    }
    free(m);
    return NULL;
}

/* Sizes mixed, sent back to back by another thread (so that more is often
 * behind a message smaller than the one before): every message exact. */
static void test_large_and_small_messages_back_to_back_arrive_exact(void **st)
{
    unsigned char *buf = (unsigned char *)malloc(100000);
    mixed_sender ms;
    sup_thread *t;
    sup_pair pr;
    size_t i, len;
    (void)st;

    assert_non_null(buf);
    sup_pair_open(&pr, "pipe", NULL, NULL);
    ms.p = pr.c;
    t = sup_thread_start(mixed_send_main, &ms);
    for (i = 0; i < N_MIXED * MIXED_ROUNDS; i++) {
        len = (size_t)-1;
        assert_rc(msgpipe_recv(pr.s, buf, 100000, &len, SUP_T_LONG),
                  MSGPIPE_OK);
        assert_int_equal(len, mixed_sizes[i % N_MIXED]);
        assert_pattern(buf, len, (uint32_t)i);
    }
    sup_thread_join(t);
    assert_rc(ms.rc, MSGPIPE_OK);
    assert_rc(msgpipe_recv(pr.s, buf, 100000, &len, 0), MSGPIPE_ETIMEDOUT);
    sup_pair_close(&pr);
    free(buf);
}

/* The same sizes one at a time, each echoed back: exact. */
static void test_large_and_small_messages_one_at_a_time_arrive_exact(void **st)
{
    unsigned char *out = (unsigned char *)malloc(100000);
    unsigned char *in = (unsigned char *)malloc(100000);
    sup_pair pr;
    sup_echo *echo;
    size_t i, len;
    int end_rc;
    (void)st;

    assert_non_null(out);
    assert_non_null(in);
    sup_pair_open(&pr, "pipe", NULL, NULL);
    echo = sup_echo_start(pr.s);
    for (i = 0; i < N_MIXED * 4; i++) {
        size_t n = mixed_sizes[i % N_MIXED];
        sup_fill(out, n, (uint32_t)i);
        assert_rc(msgpipe_send(pr.c, out, n, SUP_T), MSGPIPE_OK);
        len = (size_t)-1;
        assert_rc(msgpipe_recv(pr.c, in, 100000, &len, SUP_T), MSGPIPE_OK);
        assert_int_equal(len, n);
        assert_pattern(in, len, (uint32_t)i);
    }
    msgpipe_close(pr.c);
    pr.c = NULL;
    assert_int_equal(sup_echo_join(echo, &end_rc), (long)(N_MIXED * 4));
    assert_rc(end_rc, MSGPIPE_ECLOSED);
    sup_pair_close(&pr);
    free(out);
    free(in);
}

/* After a large message, one too large for the buffer: ENOBUFS with its
 * exact size, every time, and kept whole for a large enough buffer; the
 * message behind it intact. */
static void test_enobufs_after_a_large_message_keeps_it_exact(void **state)
{
    unsigned char *buf = (unsigned char *)malloc(62000);
    sup_pair pr;
    size_t len;
    (void)state;

    assert_non_null(buf);
    sup_pair_open(&pr, "pipe", NULL, NULL);
    prime_large(pr.c, pr.s, buf, 61000);
    sup_fill(buf, 62000, 5);
    assert_rc(msgpipe_send(pr.c, buf, 62000, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_send(pr.c, "next", 4, SUP_T), MSGPIPE_OK);
    memset(buf, 0, 62000);
    len = 0;
    assert_rc(msgpipe_recv(pr.s, buf, 61000, &len, SUP_T), MSGPIPE_ENOBUFS);
    assert_int_equal(len, 62000);
    len = 0;
    assert_rc(msgpipe_recv(pr.s, buf, 61999, &len, SUP_T), MSGPIPE_ENOBUFS);
    assert_int_equal(len, 62000);
    len = 0;
    assert_rc(msgpipe_recv(pr.s, buf, 62000, &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 62000);
    assert_pattern(buf, len, 5);
    assert_rc(msgpipe_recv(pr.s, buf, 62000, &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 4);
    assert_memory_equal(buf, "next", 4);
    sup_pair_close(&pr);
    free(buf);
}

/* After a large message, one over the receiver's max_message: EMSGSIZE with
 * its exact size, skipped; the large message behind it intact. */
static void test_emsgsize_after_a_large_message_skips_it_exact(void **state)
{
    unsigned char *buf = (unsigned char *)malloc(40000);
    msgpipe_options o;
    sup_pair pr;
    size_t len;
    (void)state;

    assert_non_null(buf);
    msgpipe_options_init(&o);
    o.max_message = 30000;
    sup_pair_open(&pr, "pipe", &o, NULL);
    sup_fill(buf, 20000, 1);
    assert_rc(msgpipe_send(pr.c, buf, 20000, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_recv(pr.s, buf, 40000, &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 20000);
    sup_fill(buf, 30001, 2);
    assert_rc(msgpipe_send(pr.c, buf, 30001, SUP_T), MSGPIPE_OK);
    sup_fill(buf, 30000, 3);
    assert_rc(msgpipe_send(pr.c, buf, 30000, SUP_T), MSGPIPE_OK);
    memset(buf, 0, 40000);
    len = 0;
    assert_rc(msgpipe_recv(pr.s, buf, 40000, &len, SUP_T), MSGPIPE_EMSGSIZE);
    assert_int_equal(len, 30001);
    len = 0;
    assert_rc(msgpipe_recv(pr.s, buf, 40000, &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 30000);
    assert_pattern(buf, len, 3);
    sup_pair_close(&pr);
    free(buf);
}

#ifndef _WIN32
/* Write raw bytes to a pipe's write descriptor: part of a message, as a
 * writer that stops in the middle would leave it. */
static void raw_write(msgpipe *p, const void *b, size_t n)
{
    msgpipe_native h;
    ssize_t w;

    assert_rc(msgpipe_native_handle(p, MSGPIPE_POLLOUT, &h), MSGPIPE_OK);
    while (n > 0) {
        w = write((int)h, b, n);
        assert_true(w > 0);
        b = (const unsigned char *)b + w;
        n -= (size_t)w;
    }
}

static void raw_header(msgpipe *p, uint32_t len)
{
    unsigned char h[4];

    h[0] = (unsigned char)(len >> 24);
    h[1] = (unsigned char)(len >> 16);
    h[2] = (unsigned char)(len >> 8);
    h[3] = (unsigned char)len;
    raw_write(p, h, 4);
}

/* The peer goes away half-way through a large message read straight into
 * the caller's buffer: ECLOSED, and ECLOSED again. */
static void test_peer_gone_mid_large_message_is_eclosed(void **state)
{
    unsigned char *buf = (unsigned char *)malloc(BIG);
    sup_pair pr;
    size_t len = 0;
    (void)state;

    assert_non_null(buf);
    sup_pair_open(&pr, "pipe", NULL, NULL);
    prime_large(pr.c, pr.s, buf, BIG);
    raw_header(pr.c, BIG);
    raw_write(pr.c, buf, BIG / 2);
    msgpipe_close(pr.c);
    pr.c = NULL;
    assert_rc(msgpipe_recv(pr.s, buf, BIG, &len, SUP_T), MSGPIPE_ECLOSED);
    assert_rc(msgpipe_recv(pr.s, buf, BIG, &len, SUP_T), MSGPIPE_ECLOSED);
    sup_pair_close(&pr);
    free(buf);
}

/* The time runs out half-way through a large message read straight into
 * the caller's buffer: ETIMEDOUT, and the next receive gets the whole
 * message once the rest arrives, then the message after it. */
static void test_timeout_mid_large_message_loses_nothing(void **state)
{
    unsigned char *msg = (unsigned char *)malloc(BIG);
    unsigned char *buf = (unsigned char *)malloc(BIG);
    sup_pair pr;
    size_t len = 0;
    (void)state;

    assert_non_null(msg);
    assert_non_null(buf);
    sup_pair_open(&pr, "pipe", NULL, NULL);
    prime_large(pr.c, pr.s, buf, BIG);
    sup_fill(msg, BIG, 9);
    raw_header(pr.c, BIG);
    raw_write(pr.c, msg, BIG / 2);
    memset(buf, 0, BIG);
    assert_rc(msgpipe_recv(pr.s, buf, BIG, &len, 50), MSGPIPE_ETIMEDOUT);
    memset(buf, 0, BIG);
    raw_write(pr.c, msg + BIG / 2, BIG - BIG / 2);
    assert_rc(msgpipe_send(pr.c, "after", 5, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_recv(pr.s, buf, BIG, &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, BIG);
    assert_pattern(buf, len, 9);
    assert_rc(msgpipe_recv(pr.s, buf, BIG, &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 5);
    assert_memory_equal(buf, "after", 5);
    sup_pair_close(&pr);
    free(msg);
    free(buf);
}
#endif

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_0_bytes),
        cmocka_unit_test(test_round_trip_1_byte),
        cmocka_unit_test(test_round_trip_4095_bytes),
        cmocka_unit_test(test_round_trip_4096_bytes),
        cmocka_unit_test(test_round_trip_64_kib),
        cmocka_unit_test(test_round_trip_1_mib),
        cmocka_unit_test(test_round_trip_16_mib),
        cmocka_unit_test(test_10000_messages_arrive_in_order),
        cmocka_unit_test(test_recv_alloc_gives_exact_length_and_trailing_zero),
        cmocka_unit_test(test_recv_alloc_empty_message_gives_non_null_buffer),
        cmocka_unit_test(test_recv_small_buffer_keeps_message),
        cmocka_unit_test(test_recv_alloc_after_enobufs_gets_message),
        cmocka_unit_test(test_recv_small_buffer_keeps_large_message),
        cmocka_unit_test(test_recv_over_max_message_of_listen_is_emsgsize),
        cmocka_unit_test(test_recv_over_max_message_of_connect_is_emsgsize),
        cmocka_unit_test(test_recv_alloc_over_max_message_is_emsgsize),
        cmocka_unit_test(test_recv_skips_large_oversized_message),
        cmocka_unit_test(
            test_send_over_own_max_message_is_emsgsize_and_sends_nothing),
        cmocka_unit_test(
            test_peer_close_after_1000_sends_delivers_all_then_eclosed),
        cmocka_unit_test(test_send_to_closed_peer_is_eclosed_without_sigpipe),
        cmocka_unit_test(test_send_blocked_when_peer_closes_is_eclosed),
        cmocka_unit_test(test_peer_reports_this_process_on_both_ends),
        cmocka_unit_test(test_send_and_recv_concurrently_on_one_pipe),
        cmocka_unit_test(test_send_batch_delivers_each_message_in_order),
        cmocka_unit_test(test_send_batch_checks_every_message_first),
        cmocka_unit_test(test_send_batch_timeout_reports_what_was_sent),
        cmocka_unit_test(
            test_large_and_small_messages_back_to_back_arrive_exact),
        cmocka_unit_test(
            test_large_and_small_messages_one_at_a_time_arrive_exact),
        cmocka_unit_test(test_enobufs_after_a_large_message_keeps_it_exact),
        cmocka_unit_test(test_emsgsize_after_a_large_message_skips_it_exact),
#ifndef _WIN32
        cmocka_unit_test(test_peer_gone_mid_large_message_is_eclosed),
        cmocka_unit_test(test_timeout_mid_large_message_loses_nothing),
#endif
    };

    sup_init(argc, argv);
    return sup_finish(cmocka_run_group_tests_name("pipe", tests, NULL, NULL));
}
