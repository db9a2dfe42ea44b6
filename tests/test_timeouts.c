/*
 * test_timeouts.c - every blocking call's timeout: it returns
 * MSGPIPE_ETIMEDOUT, loses nothing, and the retried call succeeds.
 *
 * No test asserts how long a call took, only that it returned (a hang is
 * caught by the generous bounds and by ctest's TIMEOUT).
 */
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- accept ------------------------------------------------------------ */

static void test_accept_without_client_times_out_then_gets_client(void **s)
{
    msgpipe_server *srv = NULL;
    msgpipe *a = NULL, *c = NULL;
    char name[96], buf[8];
    size_t len;
    (void)s;

    sup_name(name, sizeof(name), "tmo");
    assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_OK);
    assert_rc(msgpipe_accept(srv, 0, &a), MSGPIPE_ETIMEDOUT);
    assert_rc(msgpipe_accept(srv, 100, &a), MSGPIPE_ETIMEDOUT);
    assert_rc(msgpipe_connect(name, NULL, SUP_T, &c), MSGPIPE_OK);
    assert_rc(msgpipe_accept(srv, SUP_T, &a), MSGPIPE_OK);
    assert_non_null(a);
    assert_rc(msgpipe_send(c, "hi", 2, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_recv(a, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 2);
    assert_memory_equal(buf, "hi", 2);
    msgpipe_close(c);
    msgpipe_close(a);
    msgpipe_server_close(srv);
}

/* ---- connect ----------------------------------------------------------- */

static void test_connect_nowait_to_missing_server_is_enoent(void **state)
{
    msgpipe *c = NULL;
    char name[96];
    (void)state;

    sup_name(name, sizeof(name), "tmo");
    assert_rc(msgpipe_connect(name, NULL, 0, &c), MSGPIPE_ENOENT);
    assert_null(c);
}

static void test_connect_to_missing_server_times_out_then_succeeds(void **s)
{
    msgpipe_server *srv = NULL;
    msgpipe *c = NULL, *a = NULL;
    char name[96];
    (void)s;

    sup_name(name, sizeof(name), "tmo");
    assert_rc(msgpipe_connect(name, NULL, 100, &c), MSGPIPE_ETIMEDOUT);
    assert_null(c);
    assert_rc(msgpipe_listen(name, NULL, &srv), MSGPIPE_OK);
    assert_rc(msgpipe_connect(name, NULL, 0, &c), MSGPIPE_OK);
    assert_non_null(c);
    assert_rc(msgpipe_accept(srv, SUP_T, &a), MSGPIPE_OK);
    msgpipe_close(c);
    msgpipe_close(a);
    msgpipe_server_close(srv);
}

typedef struct {
    char name[96];
    int delay_ms;
    int rc_listen, rc_accept, rc_recv;
    char got[16];
    size_t got_len;
} late_server;

static void *late_server_main(void *arg)
{
    late_server *ls = (late_server *)arg;
    msgpipe_server *srv = NULL;
    msgpipe *a = NULL;

    sup_sleep_ms(ls->delay_ms);
    ls->rc_listen = msgpipe_listen(ls->name, NULL, &srv);
    if (ls->rc_listen != MSGPIPE_OK)
        return NULL;
    ls->rc_accept = msgpipe_accept(srv, SUP_T, &a);
    if (ls->rc_accept == MSGPIPE_OK) {
        ls->rc_recv =
            msgpipe_recv(a, ls->got, sizeof(ls->got), &ls->got_len, SUP_T);
        msgpipe_close(a);
    }
    msgpipe_server_close(srv);
    return NULL;
}

static void test_connect_infinite_waits_for_server_started_later(void **s)
{
    late_server *ls = (late_server *)calloc(1, sizeof(*ls));
    sup_thread *t;
    msgpipe *c = NULL;
    (void)s;

    assert_non_null(ls);
    sup_name(ls->name, sizeof(ls->name), "tmo");
    ls->delay_ms = 300;
    ls->rc_listen = ls->rc_accept = ls->rc_recv = 1;
    t = sup_thread_start(late_server_main, ls);
    assert_rc(msgpipe_connect(ls->name, NULL, MSGPIPE_INFINITE, &c),
              MSGPIPE_OK);
    assert_rc(msgpipe_send(c, "late", 4, SUP_T), MSGPIPE_OK);
    sup_thread_join(t);
    msgpipe_close(c);
    assert_rc(ls->rc_listen, MSGPIPE_OK);
    assert_rc(ls->rc_accept, MSGPIPE_OK);
    assert_rc(ls->rc_recv, MSGPIPE_OK);
    assert_int_equal(ls->got_len, 4);
    assert_memory_equal(ls->got, "late", 4);
    free(ls);
}

/* ---- recv -------------------------------------------------------------- */

static void test_recv_with_nothing_sent_times_out_then_gets_message(void **s)
{
    sup_pair pr;
    char buf[16];
    size_t len = 99;
    void *m = NULL;
    (void)s;

    sup_pair_open(&pr, "tmo", NULL, NULL);
    assert_rc(msgpipe_recv(pr.s, buf, sizeof(buf), &len, 0), MSGPIPE_ETIMEDOUT);
    assert_rc(msgpipe_recv(pr.s, buf, sizeof(buf), &len, 100),
              MSGPIPE_ETIMEDOUT);
    assert_rc(msgpipe_recv_alloc(pr.s, &m, &len, 100), MSGPIPE_ETIMEDOUT);
    assert_rc(msgpipe_send(pr.c, "exactly", 7, SUP_T), MSGPIPE_OK);
    assert_rc(msgpipe_recv(pr.s, buf, sizeof(buf), &len, SUP_T), MSGPIPE_OK);
    assert_int_equal(len, 7);
    assert_memory_equal(buf, "exactly", 7);
    /* Nothing else arrived. */
    assert_rc(msgpipe_recv(pr.s, buf, sizeof(buf), &len, 0), MSGPIPE_ETIMEDOUT);
    sup_pair_close(&pr);
}

/* A receive that times out in the middle of a message (the sender is
 * slow) keeps what it read: the retry returns the whole message. */
typedef struct {
    msgpipe *p;
    int rc;
} slow_ctx;

static void *slow_sender_main(void *arg)
{
    slow_ctx *sc = (slow_ctx *)arg;
    static unsigned char msg[4 * 1024 * 1024];
    sup_fill(msg, sizeof(msg), 41);
    sc->rc = msgpipe_send(sc->p, msg, sizeof(msg), SUP_T_LONG);
    return NULL;
}

static void test_recv_timeout_mid_message_loses_nothing(void **state)
{
    sup_pair pr;
    slow_ctx *sc = (slow_ctx *)calloc(1, sizeof(*sc));
    unsigned char *buf = (unsigned char *)malloc(4 * 1024 * 1024);
    sup_thread *t;
    size_t len = 0;
    int rc, tries = 0;
    (void)state;

    assert_non_null(sc);
    assert_non_null(buf);
    sup_pair_open(&pr, "tmo", NULL, NULL);
    sc->p = pr.c;
    t = sup_thread_start(slow_sender_main, sc);
    /* Tiny timeouts: most calls end with part of the message read. */
    do {
        rc = msgpipe_recv(pr.s, buf, 4 * 1024 * 1024, &len, 1);
        tries++;
    } while (rc == MSGPIPE_ETIMEDOUT && tries < 50000);
    assert_rc(rc, MSGPIPE_OK);
    assert_int_equal(len, 4 * 1024 * 1024);
    assert_pattern(buf, len, 41);
    sup_thread_join(t);
    assert_rc(sc->rc, MSGPIPE_OK);
    assert_rc(msgpipe_recv(pr.s, buf, 16, &len, 0), MSGPIPE_ETIMEDOUT);
    sup_pair_close(&pr);
    free(sc);
    free(buf);
}

/* ---- send -------------------------------------------------------------- */

#define BIG (64 * 1024)
#define MAX_SENDS 16384 /* 1 GiB: no system buffers that much */

static void make_seq_msg(unsigned char *m, uint32_t seq)
{
    sup_put32(m, seq);
    sup_fill(m + 4, BIG - 4, seq);
}

/* Receive one 64 KiB sequence message; returns its sequence number. */
static uint32_t recv_seq_msg(msgpipe *p, unsigned char *buf, int timeout,
                             int *rc)
{
    size_t len = 0;
    *rc = msgpipe_recv(p, buf, BIG, &len, timeout);
    if (*rc != MSGPIPE_OK)
        return 0;
    assert_int_equal(len, BIG);
    assert_pattern(buf + 4, BIG - 4, sup_get32(buf));
    return sup_get32(buf);
}

typedef struct {
    msgpipe *p;
    uint32_t got[MAX_SENDS + 2];
    int n;
    int end_rc;
} reader_ctx;

static void *reader_main(void *arg)
{
    reader_ctx *r = (reader_ctx *)arg;
    unsigned char *buf = (unsigned char *)malloc(BIG);
    for (;;) {
        size_t len = 0;
        int rc = msgpipe_recv(r->p, buf, BIG, &len, SUP_T_LONG);
        if (rc != MSGPIPE_OK || len != BIG ||
            sup_check(buf + 4, BIG - 4, sup_get32(buf)) != (size_t)-1 ||
            r->n >= MAX_SENDS + 2) {
            r->end_rc = rc == MSGPIPE_OK ? 1 : rc; /* 1: bad message */
            break;
        }
        r->got[r->n++] = sup_get32(buf);
    }
    free(buf);
    return NULL;
}

/* The peer does not read: sends of 64 KiB fill the pipe until one times
 * out.  Every send that returned OK is delivered in order, once; the
 * timed-out one is not delivered until it is retried, and then next. */
static void test_send_timeout_loses_nothing_and_retry_delivers(void **state)
{
    sup_pair pr;
    unsigned char *m = (unsigned char *)malloc(BIG);
    unsigned char *buf = (unsigned char *)malloc(BIG);
    reader_ctx *r = (reader_ctx *)calloc(1, sizeof(*r));
    sup_thread *t;
    uint32_t k, j, seq;
    int rc = MSGPIPE_OK, i;
    (void)state;

    assert_non_null(m);
    assert_non_null(buf);
    assert_non_null(r);
    sup_pair_open(&pr, "tmo", NULL, NULL);

    for (k = 0; k < MAX_SENDS; k++) {
        make_seq_msg(m, k);
        rc = msgpipe_send(pr.c, m, BIG, 50);
        if (rc != MSGPIPE_OK)
            break;
    }
    assert_rc(rc, MSGPIPE_ETIMEDOUT);
    /* Message k timed out; 0 .. k-1 were committed. */

    /* Drain what can be read now.  POSIX: the last committed message may
     * be waiting for its tail, which the next send writes first. */
    for (j = 0;; j++) {
        seq = recv_seq_msg(pr.s, buf, 500, &rc);
        if (rc != MSGPIPE_OK)
            break;
        if (seq != j) {
            print_error("drain: expected seq %lu, got %lu (k = %lu)\n",
                        (unsigned long)j, (unsigned long)seq, (unsigned long)k);
            fail();
        }
    }
    assert_rc(rc, MSGPIPE_ETIMEDOUT);
    print_message("%lu sends returned OK before one timed out; %lu could "
                  "be read before the retry\n",
                  (unsigned long)k, (unsigned long)j);
    if (!(j == k || j + 1 == k)) {
        print_error("drained %lu messages, %lu sends had returned OK\n",
                    (unsigned long)j, (unsigned long)k);
        fail();
    }

    /* Retry message k while a reader takes everything left. */
    r->p = pr.s;
    t = sup_thread_start(reader_main, r);
    make_seq_msg(m, k);
    assert_rc(msgpipe_send(pr.c, m, BIG, SUP_T_LONG), MSGPIPE_OK);
    msgpipe_close(pr.c);
    pr.c = NULL;
    sup_thread_join(t);
    assert_rc(r->end_rc, MSGPIPE_ECLOSED);
    assert_int_equal(r->n, (int)(k - j + 1));
    for (i = 0; i < r->n; i++)
        assert_int_equal(r->got[i], j + (uint32_t)i);
    sup_pair_close(&pr);
    free(m);
    free(buf);
    free(r);
}

static void test_send_nowait_to_full_pipe_times_out(void **state)
{
    sup_pair pr;
    unsigned char *m = (unsigned char *)malloc(BIG);
    uint32_t k;
    int rc = MSGPIPE_OK;
    (void)state;

    assert_non_null(m);
    sup_pair_open(&pr, "tmo", NULL, NULL);
    for (k = 0; k < MAX_SENDS; k++) {
        make_seq_msg(m, k);
        rc = msgpipe_send(pr.c, m, BIG, 0);
        if (rc != MSGPIPE_OK)
            break;
    }
    assert_rc(rc, MSGPIPE_ETIMEDOUT);
    assert_rc(msgpipe_send(pr.c, m, BIG, 0), MSGPIPE_ETIMEDOUT);
    /* Close the reader first, so that closing the writer does not linger
     * over a partly written message. */
    msgpipe_close(pr.s);
    pr.s = NULL;
    sup_pair_close(&pr);
    free(m);
}

/* Fill the pipe with 64 KiB messages (timeout 0) until a send times out;
 * returns how many were committed. */
static uint32_t fill_pipe(msgpipe *p, unsigned char *m)
{
    uint32_t k;
    int rc = MSGPIPE_OK;
    for (k = 0; k < MAX_SENDS; k++) {
        make_seq_msg(m, k);
        rc = msgpipe_send(p, m, BIG, 0);
        if (rc != MSGPIPE_OK)
            break;
    }
    assert_rc(rc, MSGPIPE_ETIMEDOUT);
    return k;
}

/* close() after a timed-out send (default linger 5 s) still delivers
 * every committed message - including one whose tail was still inside
 * the pipe - then the peer sees ECLOSED. */
static void test_close_delivers_every_committed_message(void **state)
{
    sup_pair pr;
    unsigned char *m = (unsigned char *)malloc(BIG);
    reader_ctx *r = (reader_ctx *)calloc(1, sizeof(*r));
    sup_thread *t;
    uint32_t k;
    int i;
    (void)state;

    assert_non_null(m);
    assert_non_null(r);
    sup_pair_open(&pr, "tmo", NULL, NULL);
    k = fill_pipe(pr.c, m);
    r->p = pr.s;
    t = sup_thread_start(reader_main, r);
    msgpipe_close(pr.c);
    pr.c = NULL;
    sup_thread_join(t);
    assert_rc(r->end_rc, MSGPIPE_ECLOSED);
    assert_int_equal(r->n, (int)k);
    for (i = 0; i < r->n; i++)
        assert_int_equal(r->got[i], (uint32_t)i);
    sup_pair_close(&pr);
    free(m);
    free(r);
}

/* linger_ms 0: close does not wait for a reader.  The peer then gets
 * whole messages only, in order, and ECLOSED - never a half message. */
static void test_close_without_linger_never_delivers_half_message(void **s)
{
    msgpipe_options o;
    sup_pair pr;
    unsigned char *m = (unsigned char *)malloc(BIG);
    reader_ctx *r = (reader_ctx *)calloc(1, sizeof(*r));
    uint32_t k;
    int i;
    (void)s;

    assert_non_null(m);
    assert_non_null(r);
    msgpipe_options_init(&o);
    o.linger_ms = 0;
    sup_pair_open(&pr, "tmo", NULL, &o);
    k = fill_pipe(pr.c, m);
    msgpipe_close(pr.c); /* must not block: nobody reads */
    pr.c = NULL;
    r->p = pr.s;
    reader_main(r);
    assert_rc(r->end_rc, MSGPIPE_ECLOSED);
    if (!(r->n == (int)k || r->n + 1 == (int)k)) {
        print_error("received %d whole messages, %lu sends returned OK\n", r->n,
                    (unsigned long)k);
        fail();
    }
    for (i = 0; i < r->n; i++)
        assert_int_equal(r->got[i], (uint32_t)i);
    sup_pair_close(&pr);
    free(m);
    free(r);
}

/* ---- A request cut by a timeout, then a wait for the answer ------------ */

enum { REQ = 4 << 20 };

typedef struct {
    msgpipe *p;
    int rc;
} answerer;

/* Starts reading late (the request's send times out meanwhile), takes the
 * whole request, answers. */
static void *answerer_main(void *arg)
{
    answerer *a = (answerer *)arg;
    unsigned char *buf = (unsigned char *)malloc(REQ);
    size_t len = 0;

    sup_sleep_ms(300);
    a->rc = msgpipe_recv(a->p, buf, REQ, &len, SUP_T_LONG);
    if (a->rc == MSGPIPE_OK &&
        (len != REQ || sup_check(buf, len, 3) != (size_t)-1))
        a->rc = MSGPIPE_EPROTO;
    if (a->rc == MSGPIPE_OK)
        a->rc = msgpipe_send(a->p, "answer", 6, SUP_T);
    free(buf);
    return NULL;
}

typedef struct {
    msgpipe *p;
    int send_rc, rc;
    char got[8];
} asker;

/* Sends the request with a short timeout, then waits for the answer with
 * none: the wait itself must finish a request the timeout cut. */
static void *asker_main(void *arg)
{
    asker *k = (asker *)arg;
    unsigned char *req = (unsigned char *)malloc(REQ);
    size_t len = 0;

    sup_fill(req, REQ, 3);
    k->send_rc = msgpipe_send(k->p, req, REQ, 50);
    k->rc = k->send_rc;
    if (k->rc == MSGPIPE_ETIMEDOUT) /* nothing sent (Windows): again */
        k->rc = msgpipe_send(k->p, req, REQ, MSGPIPE_INFINITE);
    if (k->rc == MSGPIPE_OK)
        k->rc =
            msgpipe_recv(k->p, k->got, sizeof(k->got), &len, MSGPIPE_INFINITE);
    free(req);
    return NULL;
}

static void test_wait_for_answer_finishes_request_cut_by_timeout(void **st)
{
    sup_pair pr;
    answerer a;
    asker k;
    sup_thread *ta, *tk;
    (void)st;

    sup_pair_open(&pr, "tmo", NULL, NULL);
    a.p = pr.s;
    k.p = pr.c;
    memset(k.got, 0, sizeof(k.got));
    ta = sup_thread_start(answerer_main, &a);
    tk = sup_thread_start(asker_main, &k);
    /* A wait that did not push the request's rest would hang here. */
    if (sup_thread_join_timeout(tk, SUP_T, NULL) != 0)
        fail_msg("the asker still waits for its answer after %d ms", SUP_T);
    sup_thread_join(ta);
    assert_rc(a.rc, MSGPIPE_OK);
    assert_rc(k.rc, MSGPIPE_OK);
    assert_memory_equal(k.got, "answer", 6);
#ifndef _WIN32
    /* POSIX commits a message the timeout cut; Windows withdraws it. */
    assert_rc(k.send_rc, MSGPIPE_OK);
#endif
    sup_pair_close(&pr);
}

int main(int argc, char **argv)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accept_without_client_times_out_then_gets_client),
        cmocka_unit_test(test_connect_nowait_to_missing_server_is_enoent),
        cmocka_unit_test(
            test_connect_to_missing_server_times_out_then_succeeds),
        cmocka_unit_test(test_connect_infinite_waits_for_server_started_later),
        cmocka_unit_test(
            test_recv_with_nothing_sent_times_out_then_gets_message),
        cmocka_unit_test(test_recv_timeout_mid_message_loses_nothing),
        cmocka_unit_test(test_send_timeout_loses_nothing_and_retry_delivers),
        cmocka_unit_test(test_send_nowait_to_full_pipe_times_out),
        cmocka_unit_test(test_close_delivers_every_committed_message),
        cmocka_unit_test(test_close_without_linger_never_delivers_half_message),
        cmocka_unit_test(test_wait_for_answer_finishes_request_cut_by_timeout),
    };

    sup_init(argc, argv);
    return sup_finish(
        cmocka_run_group_tests_name("timeouts", tests, NULL, NULL));
}
