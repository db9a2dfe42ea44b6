/*
 * test_delivery.c - "one send is one whole message or nothing", under the
 * timings that break it: clients that connect, send and leave at once;
 * listens, accepts and sends made by threads that have since exited; sends
 * whose timeout runs out while the peer is reading; oversized messages
 * discarded while their writer is still writing; plain Win32 readers that
 * read a message in pieces; and the names and lifetime of a server.
 *
 * The rule every test checks: a message whose send returned MSGPIPE_OK
 * arrives whole and in order; one whose send returned MSGPIPE_ETIMEDOUT
 * arrives whole or not at all; nothing else arrives.
 */
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef _WIN32
#include <windows.h>
#endif

/* ---- Fire-and-forget clients --------------------------------------------- */

enum { FF_THREADS = 4, FF_ROUNDS = 150 };

typedef struct ff_client {
    const char *name;
    int rc; /* first failure, MSGPIPE_OK if none */
} ff_client;

/* connect, send "note", close: FF_ROUNDS times. */
static void *ff_client_main(void *arg)
{
    ff_client *fc = (ff_client *)arg;
    int i, rc;

    fc->rc = MSGPIPE_OK;
    for (i = 0; i < FF_ROUNDS; i++) {
        msgpipe *c = NULL;
        rc = msgpipe_connect(fc->name, NULL, SUP_T, &c);
        if (rc == MSGPIPE_OK)
            rc = msgpipe_send(c, "note", 4, SUP_T);
        msgpipe_close(c);
        if (rc != MSGPIPE_OK) {
            fc->rc = rc;
            break;
        }
    }
    return NULL;
}

/* FF_THREADS clients that each connect, send one message and close at
 * once, FF_ROUNDS times, against a server that accepts and receives: every
 * message arrives, each client's followed by MSGPIPE_ECLOSED. */
static void fire_and_forget(int pending)
{
    msgpipe_options o;
    msgpipe_server *srv = NULL;
    ff_client fc[FF_THREADS];
    sup_thread *t[FF_THREADS];
    char name[96], buf[16];
    long notes = 0, clients = 0;
    int i, rc;

    sup_name(name, sizeof(name), "dlv");
    msgpipe_options_init(&o);
    o.pending = pending;
    assert_rc(msgpipe_listen(name, &o, &srv), MSGPIPE_OK);
    for (i = 0; i < FF_THREADS; i++) {
        fc[i].name = name;
        t[i] = sup_thread_start(ff_client_main, &fc[i]);
    }
    while (notes < (long)FF_THREADS * FF_ROUNDS) {
        msgpipe *a = NULL;
        size_t len = 0;
        rc = msgpipe_accept(srv, SUP_T, &a);
        if (rc != MSGPIPE_OK) {
            print_error("pending %d: accept: %s after %ld of %d messages\n",
                        pending, msgpipe_errname(rc), notes,
                        FF_THREADS * FF_ROUNDS);
            fail();
        }
        clients++;
        while ((rc = msgpipe_recv(a, buf, sizeof(buf), &len, SUP_T)) ==
               MSGPIPE_OK) {
            assert_int_equal(len, 4);
            assert_memory_equal(buf, "note", 4);
            notes++;
        }
        assert_rc(rc, MSGPIPE_ECLOSED);
        msgpipe_close(a);
    }
    for (i = 0; i < FF_THREADS; i++) {
        sup_thread_join(t[i]);
        assert_rc(fc[i].rc, MSGPIPE_OK);
    }
    assert_int_equal(notes, FF_THREADS * FF_ROUNDS);
    assert_int_equal(clients, FF_THREADS * FF_ROUNDS);
    msgpipe_server_close(srv);
}

static void test_fire_and_forget_clients_all_arrive(void **state)
{
    (void)state;
    fire_and_forget(0);
}

static void test_fire_and_forget_clients_all_arrive_pending_1(void **state)
{
    (void)state;
    fire_and_forget(1);
}

static void test_fire_and_forget_clients_all_arrive_pending_63(void **state)
{
    (void)state;
    fire_and_forget(63);
}

/* ---- Calls made by threads that have since exited ------------------------ */

/* Connect, send "hello", close; then accept must hand out that client.
 * (Not on the FIFO transport, where a client that closes before it is
 * accepted waits for the acceptance for at most linger_ms and then takes
 * its messages with it: docs/fifo.md.) */
static void hello_then_accept(msgpipe_server *srv, const char *name)
{
    msgpipe *c = NULL, *a = NULL;
    char buf[16];
    size_t len = 0;

    assert_rc(msgpipe_connect(name, NULL, SUP_T, &c), MSGPIPE_OK);
    assert_rc(msgpipe_send(c, "hello", 5, SUP_T), MSGPIPE_OK);
    msgpipe_close(c);
    assert_rc(msgpipe_accept(srv, SUP_T, &a), MSGPIPE_OK);
    assert_rc(msgpipe_recv(a, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 5);
    assert_memory_equal(buf, "hello", 5);
    assert_rc(msgpipe_recv(a, buf, sizeof(buf), &len, SUP_T), MSGPIPE_ECLOSED);
    msgpipe_close(a);
}

typedef struct gone_ctx {
    char name[96];
    msgpipe_server *srv;
    msgpipe *p;
    const void *msg;
    size_t len;
    int timeout;
    int rc;
} gone_ctx;

static void *listen_main(void *arg)
{
    gone_ctx *g = (gone_ctx *)arg;
    g->rc = msgpipe_listen(g->name, NULL, &g->srv);
    return NULL;
}

static void test_listen_on_exited_thread_then_client_message_arrives(void **st)
{
    gone_ctx g;
    (void)st;

    memset(&g, 0, sizeof(g));
    sup_name(g.name, sizeof(g.name), "dlv");
    sup_thread_join(sup_thread_start(listen_main, &g));
    assert_rc(g.rc, MSGPIPE_OK);
    hello_then_accept(g.srv, g.name);
    msgpipe_server_close(g.srv);
}

static void *accept_main(void *arg)
{
    gone_ctx *g = (gone_ctx *)arg;
    g->rc = msgpipe_accept(g->srv, SUP_T, &g->p);
    return NULL;
}

static void test_accept_on_exited_thread_then_client_message_arrives(void **st)
{
    gone_ctx g;
    msgpipe *c = NULL;
    int i;
    (void)st;

    memset(&g, 0, sizeof(g));
    sup_name(g.name, sizeof(g.name), "dlv");
    assert_rc(msgpipe_listen(g.name, NULL, &g.srv), MSGPIPE_OK);
    /* Several accepts, each on its own short-lived thread, so that every
     * pending instance was last started by a thread that is gone. */
    for (i = 0; i < 6; i++) {
        assert_rc(msgpipe_connect(g.name, NULL, SUP_T, &c), MSGPIPE_OK);
        sup_thread_join(sup_thread_start(accept_main, &g));
        assert_rc(g.rc, MSGPIPE_OK);
        msgpipe_close(g.p);
        msgpipe_close(c);
    }
    hello_then_accept(g.srv, g.name);
    msgpipe_server_close(g.srv);
}

static void *send_main(void *arg)
{
    gone_ctx *g = (gone_ctx *)arg;
    g->rc = msgpipe_send(g->p, g->msg, g->len, g->timeout);
    return NULL;
}

static void *poll_main(void *arg)
{
    gone_ctx *g = (gone_ctx *)arg;
    msgpipe_pollitem it;

    memset(&it, 0, sizeof(it));
    it.pipe = g->p;
    it.events = MSGPIPE_POLLIN;
    g->rc = msgpipe_poll(&it, 1, 20);
    return NULL;
}

/* A poll made by a thread that has exited (Windows: it left the pipe's
 * readiness read outstanding, which the exit cancels) does not stop a
 * later poll from reporting the next message. */
static void test_poll_on_exited_thread_then_message_is_reported(void **st)
{
    sup_pair pr;
    gone_ctx g;
    msgpipe_pollitem it;
    char buf[8];
    size_t len = 0;
    (void)st;

    sup_pair_open(&pr, "dlv", NULL, NULL);
    memset(&g, 0, sizeof(g));
    g.p = pr.s;
    sup_thread_join(sup_thread_start(poll_main, &g));
    assert_rc(g.rc, MSGPIPE_ETIMEDOUT);
    assert_rc(msgpipe_send(pr.c, "ping", 4, SUP_T), MSGPIPE_OK);
    memset(&it, 0, sizeof(it));
    it.pipe = pr.s;
    it.events = MSGPIPE_POLLIN;
    assert_rc(msgpipe_poll(&it, 1, SUP_T), 1);
    assert_int_equal(it.revents, MSGPIPE_POLLIN);
    assert_rc(msgpipe_recv(pr.s, buf, sizeof(buf), &len, 0), MSGPIPE_OK);
    assert_int_equal(len, 4);
    assert_memory_equal(buf, "ping", 4);
    sup_pair_close(&pr);
}

enum { GONE_BIG = 4 * 1024 * 1024 };

/* A send on an idle pipe whose time runs out while the message is going
 * out is committed (MSGPIPE_OK), and the message arrives whole even though
 * the thread that sent it has exited.  (POSIX writes the rest during the
 * next use of the pipe - here the next send, from another thread; Windows
 * lets the system finish the write, which must not die with its thread.) */
static void test_send_on_exited_thread_arrives_whole(void **st)
{
    sup_pair pr;
    gone_ctx g, g2;
    sup_thread *t;
    unsigned char *m = (unsigned char *)malloc(GONE_BIG);
    void *got = NULL;
    size_t len = 0;
    (void)st;

    assert_non_null(m);
    sup_fill(m, GONE_BIG, 77);
    sup_pair_open(&pr, "dlv", NULL, NULL);
    memset(&g, 0, sizeof(g));
    g.p = pr.c;
    g.msg = m;
    g.len = GONE_BIG;
    g.timeout = 1;
    sup_thread_join(sup_thread_start(send_main, &g));
    assert_rc(g.rc, MSGPIPE_OK);
    sup_sleep_ms(50);
    g2 = g;
    g2.msg = "after";
    g2.len = 5;
    g2.timeout = SUP_T;
    t = sup_thread_start(send_main, &g2);
    assert_rc(msgpipe_recv_alloc(pr.s, &got, &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, GONE_BIG);
    assert_pattern(got, len, 77);
    msgpipe_free(got);
    assert_rc(msgpipe_recv_alloc(pr.s, &got, &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 5);
    assert_memory_equal(got, "after", 5);
    msgpipe_free(got);
    sup_thread_join(t);
    assert_rc(g2.rc, MSGPIPE_OK);
    sup_pair_close(&pr);
    free(m);
}

/* A committed send: its thread says it is done and then exits, so that the
 * peer takes the message while that thread is on its way out. */
typedef struct exiting_send {
    msgpipe *p;
    const void *msg;
    size_t len;
    int rc;
    volatile long done;
} exiting_send;

static void *exiting_send_main(void *arg)
{
    exiting_send *x = (exiting_send *)arg;
    x->rc = msgpipe_send(x->p, x->msg, x->len, 1);
    sup_atomic_set(&x->done, 1);
    return NULL; /* and the thread exits */
}

/* The next send, once the committed one is done. */
typedef struct next_send {
    exiting_send *first;
    int rc;
} next_send;

static void *next_send_main(void *arg)
{
    next_send *n = (next_send *)arg;
    while (!sup_atomic_get(&n->first->done))
        ;
    n->rc = msgpipe_send(n->first->p, "after", 5, SUP_T);
    return NULL;
}

enum { EXITING_BIG = 1024 * 1024 };

/* Rounds of the tests below: each of the 25 delays 10 times, once under
 * the suite's valgrind run (which sets MSGPIPE_LOAD_MESSAGES). */
static int exiting_rounds(void)
{
    return getenv("MSGPIPE_LOAD_MESSAGES") != NULL ? 25 : 250;
}

/* The write of a committed send ends - its message is read - just as the
 * thread that issued it exits (the read starts 0-192 us after the thread
 * is done, which covers its exit): the pipe goes on as if nothing happened.
 * The next send, from another thread, waits for that write's result and
 * gets MSGPIPE_OK, and both messages arrive whole.  (Under Wine an I/O that
 * ends while its thread exits never has its OVERLAPPED written; a backend
 * that waits for the OVERLAPPED instead of the completion hangs here, and
 * one that takes the 0 bytes the completion then reports fails.) */
static void test_send_whose_write_ends_as_its_thread_exits(void **st)
{
    sup_pair pr;
    exiting_send x;
    next_send nx;
    sup_thread *t, *t2;
    unsigned char *m = (unsigned char *)malloc(EXITING_BIG);
    void *got = NULL;
    size_t len = 0;
    int i;
    (void)st;

    assert_non_null(m);
    sup_fill(m, EXITING_BIG, 21);
    sup_pair_open(&pr, "dlv", NULL, NULL);
    for (i = 0; i < exiting_rounds(); i++) {
        memset(&x, 0, sizeof(x));
        x.p = pr.c;
        x.msg = m;
        x.len = EXITING_BIG;
        nx.first = &x;
        nx.rc = -1;
        t2 = sup_thread_start(next_send_main, &nx);
        t = sup_thread_start(exiting_send_main, &x);
        while (!sup_atomic_get(&x.done))
            ; /* read the message as the sender is on its way out: */
        sup_spin_us((i % 25) * 8); /* 0-192 us after it said it was done */
        assert_rc(msgpipe_recv_alloc(pr.s, &got, &len, SUP_T), MSGPIPE_OK);
        assert_int_equal(len, EXITING_BIG);
        assert_pattern(got, len, 21);
        msgpipe_free(got);
        sup_thread_join(t);
        assert_rc(x.rc, MSGPIPE_OK);
        sup_thread_join(t2);
        assert_rc(nx.rc, MSGPIPE_OK);
        assert_rc(msgpipe_recv_alloc(pr.s, &got, &len, SUP_T), MSGPIPE_OK);
        assert_int_equal(len, 5);
        assert_memory_equal(got, "after", 5);
        msgpipe_free(got);
    }
    sup_pair_close(&pr);
    free(m);
}

/* A receive that times out, leaving the pipe waiting for the next
 * message; then its thread says it is done and exits. */
typedef struct exiting_recv {
    msgpipe *p;
    msgpipe_poller *pl; /* wait in this poller instead of receiving */
    int rc;
    volatile long done;
} exiting_recv;

static void *exiting_recv_main(void *arg)
{
    exiting_recv *x = (exiting_recv *)arg;
    char buf[8];
    size_t len;
    msgpipe_event ev;
    if (x->pl != NULL)
        x->rc = msgpipe_poller_wait(x->pl, &ev, 1, 1);
    else
        x->rc = msgpipe_recv(x->p, buf, sizeof(buf), &len, 1);
    sup_atomic_set(&x->done, 1);
    return NULL; /* and the thread exits */
}

/* The wait a timed-out receive (or poller wait) left behind ends - the
 * next message comes - just as the thread that began it exits: the next
 * receive, or wait, from another thread, still sees the message.  (Under
 * Wine such a wait has its event set but its OVERLAPPED never written.) */
static void armed_by_exiting_thread(int poller)
{
    sup_pair pr;
    exiting_recv x;
    msgpipe_poller *pl = NULL;
    msgpipe_event ev;
    sup_thread *t;
    char buf[8];
    size_t len = 0;
    int i;

    sup_pair_open(&pr, "dlv", NULL, NULL);
    if (poller) {
        assert_rc(msgpipe_poller_new(&pl), MSGPIPE_OK);
        assert_rc(msgpipe_poller_add(pl, pr.s, NULL, MSGPIPE_POLLIN, &pr),
                  MSGPIPE_OK);
    }
    for (i = 0; i < exiting_rounds(); i++) {
        memset(&x, 0, sizeof(x));
        x.p = pr.s;
        x.pl = pl;
        t = sup_thread_start(exiting_recv_main, &x);
        while (!sup_atomic_get(&x.done))
            ;
        sup_spin_us((i % 25) * 8);
        assert_rc(msgpipe_send(pr.c, "ping", 4, SUP_T), MSGPIPE_OK);
        sup_thread_join(t);
        assert_rc(x.rc, MSGPIPE_ETIMEDOUT);
        if (poller) {
            memset(&ev, 0, sizeof(ev));
            assert_rc(msgpipe_poller_wait(pl, &ev, 1, SUP_T), 1);
            assert_ptr_equal(ev.user, &pr);
            assert_int_equal(ev.events, MSGPIPE_POLLIN);
            assert_rc(msgpipe_recv(pr.s, buf, sizeof(buf), &len, 0),
                      MSGPIPE_OK);
        } else {
            assert_rc(msgpipe_recv(pr.s, buf, sizeof(buf), &len, SUP_T),
                      MSGPIPE_OK);
        }
        assert_int_equal(len, 4);
        assert_memory_equal(buf, "ping", 4);
    }
    if (pl != NULL)
        msgpipe_poller_close(pl);
    sup_pair_close(&pr);
}

static void
test_recv_armed_by_a_thread_that_exits_as_the_message_comes(void **st)
{
    (void)st;
    armed_by_exiting_thread(0);
}

static void
test_poller_armed_by_a_thread_that_exits_as_the_message_comes(void **st)
{
    (void)st;
    armed_by_exiting_thread(1);
}

/* ---- Timed-out sends while the peer reads -------------------------------- */

/* A message: seq (4 bytes), its own length (4), a body, and a tail of 4
 * bytes derived from seq: a truncated or merged message has the wrong
 * length or tail.  (The body is not a pattern, to keep the test fast under
 * valgrind; corruption is test_pipe's and test_load's business.) */
enum { TM_N = 400, TM_MAX = 400 * 1024, TM_END = 0x7fffffff };

static size_t tm_size(uint32_t i)
{
    uint32_t r = i * 2654435761u;
    r ^= r >> 13;
    if (r % 3 == 0)
        return 12 + r % 1000;
    return 65536 + r % (TM_MAX - 65536);
}

static uint32_t tm_tail(uint32_t seq)
{
    return (seq + 1) * 2654435761u;
}

static void tm_make(unsigned char *m, uint32_t seq, size_t len)
{
    sup_put32(m, seq);
    sup_put32(m + 4, (uint32_t)len);
    if (len >= 12)
        sup_put32(m + len - 4, tm_tail(seq));
}

typedef struct tm_sender {
    msgpipe *p;
    int rc[TM_N];
    int bad; /* a result other than OK or ETIMEDOUT */
} tm_sender;

static void *tm_sender_main(void *arg)
{
    tm_sender *s = (tm_sender *)arg;
    unsigned char *m = (unsigned char *)malloc(TM_MAX);
    uint32_t i;

    if (m == NULL) {
        s->bad = MSGPIPE_ENOMEM;
        return NULL;
    }
    memset(m, 0x5a, TM_MAX);
    for (i = 0; i < TM_N; i++) {
        size_t len = tm_size(i);
        tm_make(m, i, len);
        s->rc[i] = msgpipe_send(s->p, m, len, (int)(i % 3));
        if (s->rc[i] != MSGPIPE_OK && s->rc[i] != MSGPIPE_ETIMEDOUT) {
            s->bad = s->rc[i];
            break;
        }
    }
    tm_make(m, TM_END, 8);
    if (s->bad == 0)
        s->bad = msgpipe_send(s->p, m, 8, SUP_T_LONG);
    free(m);
    return NULL;
}

/* Messages of 8 B to 400 KiB sent with timeouts of 0-2 ms while the peer
 * receives: none arrives truncated or merged, none arrives twice or out of
 * order, and every one whose send returned OK arrives. */
static void test_timed_out_sends_never_truncate_or_merge(void **state)
{
    sup_pair pr;
    tm_sender *s = (tm_sender *)calloc(1, sizeof(*s));
    unsigned char *seen = (unsigned char *)calloc(TM_N, 1);
    sup_thread *t;
    long last = -1, timed_out = 0, arrived_anyway = 0;
    uint32_t i;
    (void)state;

    assert_non_null(s);
    assert_non_null(seen);
    sup_pair_open(&pr, "dlv", NULL, NULL);
    s->p = pr.c;
    t = sup_thread_start(tm_sender_main, s);
    for (;;) {
        void *got = NULL;
        size_t len = 0;
        uint32_t seq;
        assert_rc(msgpipe_recv_alloc(pr.s, &got, &len, SUP_T_LONG), MSGPIPE_OK);
        if (len < 8) {
            print_error("a message of %lu bytes\n", (unsigned long)len);
            fail();
        }
        seq = sup_get32(got);
        if (seq == TM_END) {
            msgpipe_free(got);
            break;
        }
        if (seq >= TM_N || (long)seq <= last ||
            sup_get32((unsigned char *)got + 4) != len || len != tm_size(seq) ||
            sup_get32((unsigned char *)got + len - 4) != tm_tail(seq)) {
            print_error("after seq %ld: %lu bytes claiming seq %lu of %lu "
                        "bytes (expected %lu): truncated or merged\n",
                        last, (unsigned long)len, (unsigned long)seq,
                        (unsigned long)sup_get32((unsigned char *)got + 4),
                        (unsigned long)(seq < TM_N ? tm_size(seq) : 0));
            fail();
        }
        seen[seq] = 1;
        last = (long)seq;
        msgpipe_free(got);
    }
    sup_thread_join(t);
    assert_rc(s->bad, MSGPIPE_OK);
    for (i = 0; i < TM_N; i++) {
        if (s->rc[i] == MSGPIPE_ETIMEDOUT) {
            timed_out++;
            arrived_anyway += seen[i];
        } else if (!seen[i]) {
            print_error("message %lu (send OK) was lost\n", (unsigned long)i);
            fail();
        }
    }
    print_message("%ld of %d sends timed out (nothing sent)\n", timed_out,
                  TM_N);
    assert_int_equal(arrived_anyway, 0);
    sup_pair_close(&pr);
    free(seen);
    free(s);
}

/* ---- Oversized messages discarded while being written ---------------------
 */

/* 32 MiB on Windows, where the discard reads 64 KiB per call and a 10 ms
 * timeout runs out during it; 8 MiB is far beyond a POSIX socket's buffer
 * and keeps the test quick under valgrind. */
enum { OV_ROUNDS = 10 };
#define OV_BIG ((size_t)(SUP_WINDOWS ? 32 : 8) * 1024 * 1024)

typedef struct ov_sender {
    msgpipe *p;
    const unsigned char *big;
    int big_rc[OV_ROUNDS];
    int bad;
} ov_sender;

static void *ov_sender_main(void *arg)
{
    ov_sender *s = (ov_sender *)arg;
    char next[16];
    int i, rc;

    for (i = 0; i < OV_ROUNDS; i++) {
        s->big_rc[i] = msgpipe_send(s->p, s->big, OV_BIG, 10);
        if (s->big_rc[i] != MSGPIPE_OK && s->big_rc[i] != MSGPIPE_ETIMEDOUT) {
            s->bad = s->big_rc[i];
            return NULL;
        }
        snprintf(next, sizeof(next), "NEXT%02d", i);
        rc = msgpipe_send(s->p, next, strlen(next), SUP_T_LONG);
        if (rc != MSGPIPE_OK) {
            s->bad = rc;
            return NULL;
        }
    }
    return NULL;
}

/* A 32 MiB (POSIX: 8 MiB) message sent with a 10 ms timeout, then a
 * small one, to a receiver whose max_message is 1,000: the receiver gets
 * EMSGSIZE exactly for the big messages whose send returned OK, and every
 * small one. */
static void test_discarding_oversized_message_keeps_the_next(void **state)
{
    msgpipe_options so;
    sup_pair pr;
    ov_sender s;
    unsigned char *big = (unsigned char *)malloc(OV_BIG);
    int emsgsize[OV_ROUNDS];
    sup_thread *t;
    char buf[1000], want[16];
    int i, rc;
    (void)state;

    assert_non_null(big);
    memset(big, 0x5a, OV_BIG);
    msgpipe_options_init(&so);
    so.max_message = 1000;
    sup_pair_open(&pr, "dlv", &so, NULL);
    memset(&s, 0, sizeof(s));
    s.p = pr.c;
    s.big = big;
    t = sup_thread_start(ov_sender_main, &s);
    for (i = 0; i < OV_ROUNDS; i++) {
        size_t len = 0;
        emsgsize[i] = 0;
        snprintf(want, sizeof(want), "NEXT%02d", i);
        for (;;) {
            rc = msgpipe_recv(pr.s, buf, sizeof(buf), &len, SUP_T_LONG);
            if (rc == MSGPIPE_EMSGSIZE) {
                assert_int_equal(len, OV_BIG);
                emsgsize[i]++;
                continue;
            }
            if (rc != MSGPIPE_OK) {
                print_error("round %d: %s\n", i, msgpipe_errname(rc));
                fail();
            }
            break;
        }
        if (len != strlen(want) || memcmp(buf, want, len) != 0) {
            print_error("round %d: got %lu bytes \"%.*s\", expected %s\n", i,
                        (unsigned long)len, (int)(len < 16 ? len : 16), buf,
                        want);
            fail();
        }
    }
    sup_thread_join(t);
    assert_rc(s.bad, MSGPIPE_OK);
    for (i = 0; i < OV_ROUNDS; i++) {
        if (emsgsize[i] != (s.big_rc[i] == MSGPIPE_OK ? 1 : 0)) {
            print_error("round %d: send %s, receiver saw EMSGSIZE %d times\n",
                        i, msgpipe_errname(s.big_rc[i]), emsgsize[i]);
            fail();
        }
    }
    sup_pair_close(&pr);
    free(big);
}

/* ---- A plain Win32 reader that reads in pieces (Windows) ----------------- */

#ifdef _WIN32
enum { RAW_MSG = 200000, RAW_PIECE = 1000 };

typedef struct raw_reader {
    char sys[300];
    HANDLE h;
    unsigned char *got;
    DWORD total;
    DWORD pieces;
    DWORD end_error;
} raw_reader;

/* ReadFile(1000) until the message ends, pausing after the first piece so
 * that the sender's timeout runs out while the message is half read. */
static void *raw_reader_main(void *arg)
{
    raw_reader *r = (raw_reader *)arg;
    DWORD n;

    for (;;) {
        BOOL ok = ReadFile(r->h, r->got + r->total, RAW_PIECE, &n, NULL);
        r->total += n;
        r->pieces++;
        if (ok)
            break;
        if (GetLastError() != ERROR_MORE_DATA) {
            r->end_error = GetLastError();
            break;
        }
        if (r->pieces == 1)
            Sleep(300);
        if (r->total + RAW_PIECE > RAW_MSG + RAW_PIECE)
            break;
    }
    return NULL;
}

/* A plain Win32 client reads a 200,000-byte message 1,000 bytes at a time
 * while its msgpipe sender's 100 ms timeout runs out: the send is
 * committed (MSGPIPE_OK) and the reader gets the whole message. */
static void test_raw_reader_in_pieces_gets_whole_message(void **state)
{
    msgpipe_server *srv = NULL;
    msgpipe *a = NULL;
    raw_reader r;
    unsigned char *m = (unsigned char *)malloc(RAW_MSG);
    DWORD mode = PIPE_READMODE_MESSAGE;
    sup_thread *t;
    char name[96];
    int rc;
    (void)state;

    assert_non_null(m);
    memset(&r, 0, sizeof(r));
    r.got = (unsigned char *)malloc(RAW_MSG + 2 * RAW_PIECE);
    assert_non_null(r.got);
    sup_fill(m, RAW_MSG, 9);
    sup_name(name, sizeof(name), "dlv");
    sup_sys_name(name, r.sys, sizeof(r.sys));
    assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_OK);
    r.h = CreateFileA(r.sys, GENERIC_READ | GENERIC_WRITE, 0, NULL,
                      OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, NULL);
    assert_true(r.h != INVALID_HANDLE_VALUE);
    assert_true(SetNamedPipeHandleState(r.h, &mode, NULL, NULL));
    assert_rc(msgpipe_accept(srv, SUP_T, &a), MSGPIPE_OK);
    t = sup_thread_start(raw_reader_main, &r);
    rc = msgpipe_send(a, m, RAW_MSG, 100);
    /* Closing waits for a message still in flight (linger_ms) and then
     * ends the reader's loop, whatever became of the message. */
    msgpipe_close(a);
    sup_thread_join(t);
    print_message("send: %s; the reader got %lu bytes in %lu reads\n",
                  msgpipe_errname(rc), (unsigned long)r.total,
                  (unsigned long)r.pieces);
    assert_int_equal(r.end_error, 0);
    assert_int_equal(r.total, RAW_MSG);
    assert_pattern(r.got, RAW_MSG, 9);
    assert_rc(rc, MSGPIPE_OK);
    CloseHandle(r.h);
    msgpipe_server_close(srv);
    free(r.got);
    free(m);
}
#endif

/* ---- Names and server lifetime --------------------------------------------
 */

/* A Windows pipe name with nothing after a separator, or a "." or ".."
 * component, is no name (both systems: it is not a POSIX name either). */
static void test_pipe_name_with_trailing_separator_or_dot_is_ebadname(void **s)
{
    static const char *const bad[] = {
        "\\\\.\\pipe\\mpt-dlv\\", "\\\\.\\pipe\\.",     "\\\\.\\pipe\\..",
        "\\\\.\\pipe\\a\\.",      "\\\\.\\pipe\\a\\..", "\\\\.\\pipe\\.\\a",
        "\\\\.\\pipe\\a\\\\b",    "\\\\.\\PIPE\\\\",
    };
    size_t i;
    (void)s;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        msgpipe_server *srv = NULL;
        msgpipe *c = NULL;
        int rc = msgpipe_listen(bad[i], NULL, &srv);
        if (rc != MSGPIPE_EBADNAME) {
            print_error("listen(\"%s\"): %s\n", bad[i], msgpipe_errname(rc));
            msgpipe_server_close(srv);
            fail();
        }
        assert_rc(msgpipe_connect(bad[i], NULL, 0, &c), MSGPIPE_EBADNAME);
    }
}

/* What msgpipe_server_close leaves while a pipe it accepted is still open
 * (see msgpipe_server_close in msgpipe.h): POSIX removes the name at once;
 * Windows keeps it until the last accepted pipe is closed - a client then
 * finds it busy and a new server cannot take it.  Either way the name is
 * free once the accepted pipes are closed. */
static void test_server_close_with_accepted_pipe_open(void **state)
{
    msgpipe_server *srv = NULL, *again = NULL;
    msgpipe *c = NULL, *a = NULL, *c2 = NULL;
    char name[96], buf[8];
    size_t len = 0;
    (void)state;

    sup_name(name, sizeof(name), "dlv");
    assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_OK);
    assert_rc(msgpipe_connect(name, NULL, SUP_T, &c), MSGPIPE_OK);
    assert_rc(msgpipe_accept(srv, SUP_T, &a), MSGPIPE_OK);
    msgpipe_server_close(srv);
    if (SUP_WINDOWS) {
        assert_rc(msgpipe_connect(name, NULL, 0, &c2), MSGPIPE_EBUSY);
        assert_rc(msgpipe_listen(name, NULL, &again), MSGPIPE_EADDRINUSE);
    } else {
        assert_rc(msgpipe_connect(name, NULL, 0, &c2), MSGPIPE_ENOENT);
    }
    /* The accepted pipe still works. */
    assert_rc(msgpipe_send(c, "live", 4, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_recv(a, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 4);
    msgpipe_close(a);
    msgpipe_close(c);
    assert_rc(msgpipe_connect(name, NULL, 0, &c2), MSGPIPE_ENOENT);
    assert_rc(msgpipe_listen(name, NULL, &again), MSGPIPE_OK);
    msgpipe_server_close(again);
}

int main(int argc, char **argv)
{
    const sup_test tests[] = {
        SUP_TEST(1, test_fire_and_forget_clients_all_arrive),
        SUP_TEST(1, test_fire_and_forget_clients_all_arrive_pending_1),
        SUP_TEST(1, test_fire_and_forget_clients_all_arrive_pending_63),
        SUP_TEST(!sup_is_fifo(),
                 test_listen_on_exited_thread_then_client_message_arrives),
        SUP_TEST(!sup_is_fifo(),
                 test_accept_on_exited_thread_then_client_message_arrives),
        SUP_TEST(1, test_poll_on_exited_thread_then_message_is_reported),
        SUP_TEST(1, test_send_on_exited_thread_arrives_whole),
        SUP_TEST(1, test_send_whose_write_ends_as_its_thread_exits),
        SUP_TEST(1,
                 test_recv_armed_by_a_thread_that_exits_as_the_message_comes),
        SUP_TEST(1,
                 test_poller_armed_by_a_thread_that_exits_as_the_message_comes),
        SUP_TEST(1, test_timed_out_sends_never_truncate_or_merge),
        SUP_TEST(1, test_discarding_oversized_message_keeps_the_next),
#ifdef _WIN32
        SUP_TEST(1, test_raw_reader_in_pieces_gets_whole_message),
#endif
        SUP_TEST(1, test_pipe_name_with_trailing_separator_or_dot_is_ebadname),
        SUP_TEST(1, test_server_close_with_accepted_pipe_open),
    };

    sup_init(argc, argv);
    return sup_finish(SUP_RUN("delivery", tests));
}
